import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, issueCert, type KeyPair } from '../operator/shared/pki.ts';
import { seededRandom } from '../operator/shared/random.ts';
import { parseAdmissionReview, type AdmissionRequest } from './admission.ts';
import { WEBHOOK_PATHS, webhookHandlers } from './handlers.ts';
import {
  everyFieldDaemonSet,
  everyFieldPod,
  everyPlace,
  fieldName,
  fuzzed,
  replaceAt,
} from './malformed.fixtures.ts';
import { WebhookServer } from './server.ts';
import { requestShapeProblem } from './shape.ts';

const podKind = { group: '', version: 'v1', kind: 'Pod' };
const dsKind = { group: 'apps', version: 'v1', kind: 'DaemonSet' };
const deps = {
  namespaceLabels: (ns: string) => (ns === 'burst' ? { 'spillway.dev/burst': 'always' } : undefined),
  isVirtualNode: (name: string) => name === 'vn',
};

const request = (object: unknown, extra: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  uid: 'u',
  kind: podKind,
  operation: 'CREATE',
  namespace: 'burst',
  object,
  ...extra,
});

describe('requestShapeProblem', () => {
  const pod = everyFieldPod();
  it.each<[string, (string | number)[], unknown, string | undefined]>([
    [
      'ports as a string',
      ['spec', 'containers', 0, 'ports'],
      '80',
      'request.object.spec.containers[0].ports: expected an array, got a string',
    ],
    [
      'a label as a number',
      ['metadata', 'labels', 'app'],
      1,
      'request.object.metadata.labels.app: expected a string, got a number',
    ],
    [
      'tolerations as an object',
      ['spec', 'tolerations'],
      {},
      'request.object.spec.tolerations: expected an array, got an object',
    ],
    [
      'a null toleration',
      ['spec', 'tolerations', 0],
      null,
      'request.object.spec.tolerations[0]: expected an object, got null',
    ],
    [
      'affinity as an array',
      ['spec', 'affinity'],
      [],
      'request.object.spec.affinity: expected an object, got an array',
    ],
    [
      'hostNetwork as a string',
      ['spec', 'hostNetwork'],
      'true',
      'request.object.spec.hostNetwork: expected a boolean, got a string',
    ],
    [
      'labels null',
      ['metadata', 'labels'],
      null,
      'request.object.metadata.labels: expected an object, got null',
    ],
    // Not omitempty in the Go types: the apiserver may send these as null.
    ['containers null', ['spec', 'containers'], null, undefined],
    [
      'nodeSelectorTerms null',
      [
        'spec',
        'affinity',
        'nodeAffinity',
        'requiredDuringSchedulingIgnoredDuringExecution',
        'nodeSelectorTerms',
      ],
      null,
      undefined,
    ],
    // Not read by any handler: not checked, passed through.
    ['an image as a number', ['spec', 'containers', 0, 'image'], 7, undefined],
    ['a future field', ['spec', 'somethingNew'], 'x', undefined],
  ])('%s', (_name, place, value, problem) => {
    expect(requestShapeProblem(request(replaceAt(pod, place, value)))).toBe(problem);
  });

  it('checks oldObject too, and reads a null object as none (DELETE, CREATE)', () => {
    const bad = replaceAt(pod, ['spec', 'schedulingGates'], 'x');
    expect(requestShapeProblem(request(pod, { operation: 'UPDATE', oldObject: bad }))).toMatch(
      /^request\.oldObject\.spec\.schedulingGates: expected an array/,
    );
    expect(requestShapeProblem(request(null, { operation: 'DELETE', oldObject: pod }))).toBeUndefined();
  });

  it('checks a DaemonSet template as a pod', () => {
    const ds = replaceAt(everyFieldDaemonSet(), ['spec', 'template', 'spec', 'volumes', 0], 'h');
    expect(requestShapeProblem(request(ds, { kind: dsKind }))).toBe(
      'request.object.spec.template.spec.volumes[0]: expected an object, got a string',
    );
  });
});

describe('the AdmissionReview envelope: fields read as strings and objects', () => {
  const review = (req: object) =>
    JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req });
  it.each<[string, object, RegExp]>([
    ['namespace a number', { namespace: 7 }, /request\.namespace is not a string/],
    ['subResource an object', { subResource: {} }, /request\.subResource is not a string/],
    ['name an array', { name: [] }, /request\.name is not a string/],
    ['oldObject a string', { oldObject: 'x' }, /request\.oldObject is not an object/],
  ])('%s → 400', (_name, extra, message) => {
    expect(() =>
      parseAdmissionReview(review({ uid: 'u', kind: podKind, operation: 'UPDATE', ...extra })),
    ).toThrow(message);
  });
});

// Values of the wrong type: a string, a number, null, and an object for an array (an array for anything else).
const wrongValues = (current: unknown) => ['x', 7, null, Array.isArray(current) ? {} : []];

describe('malformed reviews through the WebhookServer: never a 500', () => {
  let ca: KeyPair;
  let server: WebhookServer;
  let agent: https.Agent;
  beforeAll(async () => {
    ca = await createCA('test-ca', 3_600_000);
    const certificate = await issueCert(ca, {
      subject: 'CN=webhook',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validForMs: 3_600_000,
    });
    server = await WebhookServer.start({ handlers: webhookHandlers(deps), certificate });
    agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  });
  afterAll(async () => {
    agent.destroy();
    await server.close(100);
  });

  const post = (path: string, req: AdmissionRequest) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const body = JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: req,
      });
      https
        .request(server.url(path), { method: 'POST', ca: ca.certPem, agent }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        })
        .on('error', reject)
        .end(body);
    });

  const cases = [
    ...[WEBHOOK_PATHS.mutatePods, WEBHOOK_PATHS.validatePods].map((path) => ({
      path,
      base: everyFieldPod(),
      kind: podKind,
    })),
    { path: WEBHOOK_PATHS.mutateDaemonSets, base: everyFieldDaemonSet(), kind: dsKind },
  ];

  it.each(cases)(
    '$path: every place, every wrong type',
    async ({ path, base, kind }) => {
      const table = everyPlace(base).flatMap((place) => {
        const current = place.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], base);
        return wrongValues(current).map((value) => ({ place, value }));
      });
      const answers = await Promise.all(
        table.map(async ({ place, value }) => {
          const reply = await post(path, request(replaceAt(base, place, value), { kind }));
          return { field: fieldName(place), value, ...reply };
        }),
      );
      const bad = answers.filter((a) => a.status !== 200);
      expect(bad).toEqual([]);
      for (const a of answers) {
        const { response } = JSON.parse(a.body);
        // A 400 denial names the field it is about (or a field inside it).
        if (!response.allowed && response.status.code === 400) {
          expect(response.status.message).toContain(`request.object.${a.field}`);
        }
      }
      // The table is not vacuous: wrong types in what the handlers read are refused.
      expect(answers.filter((a) => JSON.parse(a.body).response.status?.code === 400).length).toBeGreaterThan(
        table.length / 2,
      );
    },
    60_000,
  );
});

describe('fuzzed reviews (seeded): every answer is a review, never a crash', () => {
  const handlers = webhookHandlers(deps);
  it.each([1, 2, 3])('seed %i: 400 reviews', (seed) => {
    const random = seededRandom(seed);
    for (let i = 0; i < 400; i++) {
      const path = [WEBHOOK_PATHS.mutatePods, WEBHOOK_PATHS.validatePods, WEBHOOK_PATHS.mutateDaemonSets][
        i % 3
      ]!;
      const ds = path === WEBHOOK_PATHS.mutateDaemonSets;
      const base = ds ? everyFieldDaemonSet() : everyFieldPod();
      const update = random() < 0.3;
      const req = request(fuzzed(base, random), {
        kind: ds ? dsKind : podKind,
        namespace: random() < 0.5 ? 'burst' : 'default',
        ...(update ? { operation: 'UPDATE' as const, oldObject: fuzzed(base, random) } : {}),
      });
      // As the server does: the envelope first (a 400 when it is wrong), then the handler.
      const parsed = parseAdmissionReview(
        JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req }),
      );
      let outcome;
      try {
        outcome = handlers[path]!(parsed.request);
      } catch (err) {
        throw new Error(
          `seed ${seed}, case ${i}, ${path}: ${(err as Error).message}\n${JSON.stringify(req)}`,
          { cause: err },
        );
      }
      expect(typeof outcome.allowed).toBe('boolean');
    }
  });
});
