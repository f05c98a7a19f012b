/**
 * A controller-runtime-style workqueue and the worker loop around it.
 *
 * The queue's guarantees, which every controller relies on:
 * - a key added N times while it waits is processed once (keys are level triggers, not events);
 * - one key is never processed by two workers at once; a key added while it is being processed runs again after
 *   the current run calls `done`;
 * - failures back off per key (exponentially) and retries are rate-limited overall (token bucket), so one broken
 *   object cannot starve the others and a cluster-wide failure cannot hammer the apiserver.
 */
import { apiErrorMessage } from './client.ts';
import { componentLogger, type Logger } from './log.ts';
import { workqueueMetrics, type WorkqueueMetrics } from './metrics.ts';

/** Decides how long a failed key waits before it is retried. */
export interface RateLimiter {
  /** The delay before the next retry of `key`; counts as one more failure of it. */
  when(key: string): number;
  /** Forgets `key`'s failures (it succeeded, or it will never be retried). */
  forget(key: string): void;
  /** How many times `key` has failed since it was last forgotten. */
  numRequeues(key: string): number;
}

/** Per-key exponential backoff: `baseMs * 2^failures`, capped at `maxMs` (client-go's defaults: 5 ms, 1000 s). */
export class ExponentialBackoffLimiter implements RateLimiter {
  readonly #failures = new Map<string, number>();
  readonly #baseMs: number;
  readonly #maxMs: number;

  constructor(baseMs = 5, maxMs = 1_000_000) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    return Math.min(this.#baseMs * 2 ** failures, this.#maxMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket (`qps` tokens per second, at most `burst` saved up). Each retry takes a token,
 * reserving a future one when none is left: the delay is how long until that token exists.
 */
export class TokenBucketLimiter implements RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;

  constructor(qps = 10, burst = 100) {
    this.#qps = qps;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = Date.now();
  }

  when(_key: string): number {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#qps) * 1000);
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The longest delay of several limiters (client-go's `MaxOfRateLimiter`). */
export class MaxOfLimiter implements RateLimiter {
  readonly #limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    return Math.max(0, ...this.#limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }

  numRequeues(key: string): number {
    return Math.max(0, ...this.#limiters.map((l) => l.numRequeues(key)));
  }
}

/** client-go's `DefaultControllerRateLimiter`: per key 5 ms doubling to 1000 s, overall 10 retries/s burst 100. */
export function defaultRateLimiter(): RateLimiter {
  return new MaxOfLimiter(new ExponentialBackoffLimiter(5, 1_000_000), new TokenBucketLimiter(10, 100));
}

/** How a {@link WorkQueue} is built. */
export interface WorkQueueOptions {
  /** Names the queue in logs and metrics; metrics are recorded only for a named queue. */
  name?: string;
  /** Default {@link defaultRateLimiter}. */
  rateLimiter?: RateLimiter;
}

/** A deduplicating, rate-limited queue of string keys (usually `namespace/name`). */
export class WorkQueue {
  readonly name: string | undefined;
  readonly #limiter: RateLimiter;
  readonly #metrics: WorkqueueMetrics | undefined;
  /** Keys waiting, in order; each is also in #dirty. */
  #queue: string[] = [];
  /** Keys that need processing (waiting, or re-added while being processed). */
  readonly #dirty = new Set<string>();
  /** Keys a worker holds between `get` and `done`. */
  readonly #processing = new Set<string>();
  /** `addAfter` timers by key, with the time they fire; only the earliest per key is kept. */
  readonly #delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  /** Workers blocked in `get`. */
  #waiters: ((key: string | undefined) => void)[] = [];
  #shuttingDown = false;
  #drained: (() => void) | undefined;

  constructor(options: WorkQueueOptions = {}) {
    this.name = options.name;
    this.#limiter = options.rateLimiter ?? defaultRateLimiter();
    this.#metrics = options.name ? workqueueMetrics() : undefined;
  }

  /** Keys waiting to be handed to a worker (not those being processed). */
  get length(): number {
    return this.#queue.length;
  }

  /** True once {@link shutDown} was called. */
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Marks `key` as needing processing. A no-op when it already waits, or once the queue is shutting down. */
  add(key: string): void {
    if (this.#shuttingDown) return;
    if (this.name) this.#metrics?.adds.inc({ name: this.name });
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    // Being processed: `done` puts it back, so it never runs twice at once.
    if (this.#processing.has(key)) return;
    this.#enqueue(key);
  }

  /** Adds `key` after `ms`; of several pending delays for one key the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, timer });
  }

  /** Adds `key` after its rate-limited backoff: use after a failed reconcile. */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    if (this.name) this.#metrics?.retries.inc({ name: this.name });
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Resets `key`'s backoff: call after a successful reconcile, or when giving up on it. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  /** How many times `key` has been retried since it was last forgotten. */
  numRequeues(key: string): number {
    return this.#limiter.numRequeues(key);
  }

  /**
   * Waits for the next key and marks it as being processed; the caller must call {@link done} with it.
   * Resolves `undefined` once the queue shuts down: the worker should return.
   */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Ends processing of `key`; if it was added meanwhile, it waits again. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#enqueue(key);
    if (this.#shuttingDown && this.#processing.size === 0) this.#drained?.();
  }

  /**
   * Stops the queue: new adds and pending delays are dropped, as are keys that wait (reconciles are level-based,
   * so whoever runs next relists and re-adds them); blocked `get` calls resolve `undefined`. Resolves once every
   * key being processed is `done`, so a caller can release leadership knowing no reconcile is still writing.
   */
  shutDown(): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      for (const { timer } of this.#delayed.values()) clearTimeout(timer);
      this.#delayed.clear();
      this.#queue = [];
      this.#dirty.clear();
      for (const wake of this.#waiters.splice(0)) wake(undefined);
      this.#setDepth();
    }
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#drained;
      this.#drained = () => {
        previous?.();
        resolve();
      };
    });
  }

  #enqueue(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter(this.#take(key));
      return;
    }
    this.#queue.push(key);
    this.#setDepth();
  }

  #take(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    this.#setDepth();
    return key;
  }

  #setDepth(): void {
    if (this.name) this.#metrics?.depth.set({ name: this.name }, this.#queue.length);
  }
}

/**
 * Thrown by a reconcile to say "retrying cannot help" (e.g. an invalid spec the user must fix): the key is
 * logged and forgotten instead of retried. controller-runtime's `reconcile.TerminalError`.
 */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/** What a reconcile may ask for when it succeeds. */
export interface ReconcileResult {
  /** Run this key again after this many ms (e.g. to poll something that sends no events). */
  requeueAfter?: number;
  /** Run it again after the rate-limited backoff, without counting as an error. */
  requeue?: boolean;
}

/** Level-based reconcile of one key: read the current state, act, return or throw. */
export type Reconcile = (key: string) => Promise<ReconcileResult | void> | ReconcileResult | void;

/** How {@link runWorkers} reports. */
export interface RunWorkersOptions {
  logger?: Logger;
}

/**
 * Runs `concurrency` workers that take keys from `queue` and reconcile them until the queue shuts down.
 * Success forgets the key's backoff (and honours `requeueAfter` / `requeue`); a thrown error re-adds it
 * rate-limited, except a {@link TerminalError}. Resolves when every worker has returned.
 */
export async function runWorkers(
  queue: WorkQueue,
  concurrency: number,
  reconcile: Reconcile,
  options: RunWorkersOptions = {},
): Promise<void> {
  const log = options.logger ?? componentLogger('workqueue', { queue: queue.name });
  const metrics = queue.name ? workqueueMetrics() : undefined;
  const worker = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const started = performance.now();
      try {
        const result = await reconcile(key);
        if (result?.requeueAfter !== undefined && result.requeueAfter > 0) {
          queue.forget(key);
          queue.addAfter(key, result.requeueAfter);
        } else if (result?.requeue) {
          queue.addRateLimited(key);
        } else {
          queue.forget(key);
        }
      } catch (err) {
        if (err instanceof TerminalError) {
          queue.forget(key);
          log.error({ key, err: err.message }, 'reconcile failed for good; not retrying');
        } else {
          const retries = queue.numRequeues(key);
          queue.addRateLimited(key);
          // The first failures are often conflicts that fix themselves: debug-level until they persist.
          const level = retries >= 3 ? 'warn' : 'debug';
          log[level](
            { key, retries: retries + 1, err: apiErrorMessage(err) },
            'reconcile failed; will retry',
          );
        }
      } finally {
        queue.done(key);
        if (queue.name)
          metrics?.workDuration.observe({ name: queue.name }, (performance.now() - started) / 1000);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
}
