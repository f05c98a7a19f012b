/**
 * The two ways the provider keeps ECI's API calls few: a {@link Poller} that runs one listing on an interval
 * and on demand (concurrent demands share the next run instead of each starting one), and a {@link Batcher}
 * that gathers lookups made in the same tick into one call (DescribeContainerGroups takes 20 ids at once).
 */
import type { Logger } from '../../shared/log.ts';

/** Runs `fn` every `intervalMs` and whenever {@link trigger}ed; never two runs at once. */
export class Poller {
  readonly #fn: () => Promise<void>;
  readonly #intervalMs: number;
  readonly #log: Logger | undefined;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(fn: () => Promise<void>, intervalMs: number, log?: Logger) {
    this.#fn = fn;
    this.#intervalMs = intervalMs;
    this.#log = log;
  }

  /** Starts the interval (first run now). Idempotent. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.trigger();
  }

  /** Stops the interval; a run in progress finishes. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Runs now, or right after the run in progress (whose data may predate the caller's change). Resolves when
   * that run has finished; rejects with its error.
   */
  trigger(): Promise<void> {
    if (this.#running) {
      this.#next ??= this.#running.then(
        () => this.#run(),
        () => this.#run(),
      );
      return this.#next;
    }
    return this.#run();
  }

  /**
   * Resolves when the run in progress has finished, or runs now when none is: for a caller that needs a run that
   * has not ended yet (a listing at start-up joins the first sync instead of queueing a second one).
   */
  join(): Promise<void> {
    return this.#running ?? this.trigger();
  }

  #run(): Promise<void> {
    clearTimeout(this.#timer);
    this.#next = undefined;
    const run = (async () => {
      try {
        await this.#fn();
      } finally {
        this.#running = undefined;
        if (!this.#stopped) {
          this.#timer = setTimeout(() => void this.trigger().catch(() => {}), this.#intervalMs);
          this.#timer.unref();
        }
      }
    })();
    this.#running = run;
    run.catch((err: unknown) => this.#log?.warn({ err: String(err) }, 'ECI status poll failed'));
    return run;
  }
}

/**
 * Collects keys requested in one tick and resolves them with one call per `size` keys. A key missing from the
 * call's result resolves to undefined.
 */
export class Batcher<K, V> {
  readonly #load: (keys: K[]) => Promise<Map<K, V>>;
  readonly #size: number;
  #pending = new Map<K, { resolve: (v: V | undefined) => void; reject: (e: unknown) => void }[]>();
  #scheduled = false;

  constructor(load: (keys: K[]) => Promise<Map<K, V>>, size: number) {
    this.#load = load;
    this.#size = size;
  }

  /** The value of `key`, loaded together with the other keys asked for in this tick. */
  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiters = this.#pending.get(key) ?? [];
      waiters.push({ resolve, reject });
      this.#pending.set(key, waiters);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#pending;
    this.#pending = new Map();
    this.#scheduled = false;
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += this.#size) {
      const chunk = keys.slice(i, i + this.#size);
      this.#load(chunk).then(
        (found) => chunk.forEach((k) => batch.get(k)!.forEach((w) => w.resolve(found.get(k)))),
        (err: unknown) => chunk.forEach((k) => batch.get(k)!.forEach((w) => w.reject(err))),
      );
    }
  }
}
