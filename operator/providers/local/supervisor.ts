/**
 * A process supervisor: runs one command and restarts it whenever it exits, with a doubling back-off (as a kubelet
 * restarts a container), logging each exit with the last lines of the process's log. The local provider runs
 * kube-proxy under it (kube-proxy.ts); nothing in it is specific to kube-proxy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../shared/log.ts';

/** What the supervisor writes to: a pino logger, or anything with the same two methods. */
export type SupervisorLogger = Pick<Logger, 'info' | 'warn'>;

/** The restart back-off of a {@link Supervisor}. */
export interface BackoffPolicy {
  /** The first delay before a restart. */
  initialMs: number;
  /** The longest delay: doubling stops here. */
  maxMs: number;
  /** A run at least this long resets the delay to `initialMs`: it was an event, not a crash loop. */
  resetAfterMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, resetAfterMs: 60_000 };

/** Time as the supervisor sees it; a fake in unit tests. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    sleep(ms, undefined, { signal }).then(
      () => undefined,
      () => undefined,
    ),
};

/** How one run of a supervised process ended. */
export interface SupervisedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  error?: string;
  ranMs: number;
  /** The delay before the next start. */
  restartInMs: number;
  /** The last lines of its log. */
  logTail: string[];
}

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /** What the logs call it. */
  name: string;
  command: string;
  args: string[];
  /** Its stdout and stderr, appended by every run. */
  logFile: string;
  /** Where the current pid is written (removed once stopped), for a teardown after a crash. */
  pidFile?: string;
  logger?: SupervisorLogger;
  backoff?: Partial<BackoffPolicy>;
  clock?: Clock;
  onStart?: (pid: number | undefined) => void;
  onExit?: (exit: SupervisedExit) => void;
}

/** The last `n` lines of `file` (from its last 16 KiB). */
export function tailLines(file: string, n: number): string[] {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const length = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString('utf8').split('\n').filter(Boolean).slice(-n);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Runs a process and restarts it whenever it exits, with a back-off (as a kubelet restarts a container): each exit
 * is logged with the last lines of its log; a run of `resetAfterMs` resets the delay. {@link stop} ends both the
 * process and the restarting. The process leads its own process group, so that a terminal's Ctrl-C reaches the
 * operator only, which then stops it in order.
 */
export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #backoff: BackoffPolicy;
  readonly #clock: Clock;
  readonly #abort = new AbortController();
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #loop: Promise<void> | undefined;
  #starts = 0;
  #stopped = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#backoff = { ...defaultBackoff, ...opts.backoff };
    this.#clock = opts.clock ?? realClock;
  }

  /** The current process's pid; undefined between runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How many times the process was started (the first start included). */
  get starts(): number {
    return this.#starts;
  }

  /** Starts the first run; the loop then restarts it until {@link stop}. */
  start(): void {
    if (this.#loop) throw new Error(`${this.#opts.name} is already supervised`);
    this.#loop = this.#supervise();
  }

  async #supervise(): Promise<void> {
    let delay = this.#backoff.initialMs;
    while (!this.#stopped) {
      const startedAt = this.#clock.now();
      const ended = await this.#runOnce();
      if (this.#stopped) return;
      const ranMs = this.#clock.now() - startedAt;
      if (ranMs >= this.#backoff.resetAfterMs) delay = this.#backoff.initialMs;
      const exit: SupervisedExit = {
        ...ended,
        ranMs,
        restartInMs: delay,
        logTail: tailLines(this.#opts.logFile, 10),
      };
      const how = exit.error ?? (exit.signal ? `on ${exit.signal}` : `with code ${exit.code}`);
      this.#opts.logger?.warn(
        { ...exit, logFile: this.#opts.logFile },
        `${this.#opts.name} exited ${how} after ${Math.round(ranMs / 1000)} s; restarting in ${delay / 1000} s`,
      );
      this.#opts.onExit?.(exit);
      await this.#clock.sleep(delay, this.#abort.signal);
      delay = Math.min(delay * 2, this.#backoff.maxMs);
    }
  }

  /** One run: spawns the process and resolves when it has exited (or could not start). */
  #runOnce(): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }> {
    const out = openSync(this.#opts.logFile, 'a');
    const child = spawn(this.#opts.command, this.#opts.args, { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    this.#child = child;
    this.#starts++;
    if (child.pid !== undefined && this.#opts.pidFile) writeFileSync(this.#opts.pidFile, String(child.pid));
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }>(
      (resolve) => {
        child.once('error', (err) =>
          resolve({ code: null, signal: null, error: `could not run ${this.#opts.command}: ${err.message}` }),
        );
        child.once('exit', (code, signal) => resolve({ code, signal }));
      },
    ).then((result) => {
      this.#child = undefined;
      return result;
    });
    this.#exited = ended.then(() => undefined);
    this.#opts.onStart?.(child.pid);
    return ended;
  }

  /** Stops restarting, then stops the process: SIGTERM to its group, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    const pid = this.#child?.pid;
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (pid !== undefined) process.kill(-pid, sig);
      } catch {
        /* already gone */
      }
    };
    signal('SIGTERM');
    const kill = setTimeout(() => signal('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(kill);
    await this.#loop;
    if (this.#opts.pidFile) rmSync(this.#opts.pidFile, { force: true });
  }
}
