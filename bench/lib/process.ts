/**
 * Child processes for the benchmarks: the system under test always runs in a process of its own, so that its
 * memory (RSS) and CPU time can be read from /proc without the benchmark's own load in the numbers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs } from './stats.ts';

const CLOCK_TICKS = 100; // USER_HZ on Linux (sysconf(_SC_CLK_TCK)), the unit of utime/stime in /proc/<pid>/stat
const PAGE = 4096;

/** One reading of a process's resource use. */
export interface ProcReading {
  atMs: number;
  /** Resident set size, MiB. */
  rssMiB: number;
  /** User + system CPU time since the process started, seconds. */
  cpuSeconds: number;
}

/** Reads /proc/<pid>; undefined once the process is gone. */
export function readProc(pid: number): ProcReading | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is index 0, utime is field 14 of stat (index 11 here), stime 15, rss 24.
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    const rssMiB = (Number(fields[21]) * PAGE) / (1024 * 1024);
    return { atMs: nowMs(), rssMiB: Number(rssMiB.toFixed(1)), cpuSeconds };
  } catch {
    return undefined;
  }
}

/**
 * A process's resident memory from /proc/<pid>/smaps_rollup, in KiB: `rss` counts every page it maps
 * (shared libraries in full), `pss` splits each shared page among the processes sharing it, so that summing
 * PSS over processes counts memory once. Undefined once the process is gone (or not readable).
 */
export function readMemoryKiB(pid: number): { rss: number; pss: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rss: field('Rss'), pss: field('Pss') };
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS and CPU time at an interval; peak RSS and CPU per window come from the samples. */
export class ProcSampler {
  readonly pid: number;
  readonly samples: ProcReading[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(pid: number, intervalMs = 200) {
    this.pid = pid;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  /** Takes a reading now (also useful at the exact edges of a measured window). */
  sample(): ProcReading | undefined {
    const r = readProc(this.pid);
    if (r) this.samples.push(r);
    return r;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Peak RSS, CPU seconds used and average cores between two times (epoch ms), from the samples in between. */
  window(fromMs: number, toMs: number): { peakRssMiB: number; cpuSeconds: number; avgCores: number } {
    const inside = this.samples.filter((s) => s.atMs >= fromMs - 250 && s.atMs <= toMs + 250);
    const first = inside[0];
    const last = inside.at(-1);
    const cpuSeconds = first && last ? last.cpuSeconds - first.cpuSeconds : Number.NaN;
    const seconds = first && last ? (last.atMs - first.atMs) / 1000 : Number.NaN;
    return {
      peakRssMiB: Math.max(...inside.map((s) => s.rssMiB)),
      cpuSeconds: Number(cpuSeconds.toFixed(2)),
      avgCores: Number((seconds > 0 ? cpuSeconds / seconds : Number.NaN).toFixed(2)),
    };
  }

  /** The RSS time series relative to `originMs`, in seconds, for plots. */
  series(originMs: number): [number, number][] {
    return this.samples.map((s) => [(s.atMs - originMs) / 1000, s.rssMiB]);
  }
}

/** A child process whose stdout lines can be awaited and whose output is copied to a log file. */
export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  readonly #lines: string[] = [];
  readonly #waiters = new Set<() => void>();
  #exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    name: string,
    command: string,
    args: string[],
    opts: { logFile: string; env?: NodeJS.ProcessEnv },
  ) {
    this.name = name;
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    this.proc = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    this.proc.stderr!.pipe(log);
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      log.write(`${line}\n`);
      this.#lines.push(line);
      for (const wake of this.#waiters) wake();
    });
    this.proc.on('exit', (code, signal) => {
      this.#exited = { code, signal };
      for (const wake of this.#waiters) wake();
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** How many stdout lines the child has printed so far. */
  get lineCount(): number {
    return this.#lines.length;
  }

  /**
   * Resolves with the first stdout line matching `re`, looking at lines from index `from` on (past or future);
   * rejects on exit or timeout.
   */
  async waitForLine(re: RegExp, timeoutMs = 120_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let seen = from;
    for (;;) {
      for (; seen < this.#lines.length; seen++) if (re.test(this.#lines[seen]!)) return this.#lines[seen]!;
      if (this.#exited) {
        throw new Error(`${this.name} exited (${JSON.stringify(this.#exited)}) before printing ${re}`);
      }
      if (Date.now() > deadline) throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(wake, 500);
        this.#waiters.add(wake);
      });
    }
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.#exited) return;
    this.proc.kill('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (!this.#exited) {
      if (Date.now() > deadline) this.proc.kill('SIGKILL');
      await sleep(50);
    }
  }
}

/** The Node.js running this benchmark, for child entries (same version and flags). */
export const NODE = process.execPath;
