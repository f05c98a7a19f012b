/**
 * One container of a local sandbox, as the operator sees it: its runs (`containers/<name>/<run>/`, the
 * current and the previous one kept for `kubectl logs --previous`), its state, restart count and readiness,
 * persisted in `containers/<name>/state.json` so that a restarted operator picks it up where it was.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerReport, ContainerState } from '../types.ts';
import type { ContainerCgroup } from './cgroups.ts';
import type { PlannedContainer } from './plan.ts';
import type { ProbeWorker } from './probes.ts';
import {
  awaitRun,
  findRun,
  isAlive,
  SANDBOX_STATE_MOUNT,
  signalProcess,
  startContainerRun,
  type ProcessRef,
  type StartedRun,
} from './runtime.ts';

/** What `state.json` holds. */
interface Persisted {
  run: number;
  restartCount: number;
  lastState?: ContainerState;
  /** Consecutive restarts for the back-off; reset after a long enough run. */
  crashes: number;
}

/** The steps of {@link LocalContainer.startRun}, each reported once done. */
export type RunStep = 'run-prepared' | 'shim-started';

/** How a run ended. */
export interface RunExit {
  code: number;
  finishedAt: Date;
  /** The shim vanished without writing its exit (the sandbox was killed). */
  lost?: boolean;
}

function epoch(text: string): Date {
  return new Date(Math.round(Number(text) * 1000));
}

/** The terminated state of a run that exited with `code` (above 128: killed by signal code-128). */
export function terminatedState(
  code: number,
  startedAt: Date | undefined,
  finishedAt: Date,
  oom: boolean,
  message?: string,
): ContainerState {
  const signal = code > 128 && code < 128 + 65 ? code - 128 : undefined;
  return {
    kind: 'terminated',
    exitCode: code,
    ...(signal ? { signal } : {}),
    reason: oom ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error',
    ...(message ? { message } : {}),
    ...(startedAt ? { startedAt } : {}),
    finishedAt,
  };
}

/** One container: its plan, state and runs. */
export class LocalContainer {
  readonly plan: PlannedContainer;
  readonly dir: string;
  readonly cgroup: ContainerCgroup;
  readonly init: boolean;
  run = 0;
  restartCount = 0;
  crashes = 0;
  state: ContainerState;
  lastState: ContainerState | undefined;
  ready = false;
  started = false;
  shim: ProcessRef | undefined;
  #child: StartedRun['child'];
  probes: ProbeWorker[] = [];

  constructor(plan: PlannedContainer, sandboxDir: string, cgroup: ContainerCgroup, init: boolean) {
    this.plan = plan;
    this.dir = join(sandboxDir, 'containers', plan.name);
    this.cgroup = cgroup;
    this.init = init;
    this.state = { kind: 'waiting', reason: init ? 'PodInitializing' : 'ContainerCreating' };
  }

  /** The directory of run `n` (default: the current one). */
  runDir(n = this.run): string {
    return join(this.dir, String(n));
  }

  get running(): boolean {
    return this.state.kind === 'running';
  }

  /** Writes what a restarted operator needs. */
  save(): void {
    const p: Persisted = {
      run: this.run,
      restartCount: this.restartCount,
      crashes: this.crashes,
      ...(this.lastState ? { lastState: this.lastState } : {}),
    };
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, 'state.json'), JSON.stringify(p));
  }

  /**
   * Restores the container after an operator restart, from `state.json` and its current run's files. A run
   * without an exit is looked for by its identity (see {@link findRun}), so a shim whose `shim.ref` was never
   * written is adopted, not started a second time; a run whose shim never started is rolled back, so that
   * starting it now is not counted as a restart.
   */
  async load(sandboxInit: ProcessRef): Promise<void> {
    let p: Persisted;
    try {
      p = JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8')) as Persisted;
    } catch {
      return; // never started
    }
    this.run = p.run;
    this.restartCount = p.restartCount;
    this.crashes = p.crashes;
    this.lastState = p.lastState ? revive(p.lastState) : undefined;
    if (this.run === 0 || this.#loadExit()) return;
    const shim = await this.#findShim(sandboxInit);
    if (shim) {
      this.shim = shim;
      writeFileSync(join(this.runDir(), 'shim.ref'), JSON.stringify(shim));
      this.state = { kind: 'running', startedAt: this.#startedAt() ?? new Date() };
      return;
    }
    if (this.#loadExit()) return; // it ended while we looked
    if (!this.#startedAt() && !existsSync(join(this.runDir(), 'shim.pid'))) {
      this.#rollBack();
      return;
    }
    this.state = terminatedState(
      137,
      this.#startedAt(),
      new Date(),
      false,
      'the container stopped while the operator was away',
    );
  }

  /** The state of the current run from its `exit` file; false when it has none. */
  #loadExit(): boolean {
    const exit = this.#readExit();
    if (!exit) return false;
    this.state = terminatedState(exit.code, this.#startedAt(), exit.finishedAt, this.cgroup.oomKilled());
    return true;
  }

  /** The current run's live shim: by its `shim.ref`, else searched by identity (waiting out a starting one). */
  async #findShim(sandboxInit: ProcessRef): Promise<ProcessRef | undefined> {
    let ref: ProcessRef | undefined;
    try {
      ref = JSON.parse(readFileSync(join(this.runDir(), 'shim.ref'), 'utf8')) as ProcessRef;
    } catch {
      ref = undefined;
    }
    if (isAlive(ref)) return ref;
    const found = findRun(sandboxInit, this.#runDirInSandbox(), this.#shimPid());
    if (!found) return undefined;
    return 'shim' in found
      ? found.shim
      : awaitRun(sandboxInit, this.#runDirInSandbox(), () => this.#shimPid());
  }

  /** The shim's pid inside the sandbox, as it wrote it first thing (`shim.pid`); undefined before. */
  #shimPid(): number | undefined {
    try {
      const text = readFileSync(join(this.runDir(), 'shim.pid'), 'utf8').trim();
      return /^\d+$/.test(text) ? Number(text) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Forgets a run that the operator prepared but died before starting (no process, nothing written by a
   * shim): the counters go back to what they were before it, and the previous run's end is the state.
   */
  #rollBack(): void {
    rmSync(this.runDir(), { recursive: true, force: true });
    this.run--;
    if (this.run > 0) {
      this.restartCount = Math.max(0, this.restartCount - 1);
      this.crashes = Math.max(0, this.crashes - 1);
      if (!this.#loadExit()) {
        this.state = terminatedState(137, this.#startedAt(), new Date(), false, 'the container stopped');
      }
    }
    this.save();
  }

  #runDirInSandbox(): string {
    return `${SANDBOX_STATE_MOUNT}/${this.plan.name}/${this.run}`;
  }

  #startedAt(n = this.run): Date | undefined {
    try {
      return epoch(readFileSync(join(this.runDir(n), 'started'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  #readExit(): RunExit | undefined {
    try {
      const [code, at] = readFileSync(join(this.runDir(), 'exit'), 'utf8').trim().split(' ');
      return { code: Number(code), finishedAt: epoch(at ?? '0') };
    } catch {
      return undefined;
    }
  }

  /**
   * Starts the next run inside the sandbox whose PID 1 is `init`. The run's number is saved before its shim
   * starts, so a restarted operator knows which run to look for (see {@link LocalContainer.load}).
   * `step` is told after each step (tests crash the operator there).
   */
  async startRun(
    sandboxInit: ProcessRef,
    logMaxBytes: number,
    step: (name: RunStep) => void = () => undefined,
  ): Promise<void> {
    this.run++;
    const dir = this.runDir();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'env'), this.plan.env.map((e) => `${e.name}=${e.value}\0`).join(''));
    const cgroups = this.cgroup.procsFiles();
    if (cgroups.length > 0) writeFileSync(join(dir, 'cgroups'), cgroups.join('\n') + '\n');
    this.save();
    // Only the current and the previous run are kept (kubectl logs and logs --previous).
    for (const name of readdirSync(this.dir)) {
      if (/^\d+$/.test(name) && Number(name) < this.run - 1)
        rmSync(join(this.dir, name), { recursive: true, force: true });
    }
    step('run-prepared');
    const started = await startContainerRun(
      sandboxInit,
      dir,
      this.#runDirInSandbox(),
      this.plan.workingDir,
      this.plan.argv,
      logMaxBytes,
    );
    step('shim-started');
    this.shim = started.shim;
    this.#child = started.child;
    writeFileSync(join(dir, 'shim.ref'), JSON.stringify(started.shim));
    this.state = { kind: 'running', startedAt: this.#startedAt() ?? new Date() };
  }

  /** Resolves when the current run has exited (or was lost with its sandbox). */
  async waitExit(signal?: AbortSignal): Promise<RunExit> {
    const child = this.#child;
    const exited = child && child.exitCode === null ? new Promise((r) => child.once('exit', r)) : undefined;
    for (;;) {
      const exit = this.#readExit();
      if (exit) return exit;
      if (!isAlive(this.shim)) {
        // The shim writes `exit` just before it ends: look once more before calling the run lost.
        return this.#readExit() ?? { code: 137, finishedAt: new Date(), lost: true };
      }
      if (signal?.aborted) return { code: 137, finishedAt: new Date(), lost: true };
      await Promise.race([sleep(250), ...(exited ? [exited] : [])]);
    }
  }

  /** Records the end of the current run. */
  exited(exit: RunExit): void {
    const lost = exit.lost ? 'the container was stopped with its sandbox' : undefined;
    this.state = terminatedState(
      exit.code,
      this.#startedAt(),
      exit.finishedAt,
      this.cgroup.oomKilled(),
      lost,
    );
    this.ready = false;
    this.shim = undefined;
    this.#child = undefined;
  }

  /** SIGTERM to the container's process group; SIGKILL after `graceMs` unless it exited. */
  async stop(graceMs: number): Promise<void> {
    if (!isAlive(this.shim)) return;
    signalProcess(this.shim, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (isAlive(this.shim) && !existsSync(join(this.runDir(), 'exit'))) {
      if (Date.now() >= deadline) {
        signalProcess(this.shim, 'SIGUSR1'); // the shim turns it into SIGKILL for the process group
        break;
      }
      await sleep(50);
    }
  }

  /** The report of this container. */
  report(): ContainerReport {
    return {
      name: this.plan.name,
      state: this.state,
      ...(this.lastState ? { lastState: this.lastState } : {}),
      restartCount: this.restartCount,
      ready: this.ready,
      started: this.started,
      image: this.plan.image,
      imageID: '',
      ...(this.run > 0
        ? { containerID: `local://${basename(join(this.dir, '../..'))}-${this.plan.name}-${this.run}` }
        : {}),
    };
  }
}

/** Dates come back from JSON as strings. */
function revive(s: ContainerState): ContainerState {
  const d = (v: unknown) => (v === undefined ? undefined : new Date(v as string));
  if (s.kind === 'running') return { kind: 'running', startedAt: d(s.startedAt)! };
  if (s.kind === 'terminated') {
    return { ...s, finishedAt: d(s.finishedAt)!, ...(s.startedAt ? { startedAt: d(s.startedAt)! } : {}) };
  }
  return s;
}
