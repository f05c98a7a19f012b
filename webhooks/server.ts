/**
 * The HTTPS server the apiserver calls: AdmissionReview v1 in and out, one path per webhook, `/healthz` and
 * `/readyz`, a body size limit, timeouts, a certificate that can be swapped while serving, and a graceful stop.
 * Everything per request is synchronous and allocation-light: the target is p99 ≤ 5 ms at 1000 reviews/s.
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { KeyPair } from '../operator/shared/pki.ts';
import {
  admissionResponse,
  InvalidAdmissionReview,
  parseAdmissionReview,
  type AdmissionHandler,
} from './admission.ts';

/** The logging the server does (errors and rejected requests only); pino's Logger fits. */
export interface WebhookLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** How a request ended, for metrics. */
export type ReviewOutcome = 'allowed' | 'patched' | 'denied' | 'invalid' | 'too-large' | 'error';

/** Options of {@link WebhookServer.start}; every timing has a named default. */
export interface WebhookServerOptions {
  /** Webhook path → handler (see handlers.ts `webhookHandlers`). */
  handlers: Record<string, AdmissionHandler>;
  /** The serving certificate; replace it later with {@link WebhookServer.setCertificate}. */
  certificate: KeyPair;
  /** Address to bind; 127.0.0.1 unless a pod needs to be reachable through a Service. */
  host?: string;
  /** Port; 0 picks a free one (tests, dev mode). */
  port?: number;
  /** Largest accepted body; the apiserver's own request limit is 3 MiB, and an AdmissionReview is under 2× that. */
  maxBodyBytes?: number;
  /** Time to receive a whole request; the apiserver gives up after the webhook's timeoutSeconds anyway. */
  requestTimeoutMs?: number;
  /**
   * Idle keep-alive time. Longer than the apiserver's idle connection timeout (Go's 90 s): if the server closed
   * first, the apiserver could send a review on a connection that is being closed, and a POST is not retried.
   */
  keepAliveTimeoutMs?: number;
  /** Extra readiness (e.g. informer caches synced); `/readyz` also fails while shutting down. */
  isReady?: () => boolean;
  log?: WebhookLogger;
  /**
   * Called once per request with its route, outcome and duration (seconds), e.g. for a prom-client histogram.
   * The route is a registered webhook path or {@link OTHER_ROUTE}, never the raw request path: a label taken
   * from the request would let any client create series without bound (20,000 random paths made `/metrics`
   * tens of MiB).
   */
  observe?: (route: string, outcome: ReviewOutcome, seconds: number) => void;
}

/** Default body limit: 6 MiB (the apiserver caps an object at 3 MiB; the review may carry object and oldObject). */
export const DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024;
/** Default time to receive a request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Default keep-alive idle time (see {@link WebhookServerOptions.keepAliveTimeoutMs}). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 120_000;

/** The route label of every request to a path that is not a registered webhook. */
export const OTHER_ROUTE = 'other';

const JSON_TYPE = { 'content-type': 'application/json' };

/** A running webhook server. */
export class WebhookServer {
  #server: https.Server;
  #handlers: Map<string, AdmissionHandler>;
  #options: WebhookServerOptions;
  #maxBody: number;
  #closing = false;
  #inFlight = 0;

  private constructor(options: WebhookServerOptions) {
    this.#options = options;
    this.#handlers = new Map(Object.entries(options.handlers));
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#server = https.createServer(
      // A client that never finishes its TLS handshake must not hold a socket for Node's default 120 s.
      { ...tlsOptions(options.certificate), ALPNProtocols: ['http/1.1'], handshakeTimeout: 10_000 },
      (req, res) => this.#onRequest(req, res),
    );
    const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#server.requestTimeout = requestTimeout;
    this.#server.headersTimeout = Math.min(requestTimeout, 5_000);
    this.#server.keepAliveTimeout = options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS;
  }

  /** Starts listening; resolves once the port is bound. */
  static async start(options: WebhookServerOptions): Promise<WebhookServer> {
    const server = new WebhookServer(options);
    server.#server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
    await once(server.#server, 'listening');
    return server;
  }

  /** The bound port. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `https://<host>:<port><path>`, e.g. for a dev-mode `clientConfig.url`. */
  url(path = ''): string {
    const { address, family } = this.#server.address() as AddressInfo;
    const host = family === 'IPv6' ? `[${address}]` : address;
    return `https://${host}:${this.port}${path}`;
  }

  /**
   * Serves `certificate` to every new TLS connection from now on, without a restart; connections already open
   * keep the certificate they negotiated. Throws (and keeps the old certificate) when key and certificate do not
   * belong together.
   */
  setCertificate(certificate: KeyPair): void {
    this.#server.setSecureContext(tlsOptions(certificate));
  }

  /**
   * Stops accepting connections, lets in-flight reviews finish, closes idle keep-alive connections, and after
   * `graceMs` closes whatever is still open. `/readyz` fails from the first moment.
   */
  async close(graceMs = 10_000): Promise<void> {
    if (!this.#server.listening) return;
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const timer = setTimeout(() => this.#server.closeAllConnections(), graceMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  /** Requests being answered right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    // During shutdown, answer what arrives on open connections but ask the client to reconnect elsewhere.
    if (this.#closing) res.setHeader('connection', 'close');
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' || (!this.#closing && (this.#options.isReady?.() ?? true));
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'not ready');
      return;
    }
    const handler = this.#handlers.get(path);
    if (!handler) return this.#fail(req, res, path, 404, `no webhook at ${path}`, 'invalid');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return this.#fail(req, res, path, 405, `${req.method} is not allowed: send a POST`, 'invalid');
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#maxBody) return this.#tooLarge(req, res, path);

    const started = performance.now();
    this.#inFlight++;
    const chunks: Buffer[] = [];
    let size = 0;
    let rejected = false;
    req.on('data', (chunk: Buffer) => {
      if (rejected) return;
      size += chunk.length;
      if (size > this.#maxBody) {
        rejected = true;
        chunks.length = 0;
        this.#tooLarge(req, res, path);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!rejected) this.#review(path, handler, Buffer.concat(chunks, size).toString('utf8'), res, started);
    });
    res.on('close', () => this.#inFlight--);
  }

  #review(path: string, handler: AdmissionHandler, body: string, res: ServerResponse, started: number): void {
    let review;
    try {
      review = parseAdmissionReview(body);
    } catch (err) {
      const message = err instanceof InvalidAdmissionReview ? err.message : errorMessage(err);
      this.#options.log?.warn({ path, reason: message }, 'rejected a malformed AdmissionReview');
      this.#status(res, 400, message);
      return this.#observe(path, 'invalid', started);
    }
    const uid = review.request.uid;
    let answer: string;
    let outcome: ReviewOutcome;
    try {
      const result = handler(review.request);
      answer = JSON.stringify(admissionResponse(uid, result));
      outcome = !result.allowed ? 'denied' : result.patch?.length ? 'patched' : 'allowed';
    } catch (err) {
      // A bug must behave like an outage, so that the configuration's failurePolicy decides (see
      // configurations.ts) instead of this code: hence a 500, not an `allowed: false` review.
      this.#options.log?.error({ err, path, uid }, 'webhook failed');
      this.#status(res, 500, `spillway ${path} failed on request ${uid}: ${errorMessage(err)}`);
      return this.#observe(path, 'error', started);
    }
    res.writeHead(200, JSON_TYPE).end(answer);
    this.#observe(path, outcome, started);
  }

  #tooLarge(req: IncomingMessage, res: ServerResponse, path: string): void {
    const limit = `${(this.#maxBody / 1024 / 1024).toFixed(1)} MiB`;
    this.#fail(req, res, path, 413, `request body is larger than the ${limit} limit`, 'too-large');
  }

  /** Answers an error before (or instead of) reading the body: discard the rest, then close the connection. */
  #fail(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    code: number,
    msg: string,
    o: ReviewOutcome,
  ) {
    res.setHeader('connection', 'close');
    this.#status(res, code, msg);
    req.resume();
    this.#observe(path, o, performance.now());
  }

  /** A metav1.Status body, which the apiserver decodes into the error message it reports. */
  #status(res: ServerResponse, code: number, message: string): void {
    if (res.headersSent) return;
    const body = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code, message };
    res.writeHead(code, JSON_TYPE).end(JSON.stringify(body));
  }

  #observe(path: string, outcome: ReviewOutcome, started: number): void {
    const route = this.#handlers.has(path) ? path : OTHER_ROUTE;
    this.#options.observe?.(route, outcome, (performance.now() - started) / 1000);
  }
}

function tlsOptions(certificate: KeyPair) {
  return { cert: certificate.certPem, key: certificate.keyPem, minVersion: 'TLSv1.2' as const };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
