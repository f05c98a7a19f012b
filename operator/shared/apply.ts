/**
 * Server-side apply (SSA): send the fields a controller owns, under its field manager, and let the apiserver merge.
 *
 * client-node 2.x traps this avoids: `KubernetesObjectApi.patch` defaults to a strategic-merge patch, which the
 * apiserver rejects for custom resources (415), so the apply content type is always passed; `metadata.managedFields`
 * must be absent from an apply body; and `KubernetesObjectApi` cannot address a subresource, so status is applied
 * through a request configuration whose server appends `/status` to the path it builds. That configuration is the
 * documented per-call `options` argument; it only replaces how the URL is made, while authentication, middleware
 * and the HTTP client stay the API object's own.
 */
import {
  PatchStrategy,
  type Configuration,
  type HttpMethod,
  type KubernetesObject,
  type KubernetesObjectApi,
  type RequestContext,
} from '@kubernetes/client-node';

/** How an apply is made. */
export interface ApplyOptions {
  /** Names the owner of the applied fields, e.g. `spillway-elasticworkload`; one per controller. */
  fieldManager: string;
  /**
   * Take over fields another manager owns instead of failing with 409 Conflict. Default true: a controller's
   * desired state is authoritative for the fields it sends (the Kubernetes docs' advice for controllers).
   */
  force?: boolean;
  /** Validate and compute the result without persisting it. */
  dryRun?: boolean;
}

/** Metadata the server owns: sending it in an apply is an error (managedFields) or an unintended precondition. */
const SERVER_OWNED_METADATA = [
  'managedFields',
  'resourceVersion',
  'uid',
  'creationTimestamp',
  'generation',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
] as const;

/**
 * The body of an apply for `obj`: a deep copy without server-owned metadata. The copy also protects the caller's
 * object, which client-node mutates (it fills in `apiVersion` and the namespace).
 */
export function applyBody<T extends KubernetesObject>(obj: T): T {
  if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
    throw new Error(`server-side apply needs apiVersion, kind and metadata.name (got ${describe(obj)})`);
  }
  const body = structuredClone(obj);
  const meta = body.metadata as Record<string, unknown>;
  for (const field of SERVER_OWNED_METADATA) delete meta[field];
  return body;
}

/** The body of a status apply: identity and `status` only, so the status manager never claims spec fields. */
export function statusApplyBody<T extends KubernetesObject & { status?: unknown }>(obj: T): T {
  const full = applyBody(obj);
  const { name, namespace } = full.metadata!;
  return {
    apiVersion: full.apiVersion,
    kind: full.kind,
    metadata: namespace ? { name, namespace } : { name },
    status: full.status,
  } as T;
}

/**
 * Applies `obj` (create or update) with server-side apply and returns the object as stored.
 * @throws the client's ApiException (use `apiErrorMessage`); 409 only when `force` is false and another manager
 *   owns a field being set.
 */
export async function applyObject<T extends KubernetesObject>(
  api: KubernetesObjectApi,
  obj: T,
  options: ApplyOptions,
): Promise<T> {
  return api.patch(
    applyBody(obj),
    undefined,
    options.dryRun ? 'All' : undefined,
    options.fieldManager,
    options.force ?? true,
    PatchStrategy.ServerSideApply,
  );
}

/**
 * Applies `obj.status` to the status subresource (the object must exist) and returns the object as stored.
 * Works for custom resources with a status subresource and for built-in ones alike.
 */
export async function applyStatus<T extends KubernetesObject & { status?: unknown }>(
  api: KubernetesObjectApi,
  obj: T,
  options: ApplyOptions,
): Promise<T> {
  return api.patch(
    statusApplyBody(obj),
    undefined,
    options.dryRun ? 'All' : undefined,
    options.fieldManager,
    options.force ?? true,
    PatchStrategy.ServerSideApply,
    subresourceConfiguration(api, 'status'),
  );
}

/**
 * A per-call configuration for `api` whose requests go to `<object path>/<subresource>`. KubernetesObjectApi
 * builds the request from `options.baseServer` and sends it with its own configuration, so only the base server
 * needs replacing.
 */
export function subresourceConfiguration(api: KubernetesObjectApi, subresource: string): Configuration {
  // `configuration` is protected; it is the only way to reuse the API object's server without its KubeConfig.
  const own = (api as unknown as { configuration: Configuration }).configuration;
  return {
    ...own,
    baseServer: {
      makeRequestContext: (endpoint: string, method: HttpMethod): RequestContext =>
        own.baseServer.makeRequestContext(`${endpoint}/${subresource}`, method),
    },
  };
}

function describe(obj: KubernetesObject): string {
  return `apiVersion=${obj.apiVersion ?? '∅'} kind=${obj.kind ?? '∅'} name=${obj.metadata?.name ?? '∅'}`;
}
