/**
 * The kubelet API's routes as metric labels. A label value taken from the request path would let any client
 * (even an anonymous one, answered 401) add a series per path and grow `/metrics` without bound, so every
 * request is named by one of a fixed set of routes, `other` for the rest.
 */

/** Every route label the kubelet API records. */
export const KUBELET_ROUTES = [
  'containerLogs',
  'exec',
  'attach',
  'portForward',
  'run',
  'runningpods',
  'pods',
  'stats',
  'metrics',
  'metrics/resource',
  'healthz',
  'other',
] as const;

/** One of {@link KUBELET_ROUTES}. */
export type KubeletRoute = (typeof KUBELET_ROUTES)[number];

const FIRST_SEGMENT_ROUTES: ReadonlySet<string> = new Set(KUBELET_ROUTES.filter((r) => !r.includes('/')));

/**
 * The route of a request from its decoded path segments (as the server routes it): the kubelet's path prefix
 * when it is a known one, `metrics/resource` for `/metrics/resource…`, `other` for anything else.
 */
export function kubeletRoute(parts: readonly string[]): KubeletRoute {
  const [first = '', second] = parts;
  if (first === 'metrics' && second === 'resource') return 'metrics/resource';
  if (first !== 'other' && FIRST_SEGMENT_ROUTES.has(first)) return first as KubeletRoute;
  return 'other';
}
