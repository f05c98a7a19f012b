/**
 * Startup, liveness and readiness probes of local containers, run by the node as a kubelet runs them:
 * the first check after `initialDelaySeconds`, then every `periodSeconds`, each bounded by `timeoutSeconds`;
 * the result flips after `successThreshold` successes or `failureThreshold` failures in a row.
 * exec probes run inside the container's sandbox; httpGet and tcpSocket connect to the pod IP over the bridge.
 */
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';

/** One probe attempt: resolves true for success; never rejects. */
export type ProbeCheck = (probe: V1Probe, timeoutMs: number) => Promise<boolean>;

/** Resolves a probe's port (a number, or the name of one of the container's ports). */
export function probePort(port: number | string | undefined, container: Pick<V1Container, 'ports'>): number {
  if (typeof port === 'number') return port;
  if (port !== undefined && /^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  return named?.containerPort ?? 0;
}

/** An httpGet probe attempt against `host` (the pod IP unless the probe names a host). */
export function httpCheck(probe: V1Probe, host: string, port: number, timeoutMs: number): Promise<boolean> {
  const get = probe.httpGet!;
  const request = get.scheme === 'HTTPS' ? httpsRequest : httpRequest;
  const headers: Record<string, string> = { 'User-Agent': 'kube-probe/1.36', Accept: '*/*' };
  for (const h of get.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    const req = request(
      {
        host: get.host || host,
        port,
        path: get.path ?? '/',
        headers,
        timeout: timeoutMs,
        rejectUnauthorized: false,
      },
      (res) => {
        res.resume();
        resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** A tcpSocket probe attempt: success when the connection opens. */
export function tcpCheck(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Runs one probe of one container on its schedule and reports each flip of its result. */
export class ProbeWorker {
  readonly kind: 'startup' | 'liveness' | 'readiness';
  readonly #probe: V1Probe;
  readonly #check: ProbeCheck;
  readonly #onResult: (ok: boolean) => void;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #successes = 0;
  #failures = 0;
  /** The current result: startup and readiness start failed, liveness starts passed. */
  result: boolean;

  constructor(
    kind: 'startup' | 'liveness' | 'readiness',
    probe: V1Probe,
    check: ProbeCheck,
    onResult: (ok: boolean) => void,
  ) {
    this.kind = kind;
    this.#probe = probe;
    this.#check = check;
    this.#onResult = onResult;
    this.result = kind === 'liveness';
  }

  /** Starts probing after the initial delay. */
  start(): void {
    this.#schedule((this.#probe.initialDelaySeconds ?? 0) * 1000);
  }

  /** Stops probing; no result is reported afterwards. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#attempt(), ms);
    this.#timer.unref();
  }

  async #attempt(): Promise<void> {
    const timeoutMs = Math.max(1, this.#probe.timeoutSeconds ?? 1) * 1000;
    const ok = await this.#check(this.#probe, timeoutMs).catch(() => false);
    if (this.#stopped) return;
    if (ok) {
      this.#failures = 0;
      this.#successes++;
      // Liveness and startup must use successThreshold 1 (API validation); readiness may ask for more.
      if (!this.result && this.#successes >= (this.#probe.successThreshold ?? 1)) this.#flip(true);
    } else {
      this.#successes = 0;
      this.#failures++;
      if (this.result && this.#failures >= (this.#probe.failureThreshold ?? 3)) this.#flip(false);
      else if (this.kind === 'startup' && this.#failures >= (this.#probe.failureThreshold ?? 3)) {
        this.#onResult(false);
        return;
      }
    }
    // A passed startup probe has done its job.
    if (this.kind === 'startup' && this.result) return;
    this.#schedule(Math.max(1, this.#probe.periodSeconds ?? 10) * 1000);
  }

  #flip(ok: boolean): void {
    this.result = ok;
    this.#onResult(ok);
  }
}
