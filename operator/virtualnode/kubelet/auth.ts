/**
 * Authentication and authorisation of the kubelet API, as the kubelet does them (webhook mode):
 * a client certificate signed by the cluster's client CA (the apiserver's `--kubelet-client-certificate`)
 * or a bearer token checked with a TokenReview; then a SubjectAccessReview on `nodes/<subresource>`.
 * Anonymous requests get 401, unauthorised ones 403. Decisions are cached briefly, like the kubelet's.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuthenticationV1Api, AuthorizationV1Api } from '@kubernetes/client-node';

/** Who is calling. */
export interface KubeletUser {
  username: string;
  groups: string[];
  uid?: string;
  extra?: Record<string, string[]>;
}

/** The `nodes` subresource a path needs, and a fallback the kubelet also accepts (fine-grained authz). */
export function subresourceFor(path: string): { subresource: string; fallback?: string } {
  switch (firstSegment(path)) {
    case 'stats':
      return { subresource: 'stats' };
    case 'metrics':
      return { subresource: 'metrics' };
    case 'logs':
      return { subresource: 'log' };
    case 'spec':
      return { subresource: 'spec' };
    case 'healthz':
      return { subresource: 'healthz', fallback: 'proxy' };
    case 'pods':
    case 'runningpods':
      return { subresource: 'pods', fallback: 'proxy' };
    case 'configz':
      return { subresource: 'configz', fallback: 'proxy' };
    default:
      // exec, attach, run, portForward, containerLogs
      return { subresource: 'proxy' };
  }
}

/**
 * Paths that run something in a container or reach into it. A WebSocket upgrade to them is a GET, so
 * mapping the verb from the method would let `nodes/proxy get` (given out for read-only monitoring)
 * execute commands; they need `create` whatever the method. The kubelet itself still maps the method
 * (its docs warn that `get` on nodes/proxy is not read-only); kube-apiserver 1.35 made the same change for
 * `pods/exec`, `pods/attach` and `pods/portforward` (AuthorizePodWebsocketUpgradeCreatePermission).
 */
const STREAMING_PATHS = new Set(['exec', 'attach', 'portForward', 'run']);

/**
 * The RBAC verb a request needs: `create` for the streaming paths ({@link STREAMING_PATHS}) whatever the
 * method, otherwise the method's verb as the kubelet maps it.
 * @param path the decoded request path, as the kubelet authorises it (Go's `URL.Path`)
 */
export function verbFor(method: string | undefined, path: string): string {
  if (STREAMING_PATHS.has(firstSegment(path))) return 'create';
  switch (method) {
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      return 'get';
  }
}

/** The first non-empty segment of a path (`//exec/x` is routed as `exec`, so it is authorised as one). */
function firstSegment(path: string): string {
  return path.split('/').find(Boolean) ?? '';
}

/** The user of a verified client certificate: CN is the user name, each O a group. */
export function userFromCertificate(socket: TLSSocket): KubeletUser | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  const cn = cert?.subject?.CN;
  const username = Array.isArray(cn) ? cn[0] : cn;
  if (!username) return undefined;
  const o = cert.subject.O;
  return { username, groups: Array.isArray(o) ? o : o ? [o] : [] };
}

interface Cached<T> {
  value: T;
  until: number;
}

/** Authenticates and authorises kubelet API requests against the apiserver. */
export class KubeletAuth {
  readonly #authn: Pick<AuthenticationV1Api, 'createTokenReview'>;
  readonly #authz: Pick<AuthorizationV1Api, 'createSubjectAccessReview'>;
  readonly #nodeName: string;
  readonly #tokens = new Map<string, Cached<KubeletUser | undefined>>();
  readonly #decisions = new Map<string, Cached<boolean>>();
  readonly #now: () => number;

  constructor(opts: {
    authentication: Pick<AuthenticationV1Api, 'createTokenReview'>;
    authorization: Pick<AuthorizationV1Api, 'createSubjectAccessReview'>;
    nodeName: string;
    now?: () => number;
  }) {
    this.#authn = opts.authentication;
    this.#authz = opts.authorization;
    this.#nodeName = opts.nodeName;
    this.#now = opts.now ?? Date.now;
  }

  /** The caller, or undefined for an anonymous or unknown one (answer 401). */
  async authenticate(req: IncomingMessage): Promise<KubeletUser | undefined> {
    const fromCert = userFromCertificate(req.socket as TLSSocket);
    if (fromCert) return fromCert;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return undefined;
    const token = m[1]!;
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.#tokens.get(key);
    if (hit && hit.until > this.#now()) return hit.value;
    const review = await this.#authn.createTokenReview({ body: { spec: { token } } });
    const u = review.status?.user;
    const user =
      review.status?.authenticated && u?.username
        ? { username: u.username, groups: u.groups ?? [], uid: u.uid, extra: u.extra }
        : undefined;
    // Cache successes for 2 minutes and failures for 10 seconds (the kubelet's defaults).
    this.#tokens.set(key, { value: user, until: this.#now() + (user ? 120_000 : 10_000) });
    if (this.#tokens.size > 10_000) this.#tokens.delete(this.#tokens.keys().next().value!);
    return user;
  }

  /**
   * Whether `user` may call `method path` on this node (answer 403 when not).
   * @param path the decoded path the request is routed by: authorising another spelling of it (`/%65xec`)
   *   would let the two disagree
   */
  async authorize(user: KubeletUser, method: string | undefined, path: string): Promise<boolean> {
    const verb = verbFor(method, path);
    const { subresource, fallback } = subresourceFor(path);
    if (await this.#allowed(user, verb, subresource)) return true;
    return fallback ? this.#allowed(user, verb, fallback) : false;
  }

  async #allowed(user: KubeletUser, verb: string, subresource: string): Promise<boolean> {
    const key = JSON.stringify([user.username, user.groups, verb, subresource]);
    const hit = this.#decisions.get(key);
    if (hit && hit.until > this.#now()) return hit.value;
    const sar = await this.#authz.createSubjectAccessReview({
      body: {
        spec: {
          user: user.username,
          groups: user.groups,
          uid: user.uid,
          extra: user.extra,
          resourceAttributes: { verb, resource: 'nodes', subresource, name: this.#nodeName },
        },
      },
    });
    const allowed = sar.status?.allowed === true;
    // Allowed for 5 minutes, denied for 30 seconds (the kubelet's defaults).
    this.#decisions.set(key, { value: allowed, until: this.#now() + (allowed ? 300_000 : 30_000) });
    if (this.#decisions.size > 10_000) this.#decisions.delete(this.#decisions.keys().next().value!);
    return allowed;
  }
}
