/**
 * Who may read `/metrics`, decided as kube-rbac-proxy decides it: the caller's bearer token is checked with a
 * TokenReview, then the user it names must be allowed `get` on the non-resource URL `/metrics` by a
 * SubjectAccessReview (RBAC: a ClusterRole with `nonResourceURLs: ["/metrics"], verbs: ["get"]`, which the chart
 * ships as `spillway-metrics-reader`). Outcomes are cached briefly, keyed by a hash of the token (the token itself
 * is never kept), so that a scraper every few seconds costs the apiserver two reviews a minute, not two a scrape.
 *
 * Tokens travel in the Authorization header, so a server that checks them serves HTTPS: see
 * {@link metricsServingCertificate}.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuthenticationV1Api, AuthorizationV1Api } from '@kubernetes/client-node';
import { apiErrorMessage } from './client.ts';
import { createCA, issueCert, type KeyPair } from './pki.ts';

/** The HTTP answer to one request for `/metrics`: 200 serves it, anything else answers with `message`. */
export interface MetricsAccess {
  status: 200 | 401 | 403 | 503;
  message: string;
}

/** Decides whether a request may read `/metrics`; {@link serveMetrics} calls it before collecting anything. */
export interface MetricsAuthorizer {
  check(req: IncomingMessage): Promise<MetricsAccess>;
}

/** The non-resource URL and verb a scraper needs, as RBAC spells them. */
export const METRICS_PATH = '/metrics';

/** Options of {@link KubernetesMetricsAuth}; the two APIs are the apiserver's (tests pass fakes). */
export interface KubernetesMetricsAuthOptions {
  authentication: Pick<AuthenticationV1Api, 'createTokenReview'>;
  authorization: Pick<AuthorizationV1Api, 'createSubjectAccessReview'>;
  /** How long an allowed token is trusted without asking again; default 60 s (revocation takes that long). */
  allowedTtlMs?: number;
  /** How long a refused or unknown token is refused without asking again; default 10 s. */
  deniedTtlMs?: number;
  /** Most tokens remembered; the oldest goes first. Default 1024. */
  maxEntries?: number;
  now?: () => number;
}

interface Cached {
  access: MetricsAccess;
  until: number;
}

const ALLOWED: MetricsAccess = { status: 200, message: 'ok' };

/** The bearer token of `req`, or undefined when it sends none. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

/** TokenReview + SubjectAccessReview authorisation of `/metrics`, with a short cache per token. */
export class KubernetesMetricsAuth implements MetricsAuthorizer {
  readonly #authn: KubernetesMetricsAuthOptions['authentication'];
  readonly #authz: KubernetesMetricsAuthOptions['authorization'];
  readonly #allowedTtlMs: number;
  readonly #deniedTtlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, Cached>();
  /** Reviews under way, so that concurrent scrapes with one token wait for one pair of reviews. */
  readonly #inFlight = new Map<string, Promise<MetricsAccess>>();

  constructor(opts: KubernetesMetricsAuthOptions) {
    this.#authn = opts.authentication;
    this.#authz = opts.authorization;
    this.#allowedTtlMs = opts.allowedTtlMs ?? 60_000;
    this.#deniedTtlMs = opts.deniedTtlMs ?? 10_000;
    this.#maxEntries = opts.maxEntries ?? 1024;
    this.#now = opts.now ?? Date.now;
  }

  /** 200 for a token whose user may `get /metrics`; 401 without a valid token; 403 without the permission. */
  async check(req: IncomingMessage): Promise<MetricsAccess> {
    const token = bearerToken(req);
    if (!token) return { status: 401, message: 'a bearer token is required to read /metrics' };
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.#cache.get(key);
    if (hit && hit.until > this.#now()) return hit.access;
    const running = this.#inFlight.get(key);
    if (running) return running;
    const review = this.#review(token, key).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, review);
    return review;
  }

  async #review(token: string, key: string): Promise<MetricsAccess> {
    let access: MetricsAccess;
    try {
      access = await this.#decide(token);
    } catch (err) {
      // Not cached: the apiserver being unreachable says nothing about the token.
      return { status: 503, message: `cannot check the token with the apiserver: ${apiErrorMessage(err)}` };
    }
    this.#cache.delete(key);
    this.#cache.set(key, {
      access,
      until: this.#now() + (access.status === 200 ? this.#allowedTtlMs : this.#deniedTtlMs),
    });
    while (this.#cache.size > this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    return access;
  }

  async #decide(token: string): Promise<MetricsAccess> {
    const review = await this.#authn.createTokenReview({ body: { spec: { token } } });
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username)
      return { status: 401, message: 'the bearer token is not valid' };
    const sar = await this.#authz.createSubjectAccessReview({
      body: {
        spec: {
          user: user.username,
          groups: user.groups,
          uid: user.uid,
          extra: user.extra,
          nonResourceAttributes: { path: METRICS_PATH, verb: 'get' },
        },
      },
    });
    if (sar.status?.allowed === true) return ALLOWED;
    return {
      status: 403,
      message: `${user.username} may not get ${METRICS_PATH} (bind it to the ClusterRole spillway-metrics-reader)`,
    };
  }
}

/**
 * A serving certificate for the metrics server, self-signed at start-up like the virtual node's kubelet API
 * certificate: nothing in the cluster vouches for it, so scrapers skip verification (the chart's ServiceMonitor
 * says `insecureSkipVerify`). It keeps tokens out of reach of anyone who can only read the pod network; it does
 * not stop an attacker who can redirect a scrape to itself (docs/install.md, "Security model").
 */
export async function metricsServingCertificate(names: {
  dnsNames?: string[];
  ipAddresses?: string[];
}): Promise<KeyPair> {
  const year = 365 * 24 * 3600_000;
  const ca = await createCA('spillway-metrics-ca', year);
  return issueCert(ca, { subject: 'CN=spillway-metrics', ...names, usage: 'server', validForMs: year });
}
