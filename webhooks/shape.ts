/**
 * The shape of the fields the webhooks read, checked before any handler reads them. The apiserver decodes every
 * object into its Go type before admission, so a review it sends always has these types; a review that does
 * not (a string where the API has an array, a number where it has an object) came from somewhere else, and is
 * refused with the field named rather than crashing a handler into a 500, which the configuration's
 * failurePolicy would turn into an outage or, with `Ignore`, into a skipped check.
 *
 * Only the fields the handlers read are checked, and only as far as they read them: everything else passes
 * through untouched (the patch is made against the raw object). `null` is refused like any other wrong type,
 * except in the two lists that are not `omitempty` in the Go types (`containers`, `nodeSelectorTerms`): the
 * apiserver leaves an empty optional field out and writes "" for an empty string, so only those two can arrive
 * as `null`, and the handlers read them as absent.
 */
import type { AdmissionHandler, AdmissionRequest } from './admission.ts';

/**
 * What is wrong with a value: what was expected, what came, and where (keys from the checked value down, filled
 * in on the way back up, so that a value of the right shape costs no string building: a pod may carry
 * thousands of tolerations).
 */
interface Problem {
  path: (string | number)[];
  expected: string;
  got: unknown;
}

/** Returns what is wrong, or undefined when `value` has the expected shape. */
type Check = (value: unknown) => Problem | undefined;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

const wrong = (expected: string, got: unknown): Problem => ({ path: [], expected, got });

const scalar =
  (type: 'string' | 'number' | 'boolean', what: string): Check =>
  (value) =>
    value === undefined || typeof value === type ? undefined : wrong(what, value);

const str = scalar('string', 'a string');
const num = scalar('number', 'a number');
const bool = scalar('boolean', 'a boolean');

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** An object whose listed fields are checked; other fields are not read, so not checked. */
function obj(fields: Record<string, Check>): Check {
  const keys = Object.keys(fields);
  const checks = Object.values(fields);
  return (value) => {
    if (value === undefined) return undefined;
    if (!isPlainObject(value)) return wrong('an object', value);
    for (let i = 0; i < keys.length; i++) {
      const problem = checks[i]!(value[keys[i]!]);
      if (problem) {
        problem.path.unshift(keys[i]!);
        return problem;
      }
    }
    return undefined;
  };
}

/** A list whose elements all match `item`. */
function arr(item: Check): Check {
  return (value) => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) return wrong('an array', value);
    for (let i = 0; i < value.length; i++) {
      const problem = item(value[i]);
      if (problem) {
        problem.path.unshift(i);
        return problem;
      }
    }
    return undefined;
  };
}

/** `check`, or null (for the fields that are not `omitempty` in the Go types). */
const orNull =
  (check: Check): Check =>
  (value) =>
    value === null ? undefined : check(value);

/** `.key`, or `["key"]` for keys such as `spillway.dev/burst` that would read ambiguously after a dot. */
export function memberName(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** A string → string map (labels, annotations, nodeSelector). */
const strMap: Check = (value) => {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) return wrong('an object', value);
  for (const key in value) {
    if (typeof value[key] !== 'string') return { path: [key], expected: 'a string', got: value[key] };
  }
  return undefined;
};

const listOfStrings = arr((v) => (typeof v === 'string' ? undefined : wrong('a string', v)));

const objectMeta = obj({
  name: str,
  generateName: str,
  namespace: str,
  labels: strMap,
  annotations: strMap,
  ownerReferences: arr(obj({ apiVersion: str, kind: str, name: str })),
});

const requirement = obj({ key: str, operator: str, values: listOfStrings });
const nodeSelectorTerm = obj({ matchExpressions: arr(requirement), matchFields: arr(requirement) });

const container = obj({
  name: str,
  securityContext: obj({ privileged: bool }),
  ports: arr(obj({ hostPort: num })),
});

const podSpec = obj({
  nodeName: str,
  nodeSelector: strMap,
  hostNetwork: bool,
  hostPID: bool,
  hostIPC: bool,
  volumes: arr(obj({ name: str, hostPath: obj({}) })),
  initContainers: arr(container),
  containers: orNull(arr(container)),
  ephemeralContainers: arr(container),
  tolerations: arr(obj({ key: str, operator: str, value: str, effect: str })),
  affinity: obj({
    nodeAffinity: obj({
      requiredDuringSchedulingIgnoredDuringExecution: obj({
        nodeSelectorTerms: orNull(arr(nodeSelectorTerm)),
      }),
      preferredDuringSchedulingIgnoredDuringExecution: arr(
        obj({ weight: num, preference: nodeSelectorTerm }),
      ),
    }),
  }),
  schedulingGates: arr(obj({ name: str })),
});

/** What the webhooks read of a Pod. */
export const podShape: Check = obj({ metadata: objectMeta, spec: podSpec });

/** What the webhooks read of a DaemonSet: its pod template, as a pod. */
export const daemonSetShape: Check = obj({
  metadata: objectMeta,
  spec: obj({ template: obj({ metadata: objectMeta, spec: podSpec }) }),
});

/** The shape each handled kind must have, by `group/kind`. */
const SHAPES: Record<string, Check> = { '/Pod': podShape, 'apps/DaemonSet': daemonSetShape };

/**
 * What is wrong with the objects of a request, e.g. `request.object.spec.containers[0].ports: expected an array,
 * got a string`; undefined when they have the shape the handlers read (or are of a kind no handler reads).
 */
export function requestShapeProblem(req: AdmissionRequest): string | undefined {
  const shape = SHAPES[`${req.kind.group}/${req.kind.kind}`];
  if (!shape) return undefined;
  for (const field of ['object', 'oldObject'] as const) {
    const value = req[field];
    // A null object is the envelope's "none" (DELETE has no object, CREATE no oldObject), not a malformed one.
    const problem = value === null ? undefined : shape(value);
    if (problem)
      return `request.${field}${fieldPath(problem.path)}: expected ${problem.expected}, got ${describe(problem.got)}`;
  }
  return undefined;
}

/** `.spec.containers[0].ports`, `.metadata.labels["spillway.dev/burst"]`. */
function fieldPath(path: (string | number)[]): string {
  return path.map((k) => (typeof k === 'number' ? `[${k}]` : memberName(k))).join('');
}

/**
 * Wraps a handler so that a request whose objects do not have the shape the handlers read is denied as a bad
 * request (400, naming the field) before the handler sees it.
 */
export function refuseMalformed(handler: AdmissionHandler): AdmissionHandler {
  return (req) => {
    const problem = requestShapeProblem(req);
    if (problem === undefined) return handler(req);
    return {
      allowed: false,
      code: 400,
      message: `malformed ${req.kind.kind} in the AdmissionReview (the apiserver never sends this): ${problem}`,
    };
  };
}
