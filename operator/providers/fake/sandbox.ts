/**
 * One fake sandbox: a pod's containers as a small state machine (waiting → running → terminated, with
 * restarts per `restartPolicy`) that produces the {@link SandboxStatus} and {@link PodStats} a real
 * provider would report. No timers live here: the provider's timeline calls `start` and `exit`.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type {
  ContainerReport,
  ContainerState,
  ExecResult,
  ExecStreams,
  PodStats,
  ResolvedPodInputs,
  SandboxKey,
  SandboxPhase,
  SandboxStatus,
} from '../types.ts';
import { ContainerLog } from './logs.ts';

/** What a test scripts for a container: output, an exit, an exec override, its resource usage. */
export interface ContainerScript {
  /** Lines the container writes when it starts. */
  logs?: string[];
  /** Make the container exit with this code `exitAfterMs` after it starts (once; a restart runs on). */
  exitCode?: number;
  /** Delay of the scripted exit after start (default 0: it exits as it starts). */
  exitAfterMs?: number;
  /** Runs instead of the builtin commands for `exec`. */
  exec?: (command: string[], streams: ExecStreams) => Promise<ExecResult>;
  /** Usage reported by `stats` (defaults: 1 millicore, 16 MiB). */
  usage?: { cpuNanoCores?: number; memoryBytes?: number };
}

/** One container of a fake sandbox; fields are read by the provider, changed only through the sandbox. */
export class FakeContainer {
  readonly name: string;
  readonly image: string;
  readonly script: ContainerScript;
  state: ContainerState = { kind: 'waiting', reason: 'ContainerCreating' };
  lastState: ContainerState | undefined;
  restartCount = 0;
  log = new ContainerLog();
  previousLog: ContainerLog | undefined;

  constructor(spec: V1Container, script: ContainerScript) {
    this.name = spec.name;
    this.image = spec.image ?? '';
    this.script = script;
  }

  get running(): boolean {
    return this.state.kind === 'running';
  }
}

/** A pod's fake instance. */
export class FakeSandbox {
  readonly key: SandboxKey;
  readonly pod: V1Pod;
  readonly inputs: ResolvedPodInputs;
  readonly createdAt: Date;
  readonly providerID: string;
  readonly podIP: string;
  readonly initContainers: FakeContainer[];
  readonly containers: FakeContainer[];
  /** Cancels the timeline events of this sandbox (start, scripted exits) when it is deleted. */
  readonly cancels: (() => void)[] = [];
  phase: SandboxPhase = 'Pending';
  startTime: Date | undefined;
  reason: string | undefined;

  constructor(
    key: SandboxKey,
    pod: V1Pod,
    inputs: ResolvedPodInputs,
    podIP: string,
    scriptFor: (container: string) => ContainerScript,
  ) {
    this.key = key;
    this.pod = pod;
    this.inputs = inputs;
    this.podIP = podIP;
    this.createdAt = new Date();
    this.providerID = `fake-${key.uid}`;
    this.initContainers = (pod.spec?.initContainers ?? []).map(
      (c) => new FakeContainer(c, scriptFor(c.name)),
    );
    this.containers = (pod.spec?.containers ?? []).map((c) => new FakeContainer(c, scriptFor(c.name)));
  }

  /** Looks a container (init or regular) up by name. */
  container(name: string): FakeContainer | undefined {
    return this.containers.find((c) => c.name === name) ?? this.initContainers.find((c) => c.name === name);
  }

  /**
   * Starts the sandbox: init containers run to completion at once (with their scripted exit code), then
   * the containers start. @returns the containers whose scripted exit is still to come, with its delay
   */
  start(now: Date = new Date()): { container: FakeContainer; afterMs: number }[] {
    this.startTime = now;
    for (const init of this.initContainers) {
      this.#run(init, now);
      const code = init.script.exitCode ?? 0;
      this.#terminate(init, code, now);
      if (code !== 0) {
        // The fake does not retry init containers: the pod fails, as with restartPolicy Never.
        for (const c of this.containers) c.state = { kind: 'waiting', reason: 'PodInitializing' };
        this.phase = 'Failed';
        this.reason = 'InitContainerFailed';
        return [];
      }
    }
    this.phase = 'Running';
    const pending: { container: FakeContainer; afterMs: number }[] = [];
    for (const c of this.containers) {
      this.#run(c, now);
      if (c.script.exitCode !== undefined) pending.push({ container: c, afterMs: c.script.exitAfterMs ?? 0 });
    }
    return pending;
  }

  /**
   * The container's process exited: restart it or leave it terminated per `restartPolicy` (restarts
   * are immediate: the fake has no CrashLoopBackOff), then recompute the phase.
   */
  exit(container: FakeContainer, exitCode: number, now: Date = new Date(), reason?: string): void {
    if (!container.running) return;
    this.#terminate(container, exitCode, now, reason);
    const policy = this.pod.spec?.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      container.lastState = container.state;
      container.restartCount++;
      container.previousLog = container.log;
      container.log = new ContainerLog();
      this.#run(container, now, false);
    }
    this.#updatePhase();
  }

  /** Stops everything (delete): followers of the logs see their end. */
  stop(): void {
    for (const c of [...this.initContainers, ...this.containers]) c.log.close();
  }

  /** The status as the provider reports it; a fresh copy each time. */
  status(): SandboxStatus {
    const report = (c: FakeContainer): ContainerReport => ({
      name: c.name,
      state: { ...c.state },
      ...(c.lastState && { lastState: { ...c.lastState } }),
      restartCount: c.restartCount,
      ready: c.running,
      started: c.running,
      image: c.image,
      imageID: `fake://${c.image}`,
      ...(c.state.kind !== 'waiting' && {
        containerID: `fake://${this.key.uid}/${c.name}/${c.restartCount}`,
      }),
    });
    const hasIP = this.phase !== 'Pending';
    return {
      key: { ...this.key },
      phase: this.phase,
      ...(this.reason && { reason: this.reason }),
      ...(hasIP && { podIP: this.podIP, podIPs: [this.podIP] }),
      ...(this.startTime && { startTime: this.startTime }),
      initContainers: this.initContainers.map(report),
      containers: this.containers.map(report),
    };
  }

  /** Usage now, from the scripted (or default) rates; cumulative CPU grows with the time running. */
  stats(now: Date = new Date()): PodStats {
    const containers = this.containers
      .filter((c) => c.state.kind === 'running')
      .map((c) => {
        const startedAt = (c.state as { startedAt: Date }).startedAt;
        const nanoCores = c.script.usage?.cpuNanoCores ?? 1_000_000;
        const memory = c.script.usage?.memoryBytes ?? 16 * 1024 * 1024;
        const seconds = Math.max(0, now.getTime() - startedAt.getTime()) / 1000;
        return {
          name: c.name,
          startTime: startedAt,
          cpu: { usageNanoCores: nanoCores, usageCoreNanoSeconds: Math.round(nanoCores * seconds) },
          memory: { workingSetBytes: memory, usageBytes: memory, rssBytes: memory },
        };
      });
    const sum = (f: (c: (typeof containers)[number]) => number) => containers.reduce((n, c) => n + f(c), 0);
    return {
      key: { ...this.key },
      time: now,
      startTime: this.startTime ?? this.createdAt,
      cpu: {
        usageNanoCores: sum((c) => c.cpu.usageNanoCores),
        usageCoreNanoSeconds: sum((c) => c.cpu.usageCoreNanoSeconds),
      },
      memory: {
        workingSetBytes: sum((c) => c.memory.workingSetBytes),
        usageBytes: sum((c) => c.memory.usageBytes),
      },
      network: { rxBytes: 0, txBytes: 0 },
      containers,
    };
  }

  #run(c: FakeContainer, now: Date, withScriptedLogs = true): void {
    c.state = { kind: 'running', startedAt: now };
    if (withScriptedLogs) for (const line of c.script.logs ?? []) c.log.append(line, now);
  }

  #terminate(c: FakeContainer, exitCode: number, now: Date, reason?: string): void {
    const startedAt = c.state.kind === 'running' ? c.state.startedAt : undefined;
    c.state = {
      kind: 'terminated',
      exitCode,
      reason: reason ?? (exitCode === 0 ? 'Completed' : 'Error'),
      ...(startedAt && { startedAt }),
      finishedAt: now,
    };
    c.log.close();
  }

  #updatePhase(): void {
    const states = this.containers.map((c) => c.state);
    if (states.some((s) => s.kind !== 'terminated')) return;
    this.phase = states.every((s) => s.kind === 'terminated' && s.exitCode === 0) ? 'Succeeded' : 'Failed';
  }
}
