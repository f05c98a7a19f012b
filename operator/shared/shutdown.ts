/**
 * Graceful shutdown. Components register a closer when they start (`onShutdown('metrics', () => srv.close())`);
 * on SIGTERM or SIGINT the closers run one after another in reverse order of registration (what started last
 * depends on what started first, so it stops first), under one deadline, and then the process exits.
 *
 * The deadline defaults to 25 s: below Kubernetes' default 30 s `terminationGracePeriodSeconds`, so that our own
 * log line about a stuck closer is written before the kubelet's SIGKILL.
 */
import { componentLogger, type Logger } from './log.ts';

/** The subset of `process` that delivers signals; tests pass an `EventEmitter`. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

/** A closer: may be async; its errors are logged and make the exit code 1, the others still run. */
export type Closer = () => void | Promise<void>;

/** How a {@link GracefulShutdown} behaves; everything has a default. */
export interface ShutdownOptions {
  /** Time for all closers together; default 25 000 ms. */
  deadlineMs?: number;
  /** Ends the process; default `process.exit`. Tests pass a spy. */
  exit?: (code: number) => void;
  /** Where progress is logged. */
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/** The default deadline for all closers together. */
export const DEFAULT_SHUTDOWN_DEADLINE_MS = 25_000;

/** Runs registered closers once, in reverse order, on a signal or on demand. */
export class GracefulShutdown {
  readonly #closers: { name: string; fn: Closer }[] = [];
  readonly #deadlineMs: number;
  readonly #exit: (code: number) => void;
  readonly #logger: ShutdownOptions['logger'];
  #running: Promise<number> | undefined;
  #listening: { source: SignalSource; signals: NodeJS.Signals[]; handler: () => void } | undefined;

  constructor(options: ShutdownOptions = {}) {
    this.#deadlineMs = options.deadlineMs ?? DEFAULT_SHUTDOWN_DEADLINE_MS;
    this.#exit = options.exit ?? ((code) => process.exit(code));
    this.#logger = options.logger;
  }

  /**
   * Registers a closer. Returns a function that unregisters it (for a component that stops on its own earlier).
   * Registering while shutting down is ignored: the closer would race the exit.
   */
  onShutdown(name: string, fn: Closer): () => void {
    const entry = { name, fn };
    if (!this.#running) this.#closers.push(entry);
    return () => {
      const i = this.#closers.indexOf(entry);
      if (i >= 0) this.#closers.splice(i, 1);
    };
  }

  /** True once shutdown has begun. */
  get shuttingDown(): boolean {
    return this.#running !== undefined;
  }

  /**
   * Starts shutting down on the first of `signals`; a second signal exits at once with 130, for the operator at
   * a terminal who pressed Ctrl-C twice because a closer hangs.
   */
  listen(source: SignalSource = process, signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): void {
    if (this.#listening) return;
    const handler = () => {
      if (this.#running) {
        this.#logger?.warn('second signal: exiting without waiting for closers');
        this.#exit(130);
        return;
      }
      void this.shutdown('signal');
    };
    for (const s of signals) source.on(s, handler);
    this.#listening = { source, signals, handler };
  }

  /** Stops listening for signals (tests; or a process that hands signals to someone else). */
  unlisten(): void {
    if (!this.#listening) return;
    const { source, signals, handler } = this.#listening;
    for (const s of signals) source.off(s, handler);
    this.#listening = undefined;
  }

  /**
   * Runs every closer, newest first, then calls `exit` with 0 when all succeeded in time, else 1. Idempotent:
   * later calls return the first call's promise. Resolves with the exit code.
   */
  shutdown(reason: string): Promise<number> {
    this.#running ??= this.#run(reason);
    return this.#running;
  }

  async #run(reason: string): Promise<number> {
    this.#logger?.info({ reason, closers: this.#closers.length }, 'shutting down');
    let failed = false;
    let current = '';
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), this.#deadlineMs);
    });
    const closeAll = async () => {
      for (const { name, fn } of [...this.#closers].reverse()) {
        current = name;
        try {
          await fn();
        } catch (err) {
          failed = true;
          this.#logger?.error({ closer: name, err }, 'closer failed');
        }
      }
      return 'done' as const;
    };
    const outcome = await Promise.race([closeAll(), deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      failed = true;
      this.#logger?.error({ closer: current, deadlineMs: this.#deadlineMs }, 'shutdown deadline passed');
    }
    const code = failed ? 1 : 0;
    this.#logger?.info({ code }, 'shutdown complete');
    this.#exit(code);
    return code;
  }
}

let processShutdown: GracefulShutdown | undefined;

/** The process-wide instance (default deadline, `process.exit`); it listens for SIGTERM/SIGINT from first use. */
export function processShutdownCoordinator(): GracefulShutdown {
  if (!processShutdown) {
    processShutdown = new GracefulShutdown({ logger: componentLogger('shutdown') });
    processShutdown.listen();
  }
  return processShutdown;
}

/**
 * Registers a closer on the process-wide instance (see {@link GracefulShutdown.onShutdown}); the first call
 * installs the SIGTERM/SIGINT handlers.
 */
export function onShutdown(name: string, fn: Closer): () => void {
  return processShutdownCoordinator().onShutdown(name, fn);
}
