/**
 * The one Kubernetes client wrapper: where the kubeconfig comes from, the typed APIs spillway uses, and helpers
 * for the error shape of @kubernetes/client-node 2.x (an `ApiException` whose `body` is the raw response text).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  AppsV1Api,
  AuthenticationV1Api,
  AuthorizationV1Api,
  AutoscalingV2Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  EventsV1Api,
  KubeConfig,
  KubernetesObjectApi,
} from '@kubernetes/client-node';

/** Where a pod finds its service-account token; its presence (with the service env vars) means "in a cluster". */
export const IN_CLUSTER_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Where {@link loadKubeConfig} looks, and what it can be told. */
export interface KubeConfigSource {
  /** An explicit kubeconfig file (a `--kubeconfig` flag); wins over everything else. */
  kubeconfig?: string;
  /**
   * Environment to read `KUBECONFIG` and `KUBERNETES_SERVICE_*` from (tests inject one). Default: `process.env`.
   * Once in-cluster is chosen, client-node's `loadFromCluster` reads the service address from `process.env` itself.
   */
  env?: NodeJS.ProcessEnv;
  /** Home directory for `~/.kube/config`. Default: `os.homedir()`. */
  homeDir?: string;
  /** Service-account token file that marks an in-cluster run. Default: {@link IN_CLUSTER_TOKEN_PATH}. */
  inClusterTokenPath?: string;
}

/** How {@link loadKubeConfig} found its configuration: useful in the startup log line. */
export type KubeConfigOrigin = 'flag' | 'KUBECONFIG' | 'in-cluster' | 'home';

/**
 * Loads a kubeconfig in the order an operator expects: an explicit path, else `$KUBECONFIG` (every file of a
 * `:`-separated list, merged as kubectl does), else the pod's service account, else `~/.kube/config`.
 *
 * In-cluster comes before `~/.kube/config` on purpose (client-node's `loadFromDefault` does the reverse): a pod
 * whose image happens to contain a home kubeconfig must still talk to its own cluster.
 *
 * @throws Error naming every place it looked when none of them exists.
 */
export function loadKubeConfig(source: KubeConfigSource = {}): { kc: KubeConfig; origin: KubeConfigOrigin } {
  const env = source.env ?? process.env;
  const kc = new KubeConfig();
  if (source.kubeconfig) {
    kc.loadFromFile(source.kubeconfig);
    return { kc: shareConnections(kc), origin: 'flag' };
  }
  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f.length > 0);
  if (files.length > 0) {
    kc.loadFromFile(files[0]!);
    for (const file of files.slice(1)) {
      const more = new KubeConfig();
      more.loadFromFile(file);
      // kubectl's rule: the first file that names a current-context decides it.
      kc.mergeConfig(more, Boolean(kc.currentContext));
    }
    return { kc: shareConnections(kc), origin: 'KUBECONFIG' };
  }
  const tokenPath = source.inClusterTokenPath ?? IN_CLUSTER_TOKEN_PATH;
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(tokenPath)) {
    kc.loadFromCluster();
    return { kc: shareConnections(kc), origin: 'in-cluster' };
  }
  const home = join(source.homeDir ?? homedir(), '.kube', 'config');
  if (existsSync(home)) {
    kc.loadFromFile(home);
    return { kc: shareConnections(kc), origin: 'home' };
  }
  throw new Error(
    `no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, run in a pod with a service account, ` +
      `or create ${home}`,
  );
}

/** The typed APIs spillway uses, all built from one kubeconfig. */
export interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  coordination: CoordinationV1Api;
  customObjects: CustomObjectsApi;
  autoscaling: AutoscalingV2Api;
  admissionregistration: AdmissionregistrationV1Api;
  apiextensions: ApiextensionsV1Api;
  authentication: AuthenticationV1Api;
  authorization: AuthorizationV1Api;
  discovery: DiscoveryV1Api;
  events: EventsV1Api;
  /** The generic API used for server-side apply (see `apply.ts`); knows the context's default namespace. */
  objects: KubernetesObjectApi;
}

const shared = new WeakSet<KubeConfig>();

/**
 * Makes every API client built from `kc` share one connection pool per cluster and client identity.
 *
 * client-node 2.0.1 builds a new undici dispatcher in `applySecurityAuthentication`, that is for every request,
 * so each API call opens (and leaves open) its own TLS connection to the apiserver: measured here, 200 GETs took
 * 4.2 s and left 190 connections open, against 1.55 s and one connection with a shared pool (bench/). Bearer
 * tokens travel in headers, not in the dispatcher, so a rotated service-account token still applies; a new
 * client certificate gets a new pool because the certificate is part of the key.
 */
export function shareConnections(kc: KubeConfig): KubeConfig {
  if (shared.has(kc)) return kc;
  const k = kc as unknown as {
    createDispatcher?: (cluster: unknown, options: { cert?: unknown; key?: unknown }) => unknown;
    getAgentCacheKey?: (cluster: unknown) => string;
  };
  const original = k.createDispatcher?.bind(kc);
  const cacheKey = k.getAgentCacheKey?.bind(kc);
  // A client-node that no longer has these internals keeps its own behaviour.
  if (!original || !cacheKey) return kc;
  const pools = new Map<string, unknown>();
  k.createDispatcher = (cluster, options) => {
    const id = createHash('sha256')
      .update(`${cacheKey(cluster)}\0${String(options.cert ?? '')}\0${String(options.key ?? '')}`)
      .digest('hex');
    if (!pools.has(id)) pools.set(id, original(cluster, options));
    return pools.get(id);
  };
  shared.add(kc);
  return kc;
}

/** Builds every typed API client from one kubeconfig (sharing one connection pool, see {@link shareConnections}). */
export function makeClients(kc: KubeConfig): Clients {
  shareConnections(kc);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    customObjects: kc.makeApiClient(CustomObjectsApi),
    autoscaling: kc.makeApiClient(AutoscalingV2Api),
    admissionregistration: kc.makeApiClient(AdmissionregistrationV1Api),
    apiextensions: kc.makeApiClient(ApiextensionsV1Api),
    authentication: kc.makeApiClient(AuthenticationV1Api),
    authorization: kc.makeApiClient(AuthorizationV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    events: kc.makeApiClient(EventsV1Api),
    // Not kc.makeApiClient: only KubernetesObjectApi.makeApiClient picks up the context's namespace.
    objects: KubernetesObjectApi.makeApiClient(kc),
  };
}

/**
 * The HTTP status of a failed API call, or undefined when `err` is not one. Understands both shapes client-node
 * 2.x throws: `ApiException` (`code`) from the typed APIs and the plain `Error` with `statusCode` from `Watch`.
 * Duck-typed rather than `instanceof`, so errors from a second copy of client-node still count; Node's own
 * network errors carry string codes (`ECONNREFUSED`) and are not API errors.
 */
export function apiErrorCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, statusCode } = err as { code?: unknown; statusCode?: unknown };
  if (typeof code === 'number') return code;
  if (typeof statusCode === 'number') return statusCode;
  return undefined;
}

/** True when `err` is an API error answer, optionally with exactly the HTTP status `code` (e.g. 404, 409). */
export function isApiError(err: unknown, code?: number): boolean {
  const actual = apiErrorCode(err);
  return actual !== undefined && (code === undefined || actual === code);
}

/** The apiserver's `metav1.Status` answer inside an API error, parsed; undefined when there is none. */
export function apiErrorStatus(
  err: unknown,
): { message?: string; reason?: string; code?: number } | undefined {
  if (!isApiError(err)) return undefined;
  const body = (err as { body?: unknown }).body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  return parsed as { message?: string; reason?: string; code?: number };
}

/**
 * A one-line, human-readable message for any error: the apiserver's Status message when there is one
 * (client-node's own `ApiException.message` is a multi-line dump of the body and headers), else `err.message`.
 */
export function apiErrorMessage(err: unknown): string {
  const status = apiErrorStatus(err);
  const code = apiErrorCode(err);
  if (status?.message) return `${status.message} (HTTP ${code})`;
  if (code !== undefined) {
    // No Status body (e.g. a 401, or a watch answered with a bare status line): name the status alone.
    const first = err instanceof Error ? err.message.split('\n')[0] : '';
    return first && !first.startsWith('HTTP-Code') ? `${first} (HTTP ${code})` : `HTTP ${code}`;
  }
  return withCauses(err);
}

/** `err.message` followed by its causes: undici says only "fetch failed" and puts ECONNREFUSED in `cause`. */
function withCauses(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    if (message && !parts.includes(message)) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}
