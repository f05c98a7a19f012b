/**
 * Malformed AdmissionReviews for tests: valid objects carrying every field the webhooks read, every place in them,
 * and a seeded generator that puts values of the wrong type in random places.
 */
import { memberName } from './shape.ts';

/** A pod that uses every field the webhooks read (placement, sandbox rules, virtual placement). */
export function everyFieldPod(): Record<string, unknown> {
  const container = (name: string) => ({
    name,
    image: 'nginx',
    securityContext: { privileged: false },
    ports: [{ containerPort: 80, hostPort: 8080 }],
  });
  const requirement = { key: 'zone', operator: 'In', values: ['a', 'b'] };
  // Through JSON, as a review arrives: no object is shared between two places.
  return json({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'p',
      generateName: 'p-',
      namespace: 'default',
      labels: {
        'spillway.dev/burst': 'overflow',
        'spillway.dev/capacity': 'spot',
        'alibabacloud.com/eci': 'true',
      },
      annotations: {
        'kubernetes.io/config.mirror': 'x',
        'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo',
      },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u' }],
    },
    spec: {
      nodeName: 'vn',
      nodeSelector: { 'spillway.dev/virtual-node': 'true' },
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      volumes: [{ name: 'h', hostPath: { path: '/tmp' } }],
      initContainers: [container('init')],
      containers: [container('app')],
      ephemeralContainers: [container('debug')],
      tolerations: [
        { key: 'virtual-kubelet.io/provider', operator: 'Exists', value: 'x', effect: 'NoSchedule' },
      ],
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [requirement], matchFields: [requirement] }],
          },
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 1, preference: { matchExpressions: [requirement], matchFields: [requirement] } },
          ],
        },
      },
      schedulingGates: [{ name: 'gate' }],
    },
  });
}

const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as Record<string, unknown>;

/** A DaemonSet whose template is {@link everyFieldPod}. */
export function everyFieldDaemonSet(): Record<string, unknown> {
  const pod = everyFieldPod();
  return json({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: pod.metadata,
    spec: { selector: { matchLabels: { app: 'a' } }, template: { metadata: pod.metadata, spec: pod.spec } },
  });
}

/** Every place in `value` below the root, as key paths (e.g. `['spec', 'containers', 0, 'ports']`). */
export function everyPlace(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return [];
  const keys: (string | number)[] = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return keys.flatMap((k) => {
    const path = [...at, k];
    return [path, ...everyPlace((value as Record<string | number, unknown>)[k], path)];
  });
}

/** A copy of `value` with `replacement` at `path`. */
export function replaceAt(value: unknown, path: (string | number)[], replacement: unknown): unknown {
  const copy = structuredClone(value);
  let target = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>;
  target[path.at(-1)!] = replacement;
  return copy;
}

/** `spec.containers[0].ports`, `metadata.labels["spillway.dev/burst"]`: how the webhooks name a field. */
export function fieldName(path: (string | number)[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : memberName(k))).join('');
}

/** Values of the wrong type for most fields: the kinds a fuzzer tries. */
export const WRONG_VALUES: readonly unknown[] = [
  'x',
  '',
  7,
  0,
  -1,
  true,
  false,
  null,
  {},
  { a: 1 },
  [],
  ['x'],
  [null],
  [{}],
  [7],
];

/** `object` with one to three random places set to random values of the wrong kind. */
export function fuzzed(object: unknown, random: () => number): unknown {
  const places = everyPlace(object);
  let out = object;
  const edits = 1 + Math.floor(random() * 3);
  for (let i = 0; i < edits; i++) {
    const place = places[Math.floor(random() * places.length)]!;
    const value = WRONG_VALUES[Math.floor(random() * WRONG_VALUES.length)];
    try {
      out = replaceAt(out, place, structuredClone(value));
    } catch {
      // An earlier edit replaced a parent of this place with a scalar: keep what we have.
    }
  }
  return out;
}
