/**
 * Prometheus metrics on one private prom-client registry (never the global default one, which every library in
 * the process may write to), plus the `/metrics` HTTP endpoint. Shared metric families (workqueue, informer) are
 * created here once, labelled by `name`, so that two queues never try to register the same metric twice.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsAuthorizer } from './metrics-auth.ts';

/** spillway's one registry; default process metrics (CPU, memory, event loop lag, GC) are registered on it. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** The bound port (useful when 0 was asked for). */
  port: number;
  /** E.g. `http://127.0.0.1:8080/metrics`, or `https://…` when serving TLS. */
  url: string;
  /** Stops accepting connections and closes idle ones. */
  close(): Promise<void>;
}

/** Where {@link serveMetrics} listens. */
export interface ServeMetricsOptions {
  /** Interface to bind; default loopback, so that exposing metrics is a deliberate choice. */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Registry to serve; default {@link registry}. */
  registry?: Registry;
  /**
   * Who may read `/metrics` (e.g. {@link KubernetesMetricsAuth}); default anyone who can connect. `/healthz`
   * stays open: probes carry no token and it tells nothing.
   */
  auth?: MetricsAuthorizer;
  /** Serve HTTPS with this certificate and key (PEM); default plain HTTP. Give it whenever `auth` is set. */
  tls?: { cert: string; key: string };
}

/**
 * Serves `GET /metrics` in the Prometheus text format (and `/healthz` answering `ok`, handy for a probe);
 * anything else is a 404. Resolves once listening.
 */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const reg = options.registry ?? registry;
  // Nothing here is recorded per path: a label from the request path would let any client grow /metrics.
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      void serveRegistry(reg, options.auth, req, res);
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  };
  const server: Server = options.tls ? createHttpsServer(options.tls, handle) : createServer(handle);
  // A client that resets mid-request must never take the process down.
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    port,
    url: `${options.tls ? 'https' : 'http'}://${shownHost}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        // Node ≥ 19 also closes idle keep-alive connections here, so a scraper cannot hold this open.
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** Answers one `GET /metrics`: the access check first (when there is one), then the registry's text. */
async function serveRegistry(
  reg: Registry,
  auth: MetricsAuthorizer | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  try {
    const access = auth ? await auth.check(req) : undefined;
    if (access && access.status !== 200) {
      res.writeHead(access.status, {
        'Content-Type': 'text/plain',
        ...(access.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {}),
      });
      res.end(`${access.message}\n`);
      return;
    }
    const text = await reg.metrics();
    res.writeHead(200, { 'Content-Type': reg.contentType });
    res.end(text);
  } catch (err) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

/** Returns the metric already registered under `name`, or registers the one `create` makes. */
function once<T>(reg: Registry, name: string, create: () => T): T {
  return (reg.getSingleMetric(name) as T | undefined) ?? create();
}

/** The workqueue metric family (controller-runtime's names, with a `spillway_` prefix), labelled by queue name. */
export interface WorkqueueMetrics {
  depth: Gauge<'name'>;
  adds: Counter<'name'>;
  retries: Counter<'name'>;
  workDuration: Histogram<'name'>;
}

/** The workqueue metrics on `reg` (default {@link registry}), created on first use. */
export function workqueueMetrics(reg: Registry = registry): WorkqueueMetrics {
  const registers = [reg];
  return {
    depth: once(
      reg,
      'spillway_workqueue_depth',
      () =>
        new Gauge({
          name: 'spillway_workqueue_depth',
          help: 'Keys waiting in the queue',
          labelNames: ['name'],
          registers,
        }),
    ),
    adds: once(
      reg,
      'spillway_workqueue_adds_total',
      () =>
        new Counter({
          name: 'spillway_workqueue_adds_total',
          help: 'Keys added to the queue (before deduplication)',
          labelNames: ['name'],
          registers,
        }),
    ),
    retries: once(
      reg,
      'spillway_workqueue_retries_total',
      () =>
        new Counter({
          name: 'spillway_workqueue_retries_total',
          help: 'Rate-limited re-adds after a failed reconcile',
          labelNames: ['name'],
          registers,
        }),
    ),
    workDuration: once(
      reg,
      'spillway_workqueue_work_duration_seconds',
      () =>
        new Histogram({
          name: 'spillway_workqueue_work_duration_seconds',
          help: 'Time one reconcile of one key took',
          labelNames: ['name'],
          buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
          registers,
        }),
    ),
  };
}

/** Restarts of supervised informers after a watch or list error, labelled by informer name. */
export function informerRestarts(reg: Registry = registry): Counter<'name'> {
  return once(
    reg,
    'spillway_informer_restarts_total',
    () =>
      new Counter({
        name: 'spillway_informer_restarts_total',
        help: 'Informer restarts after a list or watch error',
        labelNames: ['name'],
        registers: [reg],
      }),
  );
}

/**
 * Duration of kubelet API requests on the virtual nodes, labelled by a fixed route name (never the request path:
 * a label from the path would let any client grow `/metrics` without bound) and the status code answered.
 */
export function kubeletRequestDuration(reg: Registry = registry): Histogram<'route' | 'code'> {
  return once(
    reg,
    'spillway_kubelet_request_duration_seconds',
    () =>
      new Histogram({
        name: 'spillway_kubelet_request_duration_seconds',
        help: 'Kubelet API requests of the virtual nodes, by route and status code (exec/attach: until the session ends)',
        labelNames: ['route', 'code'],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
        registers: [reg],
      }),
  );
}
