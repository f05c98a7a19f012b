/**
 * A token bucket per ECI API action. ECI enforces per-API quotas and answers `Throttling.User` beyond them; a
 * burst of 500 pods must queue on our side instead, in order (FIFO), and when ECI throttles anyway every caller
 * of that action waits out the back-off together (`pause`) rather than each retrying on its own (a storm).
 */

/** A FIFO token bucket. */
export class TokenBucket {
  readonly qps: number;
  readonly burst: number;
  #tokens: number;
  #last: number;
  #pausedUntil = 0;
  #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #now: () => number;

  constructor(qps: number, burst: number, now: () => number = Date.now) {
    this.qps = qps;
    this.burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#last = now();
  }

  /** Callers waiting for a token now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Resolves when the caller may make one call. */
  take(): Promise<void> {
    if (this.#waiters.length === 0 && this.#tryTake()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#schedule();
    });
  }

  /** Nobody gets a token for `ms` (the API just throttled us); the bucket also drops what it had saved. */
  pause(ms: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, this.#now() + ms);
    this.#tokens = 0;
  }

  #refill(): void {
    const now = this.#now();
    const from = Math.max(this.#last, this.#pausedUntil);
    if (now > from) this.#tokens = Math.min(this.burst, this.#tokens + ((now - from) / 1000) * this.qps);
    this.#last = Math.max(now, this.#last);
  }

  #tryTake(): boolean {
    if (this.#now() < this.#pausedUntil) return false;
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #schedule(): void {
    if (this.#timer) return;
    const now = this.#now();
    const untilToken = Math.ceil(((1 - Math.min(this.#tokens, 1)) / this.qps) * 1000);
    const delay = Math.max(this.#pausedUntil - now, 0) + Math.max(untilToken, 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      while (this.#waiters.length > 0 && this.#tryTake()) this.#waiters.shift()!();
      if (this.#waiters.length > 0) this.#schedule();
    }, delay);
  }
}
