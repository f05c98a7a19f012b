/**
 * One pod on the CRI runtime, supervised as a kubelet's pod worker supervises it: init containers in order, then
 * the containers; restarts by restartPolicy with the kubelet's back-off (the first restart at once, then
 * `backoffMs` doubling to `maxBackoffMs`, shown as `CrashLoopBackOff`; reset after a run of `backoffResetMs`);
 * image pulls per policy with their own back-off (`ErrImagePull`, then `ImagePullBackOff`); probes; the pod phase.
 *
 * Level-based: each {@link PodWorker.sync} reads the sandbox's containers from the runtime and decides from them,
 * so a worker built after an operator restart carries on where the last one was. The runtime's containers are the
 * only record of runs: attempt N of a container is the container whose metadata attempt is N (its restart count).
 * A container found created but never started was left by a create that died half-way: it is removed and created
 * again under the same attempt, so one pod never has two containers running for one name.
 *
 * Native sidecars (init containers with `restartPolicy: Always`, Kubernetes 1.29+) follow the kubelet: one starts in
 * its place in the init order and the next init container starts once it has started (past its startupProbe, or
 * running when it has none); it runs for the pod's life, restarted with the same back-off whatever the pod's
 * restartPolicy; once the main containers of a Never/OnFailure pod have all ended, the sidecars are stopped in
 * reverse order and the pod's phase is the main containers' alone.
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { Logger } from '../../shared/log.ts';
import {
  isNotFound,
  type ContainerReport,
  type ContainerState,
  type ReportedCondition,
  type ResolvedPodInputs,
  type SandboxKey,
  type SandboxPhase,
  type SandboxStatus,
} from '../types.ts';
import type { CriClient } from './cri/client.ts';
import type { ContainerStatus, PodSandboxConfig } from './cri/types.ts';
import { ensureImage, ImageError } from './images.ts';
import { ContainerConfigError, containerConfig, type PodPaths } from './plan.ts';
import { httpCheck, probePort, ProbeWorker, tcpCheck, type ProbeCheck } from './probes.ts';
import { isMaterialised } from './volumes.ts';

/** Timings of supervision; defaults follow the kubelet's. */
export interface SupervisionOptions {
  /** Delay of the second restart (and of the second pull), doubling after (kubelet: 10 s). */
  backoffMs: number;
  /** Longest delay (kubelet: 5 min). */
  maxBackoffMs: number;
  /** A run that lasted this long resets the back-off (kubelet: 10 min). */
  backoffResetMs: number;
}

/** What a pod's record (`record.json`) holds: everything needed to create its containers again. */
export interface PodRecord {
  key: SandboxKey;
  createdAt: string;
  pod: V1Pod;
  /** Resolved env of each container; volumes are on disk, pull secrets are not kept. */
  env: NonNullable<ResolvedPodInputs['env']>;
  sandboxId: string;
  sandboxConfig: PodSandboxConfig;
  ips: string[];
}

/** The steps of a container's start, each reported once done (tests crash the operator there). */
export type ContainerStep = 'container-created' | 'container-started';

/** A worker's dependencies. */
export interface PodWorkerContext {
  cri: CriClient;
  nodeName: string;
  paths: PodPaths;
  supervision: SupervisionOptions;
  log: Logger;
  changed: () => void;
  event: (type: 'Normal' | 'Warning', reason: string, message: string) => void;
  step?: (name: ContainerStep, uid: string) => void;
  /** The sandbox is gone or no longer ready (its shim died): the provider replaces it, as a kubelet does. */
  sandboxLost: (why: string) => void;
}

interface BackOff {
  crashes: number;
  /** The exited container this back-off waits after, and when the wait ends. */
  after?: string;
  until?: number;
}

interface PullState {
  reason:
    | 'ErrImagePull'
    | 'ImagePullBackOff'
    | 'ErrImageNeverPull'
    | 'InvalidImageName'
    | 'CreateContainerConfigError'
    | 'CreateContainerError';
  message: string;
  failures: number;
  /** When it failed, and when to try again. */
  at: number;
  until: number;
}

/**
 * The waiting reason of a failed pull at `now`: `ErrImagePull` for the first half of the wait (what the failed
 * attempt said), then `ImagePullBackOff` until the next attempt, as a kubelet's syncs within the back-off show it.
 */
function pullReason(p: PullState, now: number): PullState['reason'] {
  if (p.reason !== 'ErrImagePull') return p.reason;
  return now < p.at + (p.until - p.at) / 2 ? 'ErrImagePull' : 'ImagePullBackOff';
}

/** Probes and their results for one running container. */
interface Probing {
  containerId: string;
  workers: ProbeWorker[];
  started: boolean;
  ready: boolean;
}

/** A native sidecar: an init container with `restartPolicy: Always`. */
export const isSidecar = (c: V1Container) => c.restartPolicy === 'Always';

/** `<runtime>://<id>` as a kubelet reports it. */
export const containerID = (id: string) => `containerd://${id}`;

/** The terminated state of a runtime container that has exited. */
export function terminatedOf(s: ContainerStatus, message?: string): ContainerState {
  const code = s.exitCode;
  const signal = code > 128 && code < 128 + 65 ? code - 128 : undefined;
  return {
    kind: 'terminated',
    exitCode: code,
    ...(signal ? { signal } : {}),
    reason: s.reason || (code === 0 ? 'Completed' : 'Error'),
    ...(message || s.message ? { message: message || s.message } : {}),
    ...(s.startedAt ? { startedAt: s.startedAt } : {}),
    finishedAt: s.finishedAt ?? new Date(),
  };
}

/** A pod's sandbox and the supervision of its containers. */
export class PodWorker {
  readonly record: PodRecord;
  terminating = false;
  readonly #ctx: PodWorkerContext;
  readonly #pullSecrets: Buffer[];
  /** The runtime's containers of this sandbox by name, attempt order; statuses of exited ones never change. */
  #runs = new Map<string, ContainerStatus[]>();
  readonly #backoff = new Map<string, BackOff>();
  readonly #pull = new Map<string, PullState>();
  readonly #probing = new Map<string, Probing>();
  #failed: { reason: string; message: string } | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = 0;
  #lastStatus = '';
  /** When this worker began: a container made before it and never started was a previous operator's. */
  readonly #since = Date.now();

  constructor(record: PodRecord, ctx: PodWorkerContext, pullSecrets: Buffer[] = []) {
    this.record = record;
    this.#ctx = ctx;
    this.#pullSecrets = pullSecrets;
  }

  get key(): SandboxKey {
    return this.record.key;
  }

  get #spec() {
    return this.record.pod.spec ?? { containers: [] };
  }

  #restartPolicy(): 'Always' | 'OnFailure' | 'Never' {
    const p = this.#spec.restartPolicy;
    return p === 'Never' || p === 'OnFailure' ? p : 'Always';
  }

  /** The latest run of a container (highest attempt), if any. */
  latest(name: string): ContainerStatus | undefined {
    const runs = this.#runs.get(name);
    return runs?.[runs.length - 1];
  }

  /** The run before the latest, for `lastState` and `logs --previous`. */
  previous(name: string): ContainerStatus | undefined {
    const runs = this.#runs.get(name);
    return runs && runs.length > 1 ? runs[runs.length - 2] : undefined;
  }

  /** The running container of `name`, if it runs. */
  running(name: string): ContainerStatus | undefined {
    const l = this.latest(name);
    return l?.state === 'CONTAINER_RUNNING' ? l : undefined;
  }

  /** Whether the pod has a container of that name (init or regular). */
  has(name: string): boolean {
    return this.#specOf(name) !== undefined;
  }

  /**
   * Reads the runtime's view and acts on it; runs again when asked during a run. Never rejects: a failing step
   * is logged and retried on the next sync.
   */
  sync(): Promise<void> {
    if (this.#syncing) {
      this.#again = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#again = false;
        try {
          await this.#syncOnce();
        } catch (err) {
          if (!this.terminating)
            this.#ctx.log.warn({ pod: this.key.name, err: String(err) }, 'pod sync failed');
        }
        this.#notifyIfChanged();
      } while (this.#again && !this.terminating);
    })().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  /** A fresh read of the runtime for `status()`: a sync, unless one is already under way (it may be pulling). */
  async refresh(): Promise<void> {
    if (!this.#syncing) await this.sync();
  }

  #notifyIfChanged(): void {
    const text = JSON.stringify(this.status());
    if (text === this.#lastStatus) return;
    this.#lastStatus = text;
    this.#ctx.changed();
  }

  async #read(): Promise<void> {
    const list = await this.#ctx.cri.listContainers({ podSandboxId: this.record.sandboxId });
    const known = new Map<string, ContainerStatus>();
    for (const runs of this.#runs.values()) for (const r of runs) known.set(r.id, r);
    const runs = new Map<string, ContainerStatus[]>();
    for (const c of list) {
      const old = known.get(c.id);
      // An exited container never changes again: no second ContainerStatus for it.
      const status =
        old && old.state === 'CONTAINER_EXITED'
          ? old
          : old && old.state === c.state && c.state === 'CONTAINER_RUNNING'
            ? old
            : await this.#ctx.cri.containerStatus(c.id).catch(() => undefined);
      if (!status) continue;
      const name = status.metadata.name;
      runs.set(name, [...(runs.get(name) ?? []), status]);
    }
    for (const r of runs.values())
      r.sort(
        (a, b) => a.metadata.attempt - b.metadata.attempt || a.createdAt.getTime() - b.createdAt.getTime(),
      );
    this.#runs = runs;
  }

  async #syncOnce(): Promise<void> {
    if (this.terminating) return;
    const sandbox = await this.#ctx.cri.podSandboxStatus(this.record.sandboxId).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (this.terminating) return;
    if (sandbox?.state !== 'SANDBOX_READY') {
      this.detach();
      this.#ctx.sandboxLost(sandbox ? 'its sandbox is no longer ready' : 'its sandbox is gone');
      return;
    }
    await this.#read();
    // Half-built containers: created and never started (the operator died between the two calls), or whose start
    // a previous operator's death cancelled (containerd ends such a start as exited without ever running it).
    const halfBuilt = (x: ContainerStatus) =>
      x.state === 'CONTAINER_CREATED' ||
      x.state === 'CONTAINER_UNKNOWN' ||
      (x.state === 'CONTAINER_EXITED' && !x.startedAt && x.createdAt.getTime() < this.#since);
    for (const [name, runs] of this.#runs) {
      for (const r of runs.filter(halfBuilt)) {
        this.#ctx.log.info(
          { pod: this.key.name, container: name, id: r.id },
          'removing a container that was never started',
        );
        await this.#ctx.cri.removeContainer(r.id).catch(() => undefined);
      }
    }
    this.#runs = new Map([...this.#runs].map(([n, runs]) => [n, runs.filter((x) => !halfBuilt(x))]));
    await this.#collectOldRuns();
    if (this.terminating) return;
    // A pod that has ended (an init container failed under Never, or its main containers are all done) keeps no
    // sidecar running: they stop after the main containers, as the kubelet stops them.
    if (this.#failed || this.#mainsDone()) return this.#stopSidecars();
    const initialized = this.#initialized();
    for (const c of this.#spec.initContainers ?? []) {
      const l = this.latest(c.name);
      if (isSidecar(c)) {
        if (l?.state === 'CONTAINER_RUNNING') {
          this.#ensureProbes(c, l);
          // The next init container waits for this one to have started (its startupProbe passed), not to end.
          if (initialized || this.#probing.get(c.name)?.started) continue;
          return;
        }
        this.#stopProbes(c.name);
        await this.#startWhenDue(c, true);
        if (initialized) continue;
        return;
      }
      if (initialized) continue; // a regular init container never runs again once the main containers have run
      if (l?.state === 'CONTAINER_EXITED' && l.exitCode === 0) continue;
      if (l?.state === 'CONTAINER_RUNNING') return;
      if (l && this.#restartPolicy() === 'Never') {
        this.#failed = {
          reason: 'InitContainerFailed',
          message: `init container "${c.name}" exited with ${l.exitCode}`,
        };
        this.#again = true; // the next pass stops the sidecars that run
        return;
      }
      await this.#startWhenDue(c, true);
      return;
    }
    for (const c of this.#spec.containers) {
      const l = this.latest(c.name);
      if (l?.state === 'CONTAINER_RUNNING') {
        this.#ensureProbes(c, l);
        continue;
      }
      this.#stopProbes(c.name);
      if (l && !this.#wantsRestart(l)) continue;
      await this.#startWhenDue(c, false);
    }
  }

  /**
   * Whether the pod is initialized: some main container has run (the kubelet's test, which keeps a pod initialized
   * while a sidecar restarts), or every regular init container completed and every sidecar has started.
   */
  #initialized(): boolean {
    if (this.#spec.containers.some((c) => this.latest(c.name))) return true;
    return (this.#spec.initContainers ?? []).every((c) => {
      const l = this.latest(c.name);
      if (isSidecar(c))
        return l?.state === 'CONTAINER_RUNNING' && Boolean(this.#probing.get(c.name)?.started);
      return l?.state === 'CONTAINER_EXITED' && l.exitCode === 0;
    });
  }

  /** A Never/OnFailure pod whose main containers have all ended for good: its phase is theirs. */
  #mainsDone(): boolean {
    if (this.#restartPolicy() === 'Always') return false;
    return this.#spec.containers.every((c) => {
      const l = this.latest(c.name);
      return l?.state === 'CONTAINER_EXITED' && !this.#wantsRestart(l);
    });
  }

  /** Stops the running sidecars one by one, the last declared first (the kubelet's order). */
  async #stopSidecars(): Promise<void> {
    const grace = this.#spec.terminationGracePeriodSeconds ?? 30;
    for (const c of [...(this.#spec.initContainers ?? [])].reverse()) {
      const r = isSidecar(c) ? this.running(c.name) : undefined;
      if (!r) continue;
      this.#stopProbes(c.name);
      await this.#ctx.cri.stopContainer(r.id, grace);
      this.#again = true;
    }
  }

  /**
   * Stops every running container of the pod in the kubelet's order: the main containers together, then the
   * sidecars one by one in reverse order, all within `graceSeconds` (a sidecar gets what its elders left, at
   * least 2 s as the kubelet gives). Call after {@link detach}.
   */
  async stopContainers(graceSeconds: number): Promise<void> {
    await this.#read().catch(() => undefined);
    const began = Date.now();
    const inits = this.#spec.initContainers ?? [];
    const sidecars = new Set(inits.filter(isSidecar).map((c) => c.name));
    const stop = (r: ContainerStatus, grace: number) =>
      this.#ctx.cri.stopContainer(r.id, grace).catch(() => undefined);
    const others = [...this.#runs.entries()]
      .filter(([name]) => !sidecars.has(name))
      .flatMap(([, runs]) => runs.filter((r) => r.state === 'CONTAINER_RUNNING'));
    await Promise.all(others.map((r) => stop(r, graceSeconds)));
    for (const c of [...inits].reverse()) {
      const r = sidecars.has(c.name) ? this.running(c.name) : undefined;
      if (!r) continue;
      const left = graceSeconds - Math.floor((Date.now() - began) / 1000);
      await stop(r, graceSeconds === 0 ? 0 : Math.max(2, left));
    }
  }

  #wantsRestart(l: ContainerStatus): boolean {
    const policy = this.#restartPolicy();
    return policy === 'Always' || (policy === 'OnFailure' && l.exitCode !== 0);
  }

  /** Keeps the latest run and the one before it (kubectl logs --previous); removes older ones. */
  async #collectOldRuns(): Promise<void> {
    for (const [name, runs] of this.#runs) {
      const old = runs.slice(0, Math.max(0, runs.length - 2)).filter((r) => r.state === 'CONTAINER_EXITED');
      for (const r of old) await this.#ctx.cri.removeContainer(r.id).catch(() => undefined);
      if (old.length > 0) this.#runs.set(name, runs.slice(-2));
    }
  }

  /** Schedules a sync at `at` (epoch ms), keeping the earliest one asked for. */
  #wakeAt(at: number): void {
    if (this.terminating || (this.#timer && this.#timerAt <= at && this.#timerAt > Date.now())) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.sync();
      },
      Math.max(0, at - Date.now()),
    );
    this.#timer.unref();
  }

  #delay(n: number): number {
    const { backoffMs, maxBackoffMs } = this.#ctx.supervision;
    return Math.min(backoffMs * 2 ** Math.max(0, n - 1), maxBackoffMs);
  }

  /** Starts the next attempt of `c` unless a back-off (crash or pull) says to wait. */
  async #startWhenDue(c: V1Container, init: boolean): Promise<void> {
    const l = this.latest(c.name);
    const now = Date.now();
    if (l) {
      const b = this.#backoff.get(c.name) ?? { crashes: 0 };
      if (b.after !== l.id) {
        const ran = l.startedAt && l.finishedAt ? l.finishedAt.getTime() - l.startedAt.getTime() : 0;
        if (ran >= this.#ctx.supervision.backoffResetMs) b.crashes = 0;
        b.crashes++;
        b.after = l.id;
        // The kubelet restarts a container at once the first time, then waits 10 s, 20 s, ... up to 5 min.
        b.until = b.crashes === 1 ? now : now + this.#delay(b.crashes - 1);
        this.#backoff.set(c.name, b);
      }
      if (b.until! > now) return this.#wakeAt(b.until!);
    }
    const pull = this.#pull.get(c.name);
    if (pull && pull.until > now) {
      const half = pull.at + (pull.until - pull.at) / 2;
      return this.#wakeAt(now < half ? half : pull.until);
    }
    await this.#start(c, l ? l.metadata.attempt + 1 : 0, init);
  }

  async #start(c: V1Container, attempt: number, _init: boolean): Promise<void> {
    const { cri, paths, nodeName } = this.#ctx;
    try {
      await ensureImage(cri, c, this.#pullSecrets, this.record.sandboxConfig);
    } catch (err) {
      if (this.terminating) return;
      const reason = err instanceof ImageError ? err.reason : 'ErrImagePull';
      return this.#waitAfterFailure(c.name, reason, (err as Error).message);
    }
    if (this.terminating) return;
    let config;
    try {
      config = containerConfig(
        this.key,
        this.record.pod,
        c,
        attempt,
        { env: this.record.env },
        nodeName,
        paths,
        this.record.ips,
      );
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      return this.#waitAfterFailure(c.name, 'CreateContainerConfigError', err.message);
    }
    const messageFile = paths.terminationMessage(c.name, attempt);
    mkdirSync(dirname(messageFile), { recursive: true });
    writeFileSync(messageFile, '', { mode: 0o666 });
    config.mounts = (config.mounts ?? []).map((m) => ({
      ...m,
      host_path: this.#mountSource(c, m.host_path),
    }));
    let id: string;
    try {
      id = await cri.createContainer(this.record.sandboxId, config, this.record.sandboxConfig);
    } catch (err) {
      if (this.terminating) return;
      return this.#waitAfterFailure(c.name, 'CreateContainerError', (err as Error).message);
    }
    this.#ctx.step?.('container-created', this.key.uid);
    this.#pull.delete(c.name);
    // A start the runtime refuses leaves the container exited (StartError): the next sync restarts it by policy.
    await cri
      .startContainer(id)
      .catch((err: unknown) =>
        this.#ctx.log.info(
          { pod: this.key.name, container: c.name, err: String(err) },
          'container did not start',
        ),
      );
    this.#ctx.step?.('container-started', this.key.uid);
    this.#again = true;
  }

  /**
   * The host path of a mount: a subPath of a materialised volume resolves through its `..data` link (the file of
   * today's version, as a kubelet mounts it); a subPath of any other volume is created as a directory. A subPath
   * that leaves its volume is refused.
   */
  #mountSource(c: V1Container, hostPath: string): string {
    const m = (c.volumeMounts ?? []).find(
      (vm) => vm.subPath && hostPath === `${this.#ctx.paths.volume(vm.name)}/${vm.subPath}`,
    );
    if (!m) return hostPath;
    const root = this.#ctx.paths.volume(m.name);
    const path = normalize(hostPath);
    if (!path.startsWith(root + '/'))
      throw new ContainerConfigError(`subPath ${m.subPath} leaves volume ${m.name}`);
    const volume = (this.#spec.volumes ?? []).find((v) => v.name === m.name);
    if (volume && isMaterialised(volume)) return existsSync(path) ? realpathSync(path) : path;
    mkdirSync(path, { recursive: true, mode: 0o777 });
    return path;
  }

  #waitAfterFailure(name: string, reason: PullState['reason'], message: string): void {
    const p = this.#pull.get(name);
    const failures = (p?.failures ?? 0) + 1;
    const at = Date.now();
    const until = at + this.#delay(failures);
    this.#pull.set(name, { reason, message, failures, at, until });
    this.#ctx.log.info(
      { pod: this.key.name, container: name, reason, message },
      'container cannot start yet',
    );
    this.#wakeAt(at + (until - at) / 2);
  }

  #specOf(name: string): V1Container | undefined {
    return [...(this.#spec.initContainers ?? []), ...this.#spec.containers].find((c) => c.name === name);
  }

  // --- probes ---------------------------------------------------------------------------------------------

  #ensureProbes(c: V1Container, run: ContainerStatus): void {
    const current = this.#probing.get(c.name);
    if (current?.containerId === run.id) return;
    this.#stopProbes(c.name);
    const probing: Probing = { containerId: run.id, workers: [], started: !c.startupProbe, ready: false };
    probing.ready = probing.started && !c.readinessProbe;
    this.#probing.set(c.name, probing);
    const check: ProbeCheck = (probe, timeoutMs) => this.#probe(c, run.id, probe, timeoutMs);
    const add = (kind: ProbeWorker['kind'], probe: V1Probe | undefined, onResult: (ok: boolean) => void) => {
      if (!probe) return undefined;
      const w = new ProbeWorker(kind, probe, check, onResult);
      probing.workers.push(w);
      return w;
    };
    const readiness = add('readiness', c.readinessProbe, (ok) => {
      probing.ready = ok && probing.started;
      this.#notifyIfChanged();
    });
    const liveness = add('liveness', c.livenessProbe, (ok) => {
      if (!ok) void this.#restartUnhealthy(c, run.id, 'Liveness', c.livenessProbe!);
    });
    const startup = add('startup', c.startupProbe, (ok) => {
      if (!ok) return void this.#restartUnhealthy(c, run.id, 'Startup', c.startupProbe!);
      const was = probing.started;
      probing.started = true;
      probing.ready = !readiness;
      readiness?.start();
      liveness?.start();
      this.#notifyIfChanged();
      // A sidecar past its startupProbe lets the next init container (or the main containers) start.
      if (!was && isSidecar(c)) void this.sync();
    });
    if (startup) startup.start();
    else {
      readiness?.start();
      liveness?.start();
    }
  }

  #stopProbes(name: string): void {
    const p = this.#probing.get(name);
    if (!p) return;
    for (const w of p.workers) w.stop();
    this.#probing.delete(name);
  }

  async #probe(c: V1Container, id: string, probe: V1Probe, timeoutMs: number): Promise<boolean> {
    const ip = this.record.ips[0] ?? '';
    if (probe.exec) {
      const r = await this.#ctx.cri.execSync(id, probe.exec.command ?? [], Math.ceil(timeoutMs / 1000));
      return r.exitCode === 0;
    }
    if (probe.httpGet) return httpCheck(probe, ip, probePort(probe.httpGet.port, c), timeoutMs);
    if (probe.tcpSocket)
      return tcpCheck(probe.tcpSocket.host || ip, probePort(probe.tcpSocket.port, c), timeoutMs);
    return false; // grpc probes are not supported by the local provider
  }

  /** A failed liveness/startup probe: the kubelet's Unhealthy and Killing Events, then stop; it restarts by policy. */
  async #restartUnhealthy(
    c: V1Container,
    id: string,
    kind: 'Liveness' | 'Startup',
    probe: V1Probe,
  ): Promise<void> {
    this.#ctx.event('Warning', 'Unhealthy', `${kind} probe failed: ${describeProbe(probe)}`);
    this.#ctx.event(
      'Normal',
      'Killing',
      `Container ${c.name} failed ${kind.toLowerCase()} probe, will be restarted`,
    );
    this.#stopProbes(c.name);
    const grace = probe.terminationGracePeriodSeconds ?? this.#spec.terminationGracePeriodSeconds ?? 30;
    await this.#ctx.cri.stopContainer(id, grace).catch(() => undefined);
    void this.sync();
  }

  // --- status -----------------------------------------------------------------------------------------------

  #terminationMessage(c: V1Container, run: ContainerStatus): string | undefined {
    try {
      const text = readFileSync(this.#ctx.paths.terminationMessage(c.name, run.metadata.attempt), 'utf8');
      if (text) return text.slice(0, 4096);
    } catch {
      /* none written */
    }
    if (c.terminationMessagePolicy === 'FallbackToLogsOnError' && run.exitCode !== 0) {
      try {
        const log = readFileSync(
          join(this.#ctx.paths.logDirectory, c.name, `${run.metadata.attempt}.log`),
          'utf8',
        );
        // CRI log records: `<time> <stream> <tag> <content>`; the kubelet keeps the last 80 lines, 2 KiB at most.
        const lines = log
          .trimEnd()
          .split('\n')
          .slice(-80)
          .map((l) => l.split(' ').slice(3).join(' '));
        return lines.join('\n').slice(-2048) || undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  #report(c: V1Container, init: boolean, waitingReason: string): ContainerReport {
    const l = this.latest(c.name);
    const prev = this.previous(c.name);
    const pull = this.#pull.get(c.name);
    const probing = this.#probing.get(c.name);
    const terminated = (r: ContainerStatus) => terminatedOf(r, this.#terminationMessage(c, r));
    let state: ContainerState;
    let lastState: ContainerState | undefined = prev ? terminated(prev) : undefined;
    if (pull && (!l || l.state === 'CONTAINER_EXITED')) {
      const reason = pullReason(pull, Date.now());
      state = { kind: 'waiting', reason, message: pull.message };
      if (reason === 'ImagePullBackOff')
        state.message = `Back-off pulling image "${c.image ?? ''}": ${pull.message}`;
      if (l) lastState = terminated(l);
    } else if (!l) {
      state = { kind: 'waiting', reason: waitingReason };
    } else if (l.state === 'CONTAINER_RUNNING') {
      state = { kind: 'running', startedAt: l.startedAt ?? l.createdAt };
    } else {
      const b = this.#backoff.get(c.name);
      const restarting =
        (isSidecar(c)
          ? !this.#mainsDone()
          : init
            ? l.exitCode !== 0 && this.#restartPolicy() !== 'Never'
            : this.#wantsRestart(l)) && !this.#failed;
      if (restarting && b?.after === l.id && (b.until ?? 0) > Date.now()) {
        const seconds = Math.round(((b.until ?? 0) - (l.finishedAt?.getTime() ?? Date.now())) / 1000);
        state = {
          kind: 'waiting',
          reason: 'CrashLoopBackOff',
          message: `back-off ${seconds}s restarting failed container=${c.name} pod=${this.key.name}_${this.key.namespace}(${this.key.uid})`,
        };
        lastState = terminated(l);
      } else {
        state = terminated(l);
      }
    }
    const running = l?.state === 'CONTAINER_RUNNING';
    return {
      name: c.name,
      state,
      ...(lastState ? { lastState } : {}),
      restartCount: l?.metadata.attempt ?? 0,
      ready:
        init && !isSidecar(c)
          ? l?.state === 'CONTAINER_EXITED' && l.exitCode === 0
          : running && Boolean(probing?.ready),
      started: running && Boolean(probing ? probing.started : true),
      image: c.image ?? '',
      imageID: l?.imageRef ?? '',
      ...(l ? { containerID: containerID(l.id) } : {}),
    };
  }

  #phase(containers: ContainerReport[]): SandboxPhase {
    if (this.#failed) return 'Failed';
    if (!this.#initialized()) return 'Pending';
    // Sidecars do not count: a Job-like pod ends with its main containers.
    if (this.#mainsDone()) {
      const runs = this.#spec.containers.map((c) => this.latest(c.name)!);
      return runs.some((r) => r.exitCode !== 0) ? 'Failed' : 'Succeeded';
    }
    // As the kubelet: Pending until some container has run; then Running (also while one restarts).
    return containers.some((c) => c.state.kind !== 'waiting' || c.restartCount > 0 || c.lastState)
      ? 'Running'
      : 'Pending';
  }

  /** The full status report, from the runtime's view at the last sync. */
  status(): SandboxStatus {
    const specInits = this.#spec.initContainers ?? [];
    const initsDone = this.#initialized();
    const initContainers = specInits.map((c) => this.#report(c, true, 'PodInitializing'));
    const containers = this.#spec.containers.map((c) =>
      this.#report(c, false, initsDone ? 'ContainerCreating' : 'PodInitializing'),
    );
    const phase = this.#phase(containers);
    const conditions: ReportedCondition[] = [];
    return {
      key: { ...this.key },
      phase,
      ...(this.#failed ? { reason: this.#failed.reason, message: this.#failed.message } : {}),
      ...(this.record.ips[0] ? { podIP: this.record.ips[0], podIPs: [...this.record.ips] } : {}),
      startTime: new Date(this.record.createdAt),
      initContainers,
      containers,
      ...(conditions.length > 0 ? { conditions } : {}),
    };
  }

  /** Ids of the containers that run now. */
  runningIds(): string[] {
    return [...this.#runs.values()]
      .flat()
      .filter((r) => r.state === 'CONTAINER_RUNNING')
      .map((r) => r.id);
  }

  /** Stops supervising (operator shutdown or delete); no runtime call. */
  detach(): void {
    this.terminating = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const name of [...this.#probing.keys()]) this.#stopProbes(name);
  }

  /** Waits for a sync in flight (delete waits for it before it stops the containers). */
  async settled(): Promise<void> {
    await this.#syncing?.catch(() => undefined);
  }
}

/** What a probe checks, for its Unhealthy Event (`exec [cat /tmp/healthy]`, `HTTP GET :8080/healthz`, `TCP :80`). */
export function describeProbe(probe: V1Probe): string {
  if (probe.exec) return `exec ${JSON.stringify(probe.exec.command ?? [])}`;
  if (probe.httpGet)
    return `HTTP GET ${probe.httpGet.host ?? ''}:${probe.httpGet.port}${probe.httpGet.path ?? '/'}`;
  if (probe.tcpSocket) return `TCP ${probe.tcpSocket.host ?? ''}:${probe.tcpSocket.port}`;
  return 'grpc probes are not supported by the local provider';
}
