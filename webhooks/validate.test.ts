import type { V1Node, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { PROVIDER_TOLERATION, virtualNodeTaints } from '../api/taints.ts';
import { VIRTUAL_NODE_LABELS } from '../api/labels.ts';
import { podKey, updateMayMovePod, validatePod } from './validate.ts';
import { virtualPlacementReason } from '../api/placement.ts';

const isVirtual = (name: string) => name.startsWith('virtual-');
const base: V1PodSpec = { containers: [{ name: 'app', image: 'nginx' }] };

function pod(labels: Record<string, string> = {}, spec: Partial<V1PodSpec> = {}, meta: object = {}): V1Pod {
  return { metadata: { name: 'web-1', namespace: 'shop', labels, ...meta }, spec: { ...base, ...spec } };
}

const required = (...terms: object[]) => ({
  affinity: {
    nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } },
  },
});
const expr = (key: string, operator: string, values: string[]) => ({
  matchExpressions: [{ key, operator, values }],
});
const dsOwner = { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'agent', uid: 'u' }] };

// Ways onto a virtual node: [name, labels, spec, namespace labels, reason regex]
const onto: [
  string,
  Record<string, string>,
  Partial<V1PodSpec>,
  Record<string, string> | undefined,
  RegExp,
][] = [
  [
    'bound by nodeName',
    {},
    { nodeName: 'virtual-eci' },
    undefined,
    /spec\.nodeName binds it to virtual node virtual-eci/,
  ],
  [
    'nodeSelector virtual-node',
    {},
    { nodeSelector: { 'spillway.dev/virtual-node': 'true' } },
    undefined,
    /spec\.nodeSelector requires spillway\.dev\/virtual-node=true/,
  ],
  [
    'nodeSelector type',
    {},
    { nodeSelector: { type: 'virtual-kubelet' } },
    undefined,
    /spec\.nodeSelector requires type=virtual-kubelet/,
  ],
  [
    'required affinity In [true]',
    {},
    required(expr('spillway.dev/virtual-node', 'In', ['true'])),
    undefined,
    /required node affinity admits only virtual nodes/,
  ],
  [
    'required affinity type In',
    {},
    required(expr('type', 'In', ['virtual-kubelet'])),
    undefined,
    /required node affinity/,
  ],
  [
    'matchFields pin to a virtual node',
    {},
    required({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['virtual-eci'] }] }),
    undefined,
    /required node affinity/,
  ],
  [
    'pod burst=always',
    { 'spillway.dev/burst': 'always' },
    {},
    undefined,
    /pod label spillway\.dev\/burst=always/,
  ],
  [
    'ACK eci=true',
    { 'alibabacloud.com/eci': 'true' },
    {},
    undefined,
    /pod label alibabacloud\.com\/eci=true/,
  ],
  [
    'namespace burst=always',
    {},
    {},
    { 'spillway.dev/burst': 'always' },
    /namespace label spillway\.dev\/burst=always/,
  ],
];

// Unsupported features: [name, spec, metadata, path]
const features: [string, Partial<V1PodSpec>, object, string][] = [
  [
    'privileged',
    { containers: [{ name: 'a', securityContext: { privileged: true } }] },
    {},
    'spec.containers[0].securityContext.privileged',
  ],
  [
    'privileged ephemeral',
    { ephemeralContainers: [{ name: 'dbg', securityContext: { privileged: true } }] },
    {},
    'spec.ephemeralContainers[0].securityContext.privileged',
  ],
  [
    'hostPort',
    { containers: [{ name: 'a', ports: [{ containerPort: 80, hostPort: 8080 }] }] },
    {},
    'spec.containers[0].ports[0].hostPort',
  ],
  ['hostNetwork', { hostNetwork: true }, {}, 'spec.hostNetwork'],
  ['hostPID', { hostPID: true }, {}, 'spec.hostPID'],
  ['hostIPC', { hostIPC: true }, {}, 'spec.hostIPC'],
  [
    'hostPath',
    { volumes: [{ name: 'logs', hostPath: { path: '/var/log' } }] },
    {},
    'spec.volumes[0].hostPath',
  ],
];

const matrix = onto.flatMap(([how, labels, placement, ns, reason]) =>
  features.map(
    ([feature, spec, meta, path]) =>
      [`${how} × ${feature}`, labels, { ...placement, ...spec }, meta, ns, reason, path] as const,
  ),
);

describe('validatePod: denials', () => {
  it.each(matrix)('%s → denied', (_name, labels, spec, meta, ns, reason, path) => {
    const verdict = validatePod(pod(labels, spec, meta), ns, isVirtual);
    expect(verdict.allowed).toBe(false);
    if (verdict.allowed) return;
    expect(verdict.code).toBe(403);
    expect(verdict.message).toMatch(reason);
    expect(verdict.message).toContain(`${path}: `);
    expect(verdict.message).toMatch(/^pod shop\/web-1 would run on a virtual node/);
  });

  it('a DaemonSet pod pinned to a virtual node is denied', () => {
    const spec = required({
      matchFields: [{ key: 'metadata.name', operator: 'In', values: ['virtual-eci'] }],
    });
    const verdict = validatePod(pod({}, spec, dsOwner), undefined, isVirtual);
    expect(verdict.allowed).toBe(false);
    if (!verdict.allowed)
      expect(verdict.message).toContain('metadata.ownerReferences: owned by DaemonSet agent');
  });

  it('lists every violation, with what to do', () => {
    const spec = { hostNetwork: true, hostPID: true, volumes: [{ name: 'h', hostPath: { path: '/' } }] };
    const verdict = validatePod(pod({ 'spillway.dev/burst': 'always' }, spec), undefined, isVirtual);
    if (verdict.allowed) throw new Error('expected a denial');
    expect(verdict.violations.map((v) => v.path)).toEqual([
      'spec.hostNetwork',
      'spec.hostPID',
      'spec.volumes[0].hostPath',
    ]);
    expect(verdict.message).toContain('these 3');
    expect(verdict.message).toContain('reach the pod through a Service instead');
    expect(verdict.message).toContain('use emptyDir');
  });
});

describe('validatePod: allowed', () => {
  const hostNet = { hostNetwork: true };
  it.each<[string, V1Pod, Record<string, string> | undefined]>([
    ['a feature on a pod that stays on real nodes', pod({}, hostNet), undefined],
    [
      'burst=overflow (placement keeps it off instead)',
      pod({ 'spillway.dev/burst': 'overflow' }, hostNet),
      undefined,
    ],
    ['namespace overflow', pod({}, hostNet), { 'spillway.dev/burst': 'overflow' }],
    ['bound to a real node', pod({}, { ...hostNet, nodeName: 'kwok-node-0' }), undefined],
    [
      'nodeSelector virtual-node=false',
      pod({}, { ...hostNet, nodeSelector: { 'spillway.dev/virtual-node': 'false' } }),
      undefined,
    ],
    [
      'only one of two ORed terms is virtual',
      pod(
        {},
        {
          ...hostNet,
          ...required(expr('spillway.dev/virtual-node', 'In', ['true']), expr('zone', 'In', ['a'])),
        },
      ),
      undefined,
    ],
    [
      'In [true, false] is not a requirement',
      pod({}, { ...hostNet, ...required(expr('spillway.dev/virtual-node', 'In', ['true', 'false'])) }),
      undefined,
    ],
    [
      'NotIn [true] excludes virtual nodes',
      pod({}, { ...hostNet, ...required(expr('spillway.dev/virtual-node', 'NotIn', ['true'])) }),
      undefined,
    ],
    ['burst=always without any unsupported feature', pod({ 'spillway.dev/burst': 'always' }), undefined],
    ['a DaemonSet pod in a burst=always namespace', pod({}, {}, dsOwner), { 'spillway.dev/burst': 'always' }],
    [
      'privileged: false',
      pod(
        { 'spillway.dev/burst': 'always' },
        { containers: [{ name: 'a', securityContext: { privileged: false } }] },
      ),
      undefined,
    ],
  ])('%s', (_name, p, ns) => {
    expect(validatePod(p, ns, isVirtual)).toEqual({ allowed: true });
  });
});

describe('virtualPlacementReason and podKey', () => {
  it('is undefined for an ordinary pod', () => {
    expect(virtualPlacementReason(pod(), undefined, isVirtual)).toBeUndefined();
  });

  it.each<[V1Pod, string | undefined, string]>([
    [pod(), undefined, 'shop/web-1'],
    [{ metadata: { generateName: 'web-' } }, 'shop', 'shop/web-*'],
    [{}, undefined, '<no namespace>/<unnamed>'],
  ])('podKey %#', (p, ns, key) => {
    expect(podKey(p, ns)).toBe(key);
  });
});

describe('validatePod: what the scheduler could do, not only spillway’s markers', () => {
  const vn: V1Node = {
    metadata: {
      name: 'virtual-eci',
      labels: {
        ...VIRTUAL_NODE_LABELS,
        'kubernetes.io/hostname': 'virtual-eci',
        'spillway.dev/provider': 'eci',
      },
    },
    spec: { taints: virtualNodeTaints('eci') },
  };
  const tolerations = [{ ...PROVIDER_TOLERATION }];
  const hostNet = { hostNetwork: true, tolerations };
  it.each<[string, Partial<V1PodSpec>]>([
    [
      'nodeSelector kubernetes.io/hostname',
      { ...hostNet, nodeSelector: { 'kubernetes.io/hostname': 'virtual-eci' } },
    ],
    ['nodeSelector spillway.dev/provider', { ...hostNet, nodeSelector: { 'spillway.dev/provider': 'eci' } }],
    [
      'affinity spillway.dev/virtual-node Exists',
      { ...hostNet, ...required(expr('spillway.dev/virtual-node', 'Exists', [])) },
    ],
    ['affinity type NotIn [normal]', { ...hostNet, ...required(expr('type', 'NotIn', ['normal'])) }],
    ['a toleration and no selector', hostNet],
    [
      'a gated pod',
      {
        ...hostNet,
        schedulingGates: [{ name: 'later' }],
        nodeSelector: { 'kubernetes.io/hostname': 'virtual-eci' },
      },
    ],
  ])('%s → denied, naming the field', (_name, spec) => {
    const verdict = validatePod(pod({}, spec), undefined, isVirtual, undefined, [vn]);
    expect(verdict.allowed).toBe(false);
    if (verdict.allowed) return;
    expect(verdict.message).toContain('spec.hostNetwork: ');
    expect(verdict.message).toMatch(/admit virtual node virtual-eci/);
  });

  it.each<[string, Partial<V1PodSpec>]>([
    [
      'no toleration of the provider taint',
      { hostNetwork: true, nodeSelector: { 'kubernetes.io/hostname': 'virtual-eci' } },
    ],
    [
      'a toleration, but pinned to a real node',
      { ...hostNet, nodeSelector: { 'kubernetes.io/hostname': 'kwok-node-0' } },
    ],
    [
      'a toleration, and kept off virtual nodes',
      { ...hostNet, ...required(expr('spillway.dev/virtual-node', 'NotIn', ['true'])) },
    ],
  ])('%s → allowed', (_name, spec) => {
    expect(validatePod(pod({}, spec), undefined, isVirtual, undefined, [vn])).toEqual({ allowed: true });
  });

  it('with no virtual node registered yet, judges by the labels and taints one registers with', () => {
    expect(validatePod(pod({}, hostNet), undefined, isVirtual).allowed).toBe(false);
    expect(validatePod(pod({}, { hostNetwork: true }), undefined, isVirtual).allowed).toBe(true);
  });
});

describe('updateMayMovePod', () => {
  const gated: V1Pod = pod({}, { schedulingGates: [{ name: 'later' }], hostNetwork: true });
  const spec = gated.spec!;
  const withSpec = (s: Partial<V1PodSpec>): V1Pod => ({ ...gated, spec: { ...spec, ...s } });
  it.each<[string, V1Pod | undefined, V1Pod, boolean]>([
    ['gates removed → judged', gated, withSpec({ schedulingGates: undefined }), true],
    [
      'one of two gates removed → judged',
      withSpec({ schedulingGates: [{ name: 'a' }, { name: 'b' }] }),
      withSpec({ schedulingGates: [{ name: 'a' }] }),
      true,
    ],
    [
      'nodeSelector added to a gated pod → judged',
      gated,
      withSpec({ nodeSelector: { 'kubernetes.io/hostname': 'virtual-eci' } }),
      true,
    ],
    [
      'affinity changed on a gated pod → judged',
      gated,
      withSpec(required(expr('type', 'NotIn', ['normal']))),
      true,
    ],
    ['a toleration added → judged', gated, withSpec({ tolerations: [{ ...PROVIDER_TOLERATION }] }), true],
    [
      'labels changed only → allowed at once',
      gated,
      { ...gated, metadata: { ...gated.metadata, labels: { a: 'b' } } },
      false,
    ],
    [
      'an image changed → allowed at once',
      gated,
      withSpec({ containers: [{ name: 'app', image: 'nginx:2' }] }),
      false,
    ],
    [
      'a toleration added to a bound pod → allowed at once',
      withSpec({ nodeName: 'kwok-node-0' }),
      withSpec({ nodeName: 'kwok-node-0', tolerations: [{ operator: 'Exists' }] }),
      false,
    ],
    ['no old object → allowed at once', undefined, gated, false],
  ])('%s', (_name, before, after, expected) => {
    expect(updateMayMovePod(before, after)).toBe(expected);
  });
});

describe('validatePod: what the virtual nodes’ providers refuse', () => {
  const node = (name: string, provider: string): V1Node => ({
    metadata: {
      name,
      labels: { ...VIRTUAL_NODE_LABELS, 'kubernetes.io/hostname': name, 'spillway.dev/provider': provider },
    },
    spec: { taints: virtualNodeTaints(provider) },
  });
  const local = node('virtual-local', 'local');
  const fake = node('virtual-fake', 'fake');
  const burst = { 'spillway.dev/burst': 'always' };
  // The local provider runs Linux containers only (operator/providers/local/rules.ts); the fake runs any spec.
  const windows: Partial<V1PodSpec> = { os: { name: 'windows' } };

  it('denies a pod every provider it may land on refuses, naming the field (no Failed-pod storm)', () => {
    const verdict = validatePod(pod(burst, windows), undefined, isVirtual, 'web', [local]);
    expect(verdict.allowed).toBe(false);
    if (verdict.allowed) return;
    expect(verdict.message).toContain('would run on a virtual node');
    expect(verdict.message).toContain('provider local cannot run it: spec.os.name');
    expect(verdict.message).toContain('remove spec.os or set it to linux');
  });

  it.each<[string, V1Pod, V1Node[]]>([
    ['a Linux pod', pod(burst, { os: { name: 'linux' } }), [local]],
    ['a pod without spec.os', pod(burst), [local]],
    ['a Windows pod that stays on real nodes', pod({}, windows), [local]],
    ['a Windows pod another provider may run', pod(burst, windows), [local, fake]],
    [
      'a Windows pod pinned to the provider that runs it',
      pod(burst, { ...windows, nodeSelector: { 'spillway.dev/provider': 'fake' } }),
      [local, fake],
    ],
  ])('allows %s', (_name, p, nodes) => {
    expect(validatePod(p, undefined, isVirtual, 'web', nodes)).toEqual({ allowed: true });
  });

  it('denies when the selector picks the refusing provider among several', () => {
    const p = pod(burst, { ...windows, nodeSelector: { 'spillway.dev/provider': 'local' } });
    expect(validatePod(p, undefined, isVirtual, 'web', [local, fake]).allowed).toBe(false);
  });
});
