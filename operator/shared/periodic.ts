/**
 * The periodic loops of a component (lease renewal, provider pings, status resyncs): each runs its work every
 * interval until the component stops. A failed round is reported and the next round tries again; a loop never
 * keeps the process alive on its own (the component's server or informers do that).
 */

/** Stops one loop; calling it again does nothing. */
export type StopLoop = () => void;

/**
 * Runs `work` every `ms` milliseconds, first after one interval. Rounds do not wait for each other (as
 * setInterval), so `work` must tolerate overlapping with its previous round when it is slow.
 * @param onError receives what a round threw or rejected with
 * @returns stops the loop
 */
export function every(ms: number, work: () => Promise<unknown>, onError: (err: unknown) => void): StopLoop {
  const timer = setInterval(() => {
    try {
      void work().catch(onError);
    } catch (err) {
      onError(err);
    }
  }, ms);
  timer.unref();
  return () => clearInterval(timer);
}

/** The loops of one component, stopped together. */
export class PeriodicLoops {
  #stops: StopLoop[] = [];
  readonly #onError: (what: string, err: unknown) => void;

  /** @param onError receives each failed round, with the `what` of its loop (for the log line) */
  constructor(onError: (what: string, err: unknown) => void) {
    this.#onError = onError;
  }

  /** Starts a loop running `work` every `ms` milliseconds; `what` names it in errors. */
  every(ms: number, what: string, work: () => Promise<unknown>): void {
    this.#stops.push(every(ms, work, (err) => this.#onError(what, err)));
  }

  /** Stops every loop started so far. */
  stop(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }
}
