/**
 * The kill-soak's operator: `spillway run` as a child process in a process group of its own, so that `kill -9`
 * takes the operator and every helper it started undetached (CoreDNS, exec helpers) at once, as a crash of the
 * operator's container or an OOM kill would. What the providers start detached (local sandboxes) survives it,
 * which is the point of the soak. Also the seeded random numbers that decide when to kill.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from './results.ts';

/** A uniform number in [lo, hi) from `rand`. */
export const between = (rand: () => number, lo: number, hi: number): number => lo + rand() * (hi - lo);

/** Splits `total` kills over `phases` phases as evenly as possible, the remainder to the first ones. */
export function killsPerPhase(total: number, phases: number): number[] {
  return Array.from({ length: phases }, (_, i) => Math.floor(total / phases) + (i < total % phases ? 1 : 0));
}

/** The start-up log line that says the virtual node is up (its older wording too). */
const READY = /virtual node registered|serving the kubelet API of virtual node/;

/** Options of an {@link OperatorProcess}. */
export interface OperatorOptions {
  /** Arguments after `operator/cli.ts`. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Every start's output is appended here. */
  logFile: string;
}

/** `spillway run`, started, SIGKILLed and started again by the soak. */
export class OperatorProcess {
  readonly #options: OperatorOptions;
  readonly #log: WriteStream;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #ready = false;
  #lastOutput = '';
  /** How many times it was started, and SIGKILLed. */
  starts = 0;
  kills = 0;
  /** Exits the soak did not cause (code or signal), as `code=… signal=…`. */
  readonly unexpectedExits: string[] = [];

  constructor(options: OperatorOptions) {
    this.#options = options;
    this.#log = createWriteStream(options.logFile, { flags: 'a' });
  }

  /** Whether the current run has printed that its virtual node is registered. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Starts a new run (the previous one must have exited). */
  start(): void {
    if (this.#child) throw new Error('operator already running');
    this.starts++;
    this.#ready = false;
    this.#log.write(`\n===== soak: start #${this.starts} at ${new Date().toISOString()} =====\n`);
    const child = spawn(process.execPath, [join(repoRoot, 'operator/cli.ts'), 'run', ...this.#options.args], {
      cwd: repoRoot,
      env: { ...process.env, ...this.#options.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const take = (d: Buffer) => {
      const text = d.toString();
      this.#log.write(text);
      this.#lastOutput = (this.#lastOutput + text).slice(-4000);
      if (READY.test(text)) this.#ready = true;
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    this.#exited = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        // An exit the soak did not ask for is a finding of its own (a crash on restart, a fatal error).
        if (!this.#killing) this.unexpectedExits.push(`code=${code} signal=${signal}`);
        if (this.#child === child) this.#child = undefined;
        resolve();
      }),
    );
  }

  #killing = false;

  /** SIGKILL to the whole process group; resolves once the operator has exited. */
  async kill9(): Promise<void> {
    const child = this.#child;
    if (!child?.pid) return;
    this.#killing = true;
    this.kills++;
    this.#log.write(`\n===== soak: kill -9 #${this.kills} at ${new Date().toISOString()} =====\n`);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await this.#exited;
    this.#killing = false;
  }

  /** Waits until the current run is registered; throws with its last output when it exits or times out. */
  async waitReady(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ready) {
      if (!this.#child) throw new Error(`operator exited before it was ready:\n${this.#lastOutput}`);
      if (Date.now() > deadline)
        throw new Error(`operator not ready in ${timeoutMs} ms:\n${this.#lastOutput}`);
      await sleep(100);
    }
  }

  /** SIGTERM (a clean shutdown), SIGKILL to the group after `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    const child = this.#child;
    if (!child?.pid) return;
    this.#killing = true;
    child.kill('SIGTERM');
    const done = await Promise.race([this.#exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!done) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await this.#exited;
    }
    this.#killing = false;
    this.#log.end();
  }
}
