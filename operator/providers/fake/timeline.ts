/**
 * Due-time callbacks on ONE timer: the fake provider schedules starts and scripted exits for thousands of
 * sandboxes without a timer each. Events are kept sorted by due time (binary insertion); the single
 * timer always points at the earliest. Uses `Date.now()` and `setTimeout`, so vitest fake timers drive it.
 */
interface TimelineEvent {
  at: number;
  run: (() => void) | undefined;
}

/** A cancellable schedule of callbacks with a single underlying timer. */
export class Timeline {
  #events: TimelineEvent[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;

  /** Pending events (cancelled ones included until their time comes). */
  get size(): number {
    return this.#events.length;
  }

  /**
   * Runs `run` after `delayMs` (events due at the same time run in scheduling order).
   * @returns a function that cancels the event
   */
  schedule(delayMs: number, run: () => void): () => void {
    const event: TimelineEvent = { at: Date.now() + Math.max(0, delayMs), run };
    let lo = 0;
    let hi = this.#events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#events[mid]!.at <= event.at) lo = mid + 1;
      else hi = mid;
    }
    this.#events.splice(lo, 0, event);
    this.#arm();
    return () => (event.run = undefined);
  }

  /** Drops every pending event and the timer. */
  clear(): void {
    this.#events = [];
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #arm(): void {
    const first = this.#events[0];
    if (!first || first.at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = first.at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, first.at - Date.now()));
    // A pending fake start must not keep a test runner or a stopping operator alive.
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    let due = 0;
    while (due < this.#events.length && this.#events[due]!.at <= now) due++;
    const ready = this.#events.splice(0, due);
    for (const event of ready) event.run?.();
    this.#arm();
  }
}
