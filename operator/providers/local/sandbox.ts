/**
 * One local sandbox, supervised by the operator as a kubelet supervises a pod: init containers in order,
 * then the containers, restarted by restartPolicy with the kubelet's back-off (the first restart at once,
 * then `backoffMs` doubling to `maxBackoffMs`, shown as `CrashLoopBackOff`), probes, the pod phase, and
 * graceful termination. Its processes do not depend on this object: after an operator restart,
 * {@link LocalSandbox.adopt} rebuilds it from the state directory and carries on.
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReportedCondition, SandboxKey, SandboxPhase, SandboxStatus } from '../types.ts';
import { LocalContainer, type RunExit, type RunStep } from './container.ts';
import type { SandboxPlan } from './plan.ts';
import { httpCheck, probePort, ProbeWorker, tcpCheck, type ProbeCheck } from './probes.ts';
import { spawnInSandbox, type SandboxProcesses } from './runtime.ts';
import type { ContainerCgroup } from './cgroups.ts';

/** Timings and limits of supervision; defaults follow the kubelet's. */
export interface SupervisionOptions {
  /** Delay of the second restart, doubling after (kubelet: 10 s). */
  backoffMs: number;
  /** Longest restart delay (kubelet: 5 min). */
  maxBackoffMs: number;
  /** A run that lasted this long resets the back-off (kubelet: 10 min). */
  backoffResetMs: number;
  /** A log file is rotated past this size. */
  logMaxBytes: number;
  /** Told after each step of a container's start (tests crash the operator there). */
  step?: (name: RunStep, uid: string) => void;
}

/** What a sandbox persists in `sandbox.json`. */
export interface SandboxRecord {
  key: SandboxKey;
  createdAt: string;
  startTime: string;
  pod: V1Pod;
  plan: SandboxPlan;
  ip: string;
  processes: SandboxProcesses;
  conditions: ReportedCondition[];
}

/** A pod's sandbox and its supervision loop. */
export class LocalSandbox {
  readonly record: SandboxRecord;
  readonly dir: string;
  readonly initContainers: LocalContainer[];
  readonly containers: LocalContainer[];
  phase: SandboxPhase = 'Pending';
  reason: string | undefined;
  message: string | undefined;
  terminating = false;
  readonly #options: SupervisionOptions;
  readonly #changed: () => void;
  readonly #event: (type: 'Normal' | 'Warning', reason: string, message: string) => void;
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(
    record: SandboxRecord,
    dir: string,
    options: SupervisionOptions,
    cgroupFor: (container: string) => ContainerCgroup,
    changed: () => void,
    event: (type: 'Normal' | 'Warning', reason: string, message: string) => void = () => {},
  ) {
    this.record = record;
    this.dir = dir;
    this.#options = options;
    this.#changed = changed;
    this.#event = event;
    this.initContainers = record.plan.initContainers.map(
      (p) => new LocalContainer(p, dir, cgroupFor(p.name), true),
    );
    this.containers = record.plan.containers.map((p) => new LocalContainer(p, dir, cgroupFor(p.name), false));
  }

  get key(): SandboxKey {
    return this.record.key;
  }

  /** Looks up a container (init or regular) by name. */
  container(name: string): LocalContainer | undefined {
    return (
      this.containers.find((c) => c.plan.name === name) ??
      this.initContainers.find((c) => c.plan.name === name)
    );
  }

  /**
   * Restores the containers' states from disk and finds their running shims (after an operator restart), then
   * starts supervising.
   */
  async adopt(): Promise<void> {
    await Promise.all(
      [...this.initContainers, ...this.containers].map((c) => c.load(this.record.processes.init)),
    );
    this.start();
  }

  /** Starts supervising. */
  start(): void {
    this.#loop = this.#run().catch((err: unknown) => {
      if (this.terminating) return;
      this.phase = 'Failed';
      this.reason = 'SandboxFailed';
      this.message = String((err as Error).message ?? err);
      this.#changed();
    });
  }

  /** The full status report. */
  status(): SandboxStatus {
    return {
      key: { ...this.key },
      phase: this.phase,
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.message ? { message: this.message } : {}),
      podIP: this.record.ip,
      podIPs: [this.record.ip],
      startTime: new Date(this.record.startTime),
      initContainers: this.initContainers.map((c) => c.report()),
      containers: this.containers.map((c) => c.report()),
      conditions: this.record.conditions,
    };
  }

  async #run(): Promise<void> {
    for (const c of this.initContainers) {
      for (;;) {
        if (this.terminating) return;
        if (c.state.kind === 'terminated' && c.state.exitCode === 0 && c.run > 0) break;
        const exit = await this.#runOnce(c);
        if (this.terminating) return;
        if (exit.code === 0) break;
        if (this.record.plan.restartPolicy === 'Never') {
          this.#finish(
            'Failed',
            'InitContainerFailed',
            `init container "${c.plan.name}" exited with ${exit.code}`,
          );
          for (const m of this.containers) m.state = { kind: 'waiting', reason: 'PodInitializing' };
          this.#changed();
          return;
        }
        await this.#backoff(c);
      }
    }
    if (this.terminating) return;
    this.phase = 'Running';
    this.#changed();
    await Promise.all(this.containers.map((c) => this.#supervise(c)));
  }

  /** Runs `c` once (or waits for the run an earlier operator started) and records how it ended. */
  async #runOnce(c: LocalContainer): Promise<RunExit> {
    if (!c.running) {
      if (c.run > 0) c.lastState = c.state;
      if (c.run > 0) c.restartCount++;
      await c.startRun(this.record.processes.init, this.#options.logMaxBytes, (step) =>
        this.#options.step?.(step, this.key.uid),
      );
      c.save();
    }
    c.started = !c.plan.startupProbe;
    c.ready = !c.init && !c.plan.readinessProbe && c.started;
    this.#changed();
    if (!c.init) this.#startProbes(c);
    const exit = await c.waitExit(this.#abort.signal);
    for (const p of c.probes) p.stop();
    c.probes = [];
    if (this.terminating) return exit;
    c.exited(exit);
    c.started = false;
    c.save();
    this.#changed();
    return exit;
  }

  async #supervise(c: LocalContainer): Promise<void> {
    for (;;) {
      if (this.terminating) return;
      let exit: RunExit | undefined;
      if (c.running || c.run === 0) exit = await this.#runOnce(c);
      if (this.terminating) return;
      const code = exit?.code ?? (c.state.kind === 'terminated' ? c.state.exitCode : 0);
      const policy = this.record.plan.restartPolicy;
      if (policy === 'Never' || (policy === 'OnFailure' && code === 0)) {
        this.#maybeComplete();
        return;
      }
      await this.#backoff(c);
      if (this.terminating) return;
      exit = await this.#runOnce(c);
    }
  }

  /** Waits before a restart: at once the first time, then doubling (kubelet's CrashLoopBackOff). */
  async #backoff(c: LocalContainer): Promise<void> {
    const ranMs =
      c.state.kind === 'terminated' && c.state.startedAt
        ? c.state.finishedAt.getTime() - c.state.startedAt.getTime()
        : 0;
    if (ranMs >= this.#options.backoffResetMs) c.crashes = 0;
    c.crashes++;
    c.save();
    if (c.crashes === 1) return;
    const delay = Math.min(this.#options.backoffMs * 2 ** (c.crashes - 2), this.#options.maxBackoffMs);
    const terminated = c.state;
    c.lastState = terminated;
    c.state = {
      kind: 'waiting',
      reason: 'CrashLoopBackOff',
      message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.plan.name} pod=${this.key.name}_${this.key.namespace}(${this.key.uid})`,
    };
    this.#changed();
    await sleep(delay, undefined, { signal: this.#abort.signal }).catch(() => undefined);
    c.state = terminated; // #runOnce moves it to lastState as the new run starts
  }

  /** With restartPolicy Never/OnFailure: the pod ends when every container has ended for good. */
  #maybeComplete(): void {
    const policy = this.record.plan.restartPolicy;
    const done = this.containers.every((c) => {
      if (c.state.kind !== 'terminated') return false;
      return policy === 'Never' || c.state.exitCode === 0;
    });
    if (!done) return;
    const failed = this.containers.some((c) => c.state.kind === 'terminated' && c.state.exitCode !== 0);
    this.#finish(failed ? 'Failed' : 'Succeeded');
  }

  #finish(phase: SandboxPhase, reason?: string, message?: string): void {
    this.phase = phase;
    this.reason = reason;
    this.message = message;
    this.#changed();
  }

  #startProbes(c: LocalContainer): void {
    const check: ProbeCheck = (probe, timeoutMs) => this.#probe(c, probe, timeoutMs);
    const add = (kind: ProbeWorker['kind'], probe: V1Probe | undefined, onResult: (ok: boolean) => void) => {
      if (!probe) return undefined;
      const w = new ProbeWorker(kind, probe, check, onResult);
      c.probes.push(w);
      return w;
    };
    const readiness = add('readiness', c.plan.readinessProbe, (ok) => {
      c.ready = ok && c.started;
      this.#changed();
    });
    const liveness = add('liveness', c.plan.livenessProbe, (ok) => {
      if (!ok) void this.#restartUnhealthy(c, 'Liveness', c.plan.livenessProbe!);
    });
    const startup = add('startup', c.plan.startupProbe, (ok) => {
      if (!ok) return void this.#restartUnhealthy(c, 'Startup', c.plan.startupProbe!);
      c.started = true;
      c.ready = !readiness;
      readiness?.start();
      liveness?.start();
      this.#changed();
    });
    if (startup) startup.start();
    else {
      readiness?.start();
      liveness?.start();
    }
  }

  /**
   * A failed liveness/startup probe: the kubelet's Unhealthy and Killing Events, then stop the container (grace
   * from the probe or the pod); it restarts by policy.
   */
  async #restartUnhealthy(c: LocalContainer, kind: 'Liveness' | 'Startup', probe: V1Probe): Promise<void> {
    this.#event('Warning', 'Unhealthy', `${kind} probe failed: ${describeProbe(probe)}`);
    this.#event(
      'Normal',
      'Killing',
      `Container ${c.plan.name} failed ${kind.toLowerCase()} probe, will be restarted`,
    );
    const grace = probe.terminationGracePeriodSeconds ?? this.record.plan.terminationGracePeriodSeconds;
    await c.stop(grace * 1000);
  }

  async #probe(c: LocalContainer, probe: V1Probe, timeoutMs: number): Promise<boolean> {
    const spec = this.#spec(c.plan.name) ?? {};
    if (probe.exec) {
      const child = spawnInSandbox({
        init: this.record.processes.init,
        argv: probe.exec.command ?? [],
        env: c.plan.env,
        workingDir: c.plan.workingDir,
      });
      child.stdout?.resume();
      child.stderr?.resume();
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      clearTimeout(timer);
      return code === 0;
    }
    if (probe.httpGet)
      return httpCheck(probe, this.record.ip, probePort(probe.httpGet.port, spec), timeoutMs);
    if (probe.tcpSocket) {
      return tcpCheck(
        probe.tcpSocket.host || this.record.ip,
        probePort(probe.tcpSocket.port, spec),
        timeoutMs,
      );
    }
    return false; // grpc probes are not supported by the local provider
  }

  #spec(name: string): Partial<V1Container> | undefined {
    return this.record.pod.spec?.containers.find((c) => c.name === name);
  }

  /**
   * Graceful stop: SIGTERM to every running container, SIGKILL to what remains after `graceSeconds`; resolves
   * when no container process is left (the caller then kills the sandbox's PID 1).
   */
  async terminate(graceSeconds: number): Promise<void> {
    this.terminating = true;
    this.#abort.abort();
    for (const c of [...this.initContainers, ...this.containers]) for (const p of c.probes) p.stop();
    await Promise.all([...this.initContainers, ...this.containers].map((c) => c.stop(graceSeconds * 1000)));
    await this.#loop;
  }

  /** Stops supervising (operator shutdown) without touching any process: a new provider adopts the sandbox. */
  detach(): void {
    this.terminating = true;
    this.#abort.abort();
    for (const c of [...this.initContainers, ...this.containers]) for (const p of c.probes) p.stop();
  }

  /** The ID of the sandbox for providerID: its directory name (the pod UID). */
  get id(): string {
    return basename(this.dir);
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
