/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics: candidates read the Lease every
 * `retryPeriod`; the holder renews it, and gives up leadership when it could not renew for `renewDeadline`;
 * another candidate takes over once the holder has not renewed for `leaseDuration`, as measured on the
 * candidate's own clock from when it *saw* the record change (so clock skew between nodes does not matter).
 * Writes use the Lease's resourceVersion: a 409 Conflict means another candidate wrote first.
 *
 * Two client-node 2.x details: `renewTime`/`acquireTime` must be sent as `V1MicroTime` (six fractional digits) or
 * the apiserver answers 400, and they come back as plain strings (the deserialiser does not know the type).
 */
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { apiErrorMessage, isApiError } from './client.ts';
import { componentLogger, type Logger } from './log.ts';

/** The Lease calls the elector makes; `CoordinationV1Api` provides them, tests pass a fake. */
export type LeaseApi = Pick<
  CoordinationV1Api,
  'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'
>;

/** What a candidate should do now. `acquire` means write the Lease with itself as holder. */
export type LeaseDecision =
  | { action: 'acquire'; reason: 'missing' | 'released' | 'expired' }
  | { action: 'renew' }
  | { action: 'wait'; holder: string; expiresInMs: number };

/** Input of {@link decideLease}. */
export interface LeaseDecisionInput {
  /** The Lease as read, or undefined when it does not exist. */
  lease: V1Lease | undefined;
  identity: string;
  /** Local time now, ms since the epoch. */
  now: number;
  /**
   * Local time when this candidate first saw the Lease's current record; default its `renewTime`. Passing it
   * makes expiry independent of the holder's clock.
   */
  observedAt?: number;
  /** Used when the Lease does not say its own duration. */
  defaultLeaseDurationMs: number;
}

/** Parses a MicroTime as read back from the apiserver (a string) or as built locally (a Date). */
export function microTimeMs(value: Date | string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The pure leader-election decision for one candidate. */
export function decideLease(input: LeaseDecisionInput): LeaseDecision {
  const { lease, identity, now } = input;
  if (!lease) return { action: 'acquire', reason: 'missing' };
  const holder = lease.spec?.holderIdentity ?? '';
  if (holder === '') return { action: 'acquire', reason: 'released' };
  if (holder === identity) return { action: 'renew' };
  const durationMs = (lease.spec?.leaseDurationSeconds ?? input.defaultLeaseDurationMs / 1000) * 1000;
  const since =
    input.observedAt ?? microTimeMs(lease.spec?.renewTime) ?? microTimeMs(lease.spec?.acquireTime) ?? 0;
  const expiresInMs = since + durationMs - now;
  if (expiresInMs <= 0) return { action: 'acquire', reason: 'expired' };
  return { action: 'wait', holder, expiresInMs };
}

/** How a {@link LeaderElector} behaves. Durations are client-go's defaults. */
export interface LeaderElectionOptions {
  leases: LeaseApi;
  namespace: string;
  /** The Lease's name, e.g. `spillway-controller`. */
  name: string;
  /** Unique per candidate, e.g. the pod name plus a random suffix. */
  identity: string;
  /** How long a Lease is valid without renewal; default 15 000 ms (whole seconds are written). */
  leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up; default 10 000 ms. */
  renewDeadlineMs?: number;
  /** Time between attempts; default 2 000 ms (candidates add up to 20 % jitter). */
  retryPeriodMs?: number;
  /** Called when this candidate becomes leader; `signal` aborts when leadership ends. */
  onStartedLeading?: (signal: AbortSignal) => void | Promise<void>;
  /** Called when leadership ends (lost, or `stop()`); awaited before a `stop()` releases the Lease. */
  onStoppedLeading?: () => void | Promise<void>;
  /** Called when the observed leader changes (including to this candidate). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
}

/**
 * One candidate. `start()` campaigns in the background. When it loses leadership (the Lease taken, or no renewal
 * within the renew deadline, e.g. during an apiserver outage) it awaits `onStoppedLeading`, which must stop the
 * leader-only work, and then campaigns again: losing the Lease never ends the process, so work that does not
 * need leadership (webhooks, virtual nodes) keeps running through an outage. `stop()` releases the Lease so that
 * a successor takes over at its next retry instead of waiting out the lease duration.
 */
export class LeaderElector {
  readonly identity: string;
  readonly #options: Required<
    Pick<LeaderElectionOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>
  > &
    LeaderElectionOptions;
  readonly #log: Logger;
  #leading = false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #leaderAbort: AbortController | undefined;
  #sleepAbort = new AbortController();
  /** The last Lease read or written, and when its record was first seen (local clock). */
  #observed: V1Lease | undefined;
  #observedAt = 0;
  #observedLeader = '';
  #renewDeadlineTimer: NodeJS.Timeout | undefined;
  #stoppedLeading: Promise<void> | undefined;

  constructor(options: LeaderElectionOptions) {
    const o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
    if (!(o.leaseDurationMs > o.renewDeadlineMs && o.renewDeadlineMs > o.retryPeriodMs * 1.2)) {
      throw new Error(
        `leader election needs leaseDuration > renewDeadline > 1.2 × retryPeriod, got ` +
          `${o.leaseDurationMs} / ${o.renewDeadlineMs} / ${o.retryPeriodMs} ms`,
      );
    }
    this.#options = o;
    this.identity = o.identity;
    this.#log =
      o.logger ??
      componentLogger('leader-election', { lease: `${o.namespace}/${o.name}`, identity: o.identity });
  }

  /** True while this candidate holds the Lease. */
  isLeader(): boolean {
    return this.#leading;
  }

  /** Starts campaigning in the background; idempotent. */
  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#campaign();
  }

  /** Stops campaigning; when leading, ends leadership (awaiting `onStoppedLeading`) and releases the Lease. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#sleepAbort.abort();
    await this.#loop;
    if (this.#leading) await this.#stopLeading('stopped');
    // Also when a write that made us holder completed just as stop() was called, before we started leading.
    await this.#release();
    await this.#stoppedLeading;
  }

  async #campaign(): Promise<void> {
    while (!this.#stopped) {
      await this.#leadOnce();
      // Lost: the leader-only work must have stopped before this candidate may lead again.
      await this.#stoppedLeading;
    }
  }

  /** Acquires the Lease (retrying every retry period), then renews it until leadership ends or `stop()`. */
  async #leadOnce(): Promise<void> {
    while (!this.#stopped) {
      if (await this.#tryAcquireOrRenew()) break;
      await this.#sleep(this.#options.retryPeriodMs * (1 + Math.random() * 0.2));
    }
    if (this.#stopped) return;
    this.#leading = true;
    this.#leaderAbort = new AbortController();
    this.#armRenewDeadline();
    this.#log.info('started leading');
    this.#notifyLeader(this.identity);
    void this.#callback(
      () => this.#options.onStartedLeading?.(this.#leaderAbort!.signal),
      'onStartedLeading',
    );
    while (!this.#stopped && this.#leading) {
      await this.#sleep(this.#options.retryPeriodMs);
      if (this.#stopped || !this.#leading) break;
      // A renewal that was in flight when the deadline passed does not bring leadership back.
      if ((await this.#tryAcquireOrRenew()) && this.#leading) this.#armRenewDeadline();
    }
  }

  /** Reads the Lease (unless we hold a fresh copy) and writes it when the decision says so; true on success. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { leases, namespace, name } = this.#options;
    let lease = this.#leading ? this.#observed : undefined;
    if (!lease) {
      try {
        lease = await leases.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (!isApiError(err, 404)) {
          this.#log.warn({ err: apiErrorMessage(err) }, 'reading the lease failed');
          return false;
        }
      }
      this.#observe(lease);
    }
    const now = Date.now();
    const decision = decideLease({
      lease,
      identity: this.identity,
      now,
      observedAt: lease ? this.#observedAt : undefined,
      defaultLeaseDurationMs: this.#options.leaseDurationMs,
    });
    if (decision.action === 'wait') {
      this.#notifyLeader(decision.holder);
      // Someone else holds a valid lease: if we thought we led, we have lost (no need to wait for the deadline).
      if (this.#leading) await this.#stopLeading(`lease taken by ${decision.holder}`);
      return false;
    }
    const spec = lease?.spec ?? {};
    const renewing = decision.action === 'renew';
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace, resourceVersion: lease?.metadata?.resourceVersion },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: Math.ceil(this.#options.leaseDurationMs / 1000),
        acquireTime: renewing ? toMicroTime(spec.acquireTime, now) : new V1MicroTime(now),
        renewTime: new V1MicroTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing || !lease ? 0 : 1),
      },
    };
    try {
      const written = lease
        ? await leases.replaceNamespacedLease({ name, namespace, body })
        : await leases.createNamespacedLease({ namespace, body });
      this.#observe(written);
      return true;
    } catch (err) {
      // 409: another candidate wrote first (create raced, or our resourceVersion is stale). Read again next time.
      this.#observed = undefined;
      if (!isApiError(err, 409)) this.#log.warn({ err: apiErrorMessage(err) }, 'writing the lease failed');
      return false;
    }
  }

  #observe(lease: V1Lease | undefined): void {
    const record = (l: V1Lease | undefined) =>
      JSON.stringify([
        l?.spec?.holderIdentity,
        l?.spec?.renewTime,
        l?.spec?.leaseTransitions,
        l?.metadata?.resourceVersion,
      ]);
    if (record(lease) !== record(this.#observed) || this.#observedAt === 0) this.#observedAt = Date.now();
    this.#observed = lease;
  }

  /** A renewal must succeed before the deadline; a timer (not the loop) enforces it, so a hung request counts. */
  #armRenewDeadline(): void {
    clearTimeout(this.#renewDeadlineTimer);
    this.#renewDeadlineTimer = setTimeout(() => {
      void this.#stopLeading(`could not renew within ${this.#options.renewDeadlineMs} ms`);
    }, this.#options.renewDeadlineMs);
  }

  async #stopLeading(reason: string): Promise<void> {
    if (!this.#leading) return this.#stoppedLeading;
    this.#leading = false;
    clearTimeout(this.#renewDeadlineTimer);
    this.#sleepAbort.abort();
    this.#leaderAbort?.abort(new Error(`leadership ended: ${reason}`));
    this.#log.info({ reason }, 'stopped leading');
    this.#stoppedLeading = this.#callback(() => this.#options.onStoppedLeading?.(), 'onStoppedLeading');
    return this.#stoppedLeading;
  }

  /** Hands the Lease back: empty holder, 1 s duration, so the next candidate acquires it at its next retry. */
  async #release(): Promise<void> {
    const lease = this.#observed;
    if (!lease || lease.spec?.holderIdentity !== this.identity) return;
    const now = Date.now();
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.#options.name,
        namespace: this.#options.namespace,
        resourceVersion: lease.metadata?.resourceVersion,
      },
      spec: {
        holderIdentity: '',
        leaseDurationSeconds: 1,
        acquireTime: new V1MicroTime(now),
        renewTime: new V1MicroTime(now),
        leaseTransitions: lease.spec?.leaseTransitions ?? 0,
      },
    };
    try {
      await this.#options.leases.replaceNamespacedLease({
        name: this.#options.name,
        namespace: this.#options.namespace,
        body,
      });
      this.#log.info('released the lease');
    } catch (err) {
      // Not fatal: the successor waits out the lease duration instead.
      this.#log.warn({ err: apiErrorMessage(err) }, 'releasing the lease failed');
    }
  }

  #notifyLeader(identity: string): void {
    if (identity === this.#observedLeader) return;
    this.#observedLeader = identity;
    this.#log.info({ leader: identity }, 'new leader observed');
    try {
      this.#options.onNewLeader?.(identity);
    } catch (err) {
      this.#log.error({ err }, 'onNewLeader threw');
    }
  }

  async #callback(fn: () => void | Promise<void>, what: string): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#log.error({ err }, `${what} threw`);
    }
  }

  /** Sleeps `ms`, or less when `stop()` or a loss of leadership interrupts it. */
  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    if (this.#sleepAbort.signal.aborted) this.#sleepAbort = new AbortController();
    const signal = this.#sleepAbort.signal;
    await new Promise<void>((resolve) => {
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        // One signal outlives many sleeps: drop the listener or they pile up.
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** A MicroTime for the wire from what a Lease read back holds (a string), falling back to `now`. */
function toMicroTime(value: Date | string | undefined, now: number): V1MicroTime {
  return new V1MicroTime(microTimeMs(value) ?? now);
}
