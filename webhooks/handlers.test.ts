import { applyJsonPatch } from './admission.fixtures.ts';
import { describe, expect, it } from 'vitest';
import { admissionResponse, parseAdmissionReview, type AdmissionRequest } from './admission.ts';
import { NamespaceLabelCache, VirtualNodeSet } from './caches.ts';
import { WEBHOOK_PATHS, webhookHandlers } from './handlers.ts';

const namespaces = new NamespaceLabelCache();
namespaces.upsert({ metadata: { name: 'burst', labels: { 'spillway.dev/burst': 'always' } } });
namespaces.upsert({ metadata: { name: 'plain' } });
const nodes = new VirtualNodeSet();
nodes.upsert({
  metadata: { name: 'vn', labels: { 'spillway.dev/virtual-node': 'true', 'kubernetes.io/hostname': 'vn' } },
  spec: { taints: [{ key: 'virtual-kubelet.io/provider', value: 'eci', effect: 'NoSchedule' }] },
});
nodes.upsert({ metadata: { name: 'ack', labels: { type: 'virtual-kubelet' } } });
nodes.upsert({ metadata: { name: 'real' } });

const handlers = webhookHandlers({
  namespaceLabels: namespaces.lookup,
  isVirtualNode: nodes.has,
  virtualNodes: nodes.list,
});
const mutatePods = handlers[WEBHOOK_PATHS.mutatePods]!;
const mutateDaemonSets = handlers[WEBHOOK_PATHS.mutateDaemonSets]!;
const validatePods = handlers[WEBHOOK_PATHS.validatePods]!;

const podKind = { group: '', version: 'v1', kind: 'Pod' };
const dsKind = { group: 'apps', version: 'v1', kind: 'DaemonSet' };

function request(object: unknown, extra: Partial<AdmissionRequest> = {}): AdmissionRequest {
  return { uid: 'u-1', kind: podKind, operation: 'CREATE', namespace: 'plain', object, ...extra };
}

const pod = (labels: Record<string, string> = {}, spec: object = {}) => ({
  metadata: { generateName: 'web-', labels },
  spec: { containers: [{ name: 'a' }], ...spec },
});

describe('pod placement handler', () => {
  it.each<[string, AdmissionRequest, boolean]>([
    ['a labelled pod on CREATE', request(pod({ 'spillway.dev/burst': 'always' })), true],
    [
      'an unlabelled pod in a burst namespace (metadata.namespace empty)',
      request(pod(), { namespace: 'burst' }),
      true,
    ],
    ['an unlabelled pod elsewhere', request(pod()), false],
    [
      'UPDATE (pods are immutable where it matters)',
      request(pod({ 'spillway.dev/burst': 'always' }), { operation: 'UPDATE' }),
      false,
    ],
    ['a subresource', request(pod({ 'spillway.dev/burst': 'always' }), { subResource: 'status' }), false],
    ['not a pod', request(pod({ 'spillway.dev/burst': 'always' }), { kind: dsKind }), false],
    ['no object', request(undefined), false],
  ])('%s', (_name, req, patched) => {
    const outcome = mutatePods(req);
    expect(outcome.allowed).toBe(true);
    expect(outcome.allowed && outcome.patch !== undefined).toBe(patched);
    if (outcome.allowed && outcome.patch) {
      const target = applyJsonPatch(req.object, outcome.patch);
      expect(JSON.stringify(target)).toContain('virtual-kubelet.io/provider');
    }
  });

  it('returns warnings', () => {
    const outcome = mutatePods(request(pod({ 'spillway.dev/burst': 'overflow' }, { hostNetwork: true })));
    expect(outcome.warnings?.[0]).toMatch(/will not spill.*spec\.hostNetwork/);
  });
});

describe('DaemonSet handler', () => {
  const ds = { spec: { selector: {}, template: { spec: { containers: [{ name: 'a' }] } } } };
  it.each<[string, AdmissionRequest, boolean]>([
    ['CREATE', request(ds, { kind: dsKind }), true],
    ['UPDATE', request(ds, { kind: dsKind, operation: 'UPDATE' }), true],
    ['status subresource', request(ds, { kind: dsKind, operation: 'UPDATE', subResource: 'status' }), false],
    ['a pod sent here by mistake', request(ds), false],
  ])('%s', (_name, req, patched) => {
    const outcome = mutateDaemonSets(req);
    expect(outcome.allowed && !!outcome.patch).toBe(patched);
  });
});

describe('pod validation handler', () => {
  const bad = { hostPID: true };
  const toVn = {
    nodeSelector: { 'kubernetes.io/hostname': 'vn' },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
  };
  it.each<[string, AdmissionRequest, boolean]>([
    ['burst=always + hostPID', request(pod({ 'spillway.dev/burst': 'always' }, bad)), false],
    ['namespace burst=always + hostPID', request(pod({}, bad), { namespace: 'burst' }), false],
    ['bound to a spillway virtual node', request(pod({}, { ...bad, nodeName: 'vn' })), false],
    [
      'bound to a node with only ACK’s type label (not a spillway virtual node)',
      request(pod({}, { ...bad, nodeName: 'ack' })),
      true,
    ],
    ['bound to a real node', request(pod({}, { ...bad, nodeName: 'real' })), true],
    [
      'kubectl debug adds a privileged container to a pod on a virtual node',
      request(
        pod(
          {},
          { nodeName: 'vn', ephemeralContainers: [{ name: 'd', securityContext: { privileged: true } }] },
        ),
        {
          operation: 'UPDATE',
          subResource: 'ephemeralcontainers',
        },
      ),
      false,
    ],
    [
      'an UPDATE that does not touch scheduling is not judged',
      request(pod({ 'spillway.dev/burst': 'always' }, bad), {
        operation: 'UPDATE',
        oldObject: pod({}, bad),
      }),
      true,
    ],
    [
      'an UPDATE removing the scheduling gates of a pod pointed at the virtual node',
      request(pod({}, { ...bad, ...toVn }), {
        operation: 'UPDATE',
        oldObject: pod({}, { ...bad, ...toVn, schedulingGates: [{ name: 'later' }] }),
      }),
      false,
    ],
    [
      'an UPDATE of a bound pod',
      request(pod({}, { ...bad, ...toVn, nodeName: 'real' }), {
        operation: 'UPDATE',
        oldObject: pod({}, { ...bad, nodeName: 'real' }),
      }),
      true,
    ],
  ])('%s', (_name, req, allowed) => {
    const outcome = validatePods(req);
    expect(outcome.allowed).toBe(allowed);
    if (!outcome.allowed) expect(outcome.message).toMatch(/would run on a virtual node/);
  });

  it('names the pod by the request namespace when metadata has none', () => {
    const outcome = validatePods(
      request(pod({ 'spillway.dev/burst': 'always' }, bad), { namespace: 'plain' }),
    );
    expect(!outcome.allowed && outcome.message).toMatch(/^pod plain\/web-\* /);
  });
});

describe('caches', () => {
  it('forget deleted namespaces and nodes that lose the label', () => {
    const ns = new NamespaceLabelCache();
    ns.upsert({ metadata: { name: 'a', labels: { x: 'y' } } });
    expect(ns.lookup('a')).toEqual({ x: 'y' });
    ns.remove({ metadata: { name: 'a' } });
    expect(ns.lookup('a')).toBeUndefined();
    const set = new VirtualNodeSet();
    set.upsert({ metadata: { name: 'n', labels: { 'spillway.dev/virtual-node': 'true' } } });
    expect(set.has('n')).toBe(true);
    const taints = [{ key: 'virtual-kubelet.io/provider', value: 'eci', effect: 'NoSchedule' }];
    set.upsert({
      metadata: { name: 'm', labels: { 'spillway.dev/virtual-node': 'true' } },
      spec: { taints },
    });
    expect(set.list().map((n) => [n.metadata?.name, n.spec?.taints])).toEqual([
      ['n', []],
      ['m', taints],
    ]);
    set.upsert({ metadata: { name: 'n', labels: {} } });
    expect(set.has('n')).toBe(false);
    expect(set.list().map((n) => n.metadata?.name)).toEqual(['m']);
  });
});

describe('AdmissionReview envelope', () => {
  const review = (request: unknown) =>
    JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
  it.each<[string, string, RegExp]>([
    ['not JSON', '{"kind":', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    [
      'wrong kind',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod' }),
      /expected kind AdmissionReview, got "Pod"/,
    ],
    [
      'v1beta1',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview' }),
      /admissionReviewVersions: \[v1\]/,
    ],
    [
      'no request',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      /has no request/,
    ],
    ['no uid', review({ kind: podKind, operation: 'CREATE' }), /has no uid/],
    ['empty uid', review({ uid: '', kind: podKind, operation: 'CREATE' }), /has no uid/],
    ['no kind', review({ uid: 'u' }), /has no kind/],
    ['no operation', review({ uid: 'u', kind: podKind }), /has no operation/],
    [
      'object is a string',
      review({ uid: 'u', kind: podKind, operation: 'CREATE', object: 'x' }),
      /not an object/,
    ],
  ])('rejects %s', (_name, body, message) => {
    expect(() => parseAdmissionReview(body)).toThrow(message);
  });

  it('builds allowed, patched and denied responses', () => {
    expect(admissionResponse('u', { allowed: true })).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'u', allowed: true },
    });
    const patched = admissionResponse('u', {
      allowed: true,
      patch: [{ op: 'add', path: '/a', value: 1 }],
      warnings: ['w'],
    });
    expect(patched).toMatchObject({ response: { patchType: 'JSONPatch', warnings: ['w'] } });
    expect(admissionResponse('u', { allowed: false, code: 403, message: 'no' })).toMatchObject({
      response: { allowed: false, status: { code: 403, reason: 'Forbidden', message: 'no' } },
    });
  });
});
