/**
 * The kubelet API of a virtual node, over HTTPS on the node's kubelet port: what `kubectl logs/exec/attach`
 * (through the apiserver), metrics-server and `kubectl get --raw /api/v1/nodes/<n>/proxy/...` call.
 * Every request is authenticated and authorised first (./auth.ts).
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { V1Pod } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import {
  isNotFound,
  sandboxKey,
  type PodStats,
  type SandboxInstance,
  type SandboxKey,
  type SandboxProvider,
} from '../../providers/types.ts';
import type { Logger } from '../../shared/log.ts';
import { kubeletRequestDuration } from '../../shared/metrics.ts';
import { subresourceFor, verbFor, type KubeletAuth } from './auth.ts';
import {
  RemoteCommandRequestError,
  parseRemoteCommandQuery,
  serveRemoteCommand,
  writeUpgradeError,
} from './exec-stream.ts';
import { servePortForward } from './port-forward.ts';
import { kubeletRoute, type KubeletRoute } from './routes.ts';

/** What the kubelet API serves from. */
export interface KubeletApiOptions {
  nodeName: string;
  provider: SandboxProvider;
  auth: KubeletAuth;
  /** Looks up a pod bound to this node (from the pod controller's cache). */
  pod(namespace: string, name: string): V1Pod | undefined;
  /** All pods bound to this node, for `/pods`. */
  pods(): V1Pod[];
  /** Serving certificate and key (PEM), and the CA that signs client certificates it accepts. */
  tls: { cert: string; key: string; clientCA?: string };
  host: string;
  port: number;
  logger: Logger;
  /** Where the request-duration histogram is recorded (default spillway's registry). */
  registry?: Registry;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function podKey(opts: KubeletApiOptions, namespace: string, name: string): SandboxKey {
  const pod = opts.pod(namespace, name);
  if (!pod) throw new HttpError(404, `pod ${namespace}/${name} not found on node ${opts.nodeName}`);
  return sandboxKey(pod);
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const num = (v: string | null) => (v === null || v === '' ? undefined : Number(v));

async function containerLogs(
  opts: KubeletApiOptions,
  parts: string[],
  q: URLSearchParams,
  res: ServerResponse,
): Promise<void> {
  const [namespace, name, container] = parts;
  if (!namespace || !name || !container)
    throw new HttpError(400, 'path must be /containerLogs/<namespace>/<pod>/<container>');
  const pod = opts.pod(namespace, name);
  const key = podKey(opts, namespace, name);
  const previous = q.get('previous') === 'true';
  const known = [...(pod?.spec?.initContainers ?? []), ...(pod?.spec?.containers ?? [])].some(
    (c) => c.name === container,
  );
  // The kubelet's answers (400, which the apiserver passes on with the message; a 404 loses it).
  if (!known) throw new HttpError(400, `container ${container} is not valid for pod ${name}`);
  const sinceTime = q.get('sinceTime');
  let stream;
  try {
    stream = await opts.provider.logs(key, container, {
      follow: q.get('follow') === 'true',
      tailLines: num(q.get('tailLines')),
      timestamps: q.get('timestamps') === 'true',
      sinceSeconds: num(q.get('sinceSeconds')),
      sinceTime: sinceTime ? new Date(sinceTime) : undefined,
      previous,
      limitBytes: num(q.get('limitBytes')),
    });
  } catch (err) {
    if (isNotFound(err) && previous)
      throw new HttpError(400, `previous terminated container "${container}" in pod "${name}" not found`);
    const waiting = waitingReason(pod, container);
    if (isNotFound(err) && waiting)
      throw new HttpError(400, `container "${container}" in pod "${name}" is waiting to start: ${waiting}`);
    if (isNotFound(err)) throw new HttpError(404, (err as Error).message);
    throw err;
  }
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Transfer-Encoding': 'chunked' });
  res.on('close', () => stream.destroy());
  await pipeline(stream, res).catch(() => undefined);
}

/** Why a container that never ran is waiting (the kubelet's wording for image pulls), from the Pod status. */
function waitingReason(pod: V1Pod | undefined, container: string): string | undefined {
  const statuses = [...(pod?.status?.initContainerStatuses ?? []), ...(pod?.status?.containerStatuses ?? [])];
  const reason = statuses.find((s) => s.name === container)?.state?.waiting?.reason;
  if (reason === 'ErrImagePull') return "image can't be pulled";
  if (reason === 'ImagePullBackOff') return 'trying and failing to pull image';
  return reason;
}

/**
 * `/runningpods/` as the kubelet answers it: a PodList of the pods with running containers, each with only its
 * name, namespace, UID and the running containers' names and images (what the runtime knows, not the API's pod).
 */
export function runningPods(instances: SandboxInstance[]): object {
  const items = [];
  for (const inst of instances) {
    const reports = [...(inst.status?.initContainers ?? []), ...(inst.status?.containers ?? [])];
    const containers = reports
      .filter((c) => c.state.kind === 'running')
      .map((c) => ({ name: c.name, image: c.image ?? '', resources: {} }));
    if (containers.length === 0) continue;
    items.push({
      metadata: {
        name: inst.key.name,
        namespace: inst.key.namespace,
        uid: inst.key.uid,
        creationTimestamp: null,
      },
      spec: { containers },
      status: {},
    });
  }
  return { kind: 'PodList', apiVersion: 'v1', metadata: {}, items };
}

/** `/stats/summary` in the kubelet's Summary API shape. */
export function statsSummary(nodeName: string, startTime: Date, stats: PodStats[], now = new Date()): object {
  const time = now.toISOString();
  let cpu = 0;
  let cpuTotal = 0;
  let mem = 0;
  for (const p of stats) {
    cpu += p.cpu?.usageNanoCores ?? 0;
    cpuTotal += p.cpu?.usageCoreNanoSeconds ?? 0;
    mem += p.memory?.workingSetBytes ?? 0;
  }
  return {
    node: {
      nodeName,
      startTime: startTime.toISOString(),
      cpu: { time, usageNanoCores: cpu, usageCoreNanoSeconds: cpuTotal },
      memory: { time, workingSetBytes: mem, usageBytes: mem },
    },
    pods: stats.map((p) => ({
      podRef: { name: p.key.name, namespace: p.key.namespace, uid: p.key.uid },
      startTime: p.startTime.toISOString(),
      cpu: p.cpu && { time: p.time.toISOString(), ...p.cpu },
      memory: p.memory && { time: p.time.toISOString(), ...p.memory },
      network: p.network && {
        time: p.time.toISOString(),
        rxBytes: p.network.rxBytes,
        txBytes: p.network.txBytes,
      },
      containers: p.containers.map((c) => ({
        name: c.name,
        startTime: c.startTime.toISOString(),
        cpu: c.cpu && { time: p.time.toISOString(), ...c.cpu },
        memory: c.memory && { time: p.time.toISOString(), ...c.memory },
      })),
    })),
  };
}

/** `/metrics/resource` in the Prometheus text format metrics-server reads. */
export function resourceMetrics(stats: PodStats[]): string {
  const lines: string[] = [];
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const family = (
    name: string,
    type: string,
    help: string,
    rows: [Record<string, string>, number, Date][],
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value, at] of rows) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${esc(v)}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${value} ${at.getTime()}`);
    }
  };
  const cpuSec = (ns: number | undefined) => (ns ?? 0) / 1e9;
  const containers = stats.flatMap((p) => p.containers.map((c) => ({ p, c })));
  const cl = (p: PodStats, c: { name: string }) => ({
    container: c.name,
    namespace: p.key.namespace,
    pod: p.key.name,
  });
  const pl = (p: PodStats) => ({ namespace: p.key.namespace, pod: p.key.name });
  family(
    'container_cpu_usage_seconds_total',
    'counter',
    '[STABLE] Cumulative cpu time consumed by the container in core-seconds',
    containers.map(({ p, c }) => [cl(p, c), cpuSec(c.cpu?.usageCoreNanoSeconds), p.time]),
  );
  family(
    'container_memory_working_set_bytes',
    'gauge',
    '[STABLE] Current working set of the container in bytes',
    containers.map(({ p, c }) => [cl(p, c), c.memory?.workingSetBytes ?? 0, p.time]),
  );
  family(
    'container_start_time_seconds',
    'gauge',
    '[STABLE] Start time of the container since unix epoch in seconds',
    containers.map(({ p, c }) => [cl(p, c), c.startTime.getTime() / 1000, p.time]),
  );
  family(
    'pod_cpu_usage_seconds_total',
    'counter',
    '[STABLE] Cumulative cpu time consumed by the pod in core-seconds',
    stats.map((p) => [pl(p), cpuSec(p.cpu?.usageCoreNanoSeconds), p.time]),
  );
  family(
    'pod_memory_working_set_bytes',
    'gauge',
    '[STABLE] Current working set of the pod in bytes',
    stats.map((p) => [pl(p), p.memory?.workingSetBytes ?? 0, p.time]),
  );
  const now = new Date();
  family(
    'node_cpu_usage_seconds_total',
    'counter',
    '[STABLE] Cumulative cpu time consumed by the node in core-seconds',
    [[{}, stats.reduce((s, p) => s + cpuSec(p.cpu?.usageCoreNanoSeconds), 0), now]],
  );
  family('node_memory_working_set_bytes', 'gauge', '[STABLE] Current working set of the node in bytes', [
    [{}, stats.reduce((s, p) => s + (p.memory?.workingSetBytes ?? 0), 0), now],
  ]);
  family(
    'scrape_error',
    'gauge',
    '[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise',
    [[{}, 0, now]],
  );
  return lines.join('\n') + '\n';
}

/** The URL and decoded path segments of a request; a malformed one is a 400. */
function parsePath(raw: string | undefined): { url: URL; parts: string[] } {
  try {
    const url = new URL(raw ?? '/', 'https://kubelet');
    return { url, parts: url.pathname.split('/').filter(Boolean).map(decodeURIComponent) };
  } catch {
    throw new HttpError(400, 'malformed request path');
  }
}

/** Starts the kubelet API; resolves once listening. */
export async function startKubeletApi(opts: KubeletApiOptions): Promise<Server> {
  const started = new Date();
  const duration = kubeletRequestDuration(opts.registry);
  /** Records one request under its fixed route name (see ./routes.ts) and the status answered. */
  const observe = (route: KubeletRoute, code: number | 'aborted', since: number) =>
    duration.observe({ route, code: String(code) }, (performance.now() - since) / 1000);
  const server = createServer({
    cert: opts.tls.cert,
    key: opts.tls.key,
    // Without the cluster's client CA, Node would check client certificates against its public CA list: a
    // publicly issued certificate naming system:masters must never authenticate. Then only tokens count.
    ...(opts.tls.clientCA ? { ca: opts.tls.clientCA } : {}),
    // Ask for a client certificate but let token-bearing requests through; auth.ts checks `authorized`.
    requestCert: Boolean(opts.tls.clientCA),
    rejectUnauthorized: false,
  });

  /** Authenticates and authorises a request routed by `parts` (its decoded path segments). */
  const guard = async (req: IncomingMessage, parts: string[]): Promise<void> => {
    const user = await opts.auth.authenticate(req);
    if (!user) throw new HttpError(401, 'Unauthorized');
    // The decoded path the request is routed by, as the kubelet authorises Go's decoded URL.Path.
    const path = '/' + parts.join('/');
    if (!(await opts.auth.authorize(user, req.method, path))) {
      const { subresource } = subresourceFor(path);
      throw new HttpError(
        403,
        `Forbidden (user=${user.username}, verb=${verbFor(req.method, path)}, resource=nodes, subresource=${subresource})`,
      );
    }
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Parsed inside the handled block: a malformed path (`/%`, `//`) is a 400, never a crash of the node.
    let url = new URL('https://kubelet/');
    const since = performance.now();
    let route: KubeletRoute = 'other';
    res.once('close', () => observe(route, res.headersSent ? res.statusCode : 'aborted', since));
    void (async () => {
      const parsed = parsePath(req.url);
      url = parsed.url;
      const { parts } = parsed;
      route = kubeletRoute(parts);
      await guard(req, parts);
      switch (parts[0]) {
        case 'healthz':
          return send(res, 200, 'ok');
        case 'pods':
          return send(
            res,
            200,
            JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: opts.pods() }),
            'application/json',
          );
        case 'runningpods':
          if (parts.length > 1) break;
          return send(res, 200, JSON.stringify(runningPods(await opts.provider.list())), 'application/json');
        case 'containerLogs':
          return containerLogs(opts, parts.slice(1), url.searchParams, res);
        case 'stats':
          if (parts[1] !== 'summary') break;
          return send(
            res,
            200,
            JSON.stringify(statsSummary(opts.nodeName, started, await opts.provider.statsSummary())),
            'application/json',
          );
        case 'metrics':
          if (parts[1] !== 'resource') break;
          return send(
            res,
            200,
            resourceMetrics(await opts.provider.statsSummary()),
            'text/plain; version=0.0.4',
          );
        case 'exec':
        case 'attach':
        case 'portForward':
          throw new HttpError(400, `${parts[0]} needs an upgrade to SPDY/3.1`);
      }
      throw new HttpError(404, `${url.pathname} is not served by spillway's virtual kubelet`);
    })().catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500)
        opts.logger.warn({ path: url.pathname, err: String(err) }, 'kubelet API request failed');
      if (!res.headersSent) send(res, status, err instanceof Error ? err.message : String(err));
      else res.destroy();
    });
  });

  // A client that resets mid-request (before the head is parsed) must not take the node down either.
  server.on('clientError', (_err: Error, socket: Duplex) => socket.destroy());

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node removes its own error listener from a socket it hands over on `upgrade`. Without this one, a
    // client's reset (read ECONNRESET) at any moment from here on — during authentication, after a 401,
    // mid-SPDY — is an unhandled 'error' event, and the process exits.
    socket.on('error', (err) => opts.logger.debug({ err: err.message }, 'kubelet API upgrade socket error'));
    const since = performance.now();
    let route: KubeletRoute = 'other';
    void (async () => {
      const { url, parts } = parsePath(req.url);
      route = kubeletRoute(parts);
      await guard(req, parts);
      const [verb, namespace, name, container] = parts;
      if (verb === 'portForward' && namespace && name) {
        // `/portForward/<namespace>/<pod>[/<uid>]`, as the kubelet routes it.
        const key = podKey(opts, namespace, name);
        const forward = opts.provider.portForward?.bind(opts.provider);
        if (!forward)
          throw new HttpError(501, `provider ${opts.provider.name} does not support port-forward`);
        const outcome = await servePortForward(req, socket, head, (port) => forward(key, port), {
          podName: name,
          uid: key.uid,
          onError: (err) => opts.logger.debug({ err: err.message }, 'port-forward stream error'),
        });
        const refused = outcome.error instanceof RemoteCommandRequestError ? outcome.error.status : 500;
        observe(route, outcome.protocol ? 101 : refused, since);
        return;
      }
      if ((verb !== 'exec' && verb !== 'attach') || !namespace || !name || !container) {
        throw new HttpError(404, `${url.pathname} is not an exec or attach path`);
      }
      const key = podKey(opts, namespace, name);
      const options = parseRemoteCommandQuery(url.searchParams);
      if (verb === 'attach' && !opts.provider.attach)
        throw new HttpError(501, `provider ${opts.provider.name} does not support attach`);
      const outcome = await serveRemoteCommand(
        req,
        socket,
        head,
        options,
        (streams) =>
          verb === 'exec'
            ? opts.provider.exec(key, container, options.command, streams)
            : opts.provider.attach!(key, container, streams),
        { onError: (err) => opts.logger.debug({ err: err.message }, 'exec stream error') },
      );
      // Upgraded: the session has ended now. Refused while negotiating: the status it was refused with.
      const refused = outcome.error instanceof RemoteCommandRequestError ? outcome.error.status : 500;
      observe(route, outcome.protocol ? 101 : refused, since);
    })().catch((err: unknown) => {
      const status = err instanceof HttpError || err instanceof RemoteCommandRequestError ? err.status : 500;
      writeUpgradeError(socket, status, err instanceof Error ? err.message : String(err));
      observe(route, status, since);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}
