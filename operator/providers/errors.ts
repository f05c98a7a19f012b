/**
 * Typed provider errors (docs/architecture.md#typed-errors). Controllers branch on them through the `isX()` guards, never
 * through `instanceof`: a provider may be loaded from another copy of this module (a plug-in bundled with
 * its own dependencies), and a class from one copy is not an instance of the same class from another.
 * The guards therefore check a global brand (`Symbol.for`) plus a string `code`.
 */
import type { SandboxKey } from './types.ts';

const brand = Symbol.for('spillway.dev/sandbox-provider-error');

/** The codes a provider error can carry; each has its class and guard below. */
export type ProviderErrorCode = 'NotFound' | 'InsufficientCapacity' | 'Throttled' | 'InvalidPodSpec';

/** What every provider error may say about where it happened. */
export interface ProviderErrorContext {
  /** The sandbox the call was about, when there was one. */
  key?: SandboxKey;
  /** The provider's own request id (ECI `RequestId`), so an operator can quote it to the cloud's support. */
  requestId?: string;
  /** The error this one wraps (SDK or system error). */
  cause?: unknown;
}

/** Base of the typed errors: carries the brand, the code and the context. */
export abstract class SandboxProviderError extends Error {
  /** Stable machine-readable kind; the guards compare it. */
  abstract readonly code: ProviderErrorCode;
  readonly key: SandboxKey | undefined;
  readonly requestId: string | undefined;
  readonly [brand] = true;

  constructor(message: string, context: ProviderErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.key = context.key;
    this.requestId = context.requestId;
  }
}

/** The instance (or the container inside it) does not exist. `delete` never throws it. */
export class NotFoundError extends SandboxProviderError {
  readonly code = 'NotFound' as const;
  override readonly name = 'NotFoundError';
}

/**
 * The provider has no capacity for this pod now (ECI `OperationDenied.NoStock`, a full local host).
 * The pod controller retries with backoff; spot fallback moves the replica to the next unit.
 */
export class InsufficientCapacityError extends SandboxProviderError {
  readonly code = 'InsufficientCapacity' as const;
  override readonly name = 'InsufficientCapacityError';
  /** The capacity class that ran out, when the provider knows it. */
  readonly capacityType: 'spot' | 'on-demand' | undefined;

  constructor(message: string, context: ProviderErrorContext & { capacityType?: 'spot' | 'on-demand' } = {}) {
    super(message, context);
    this.capacityType = context.capacityType;
  }
}

/** The provider's API refused the call for rate reasons; retry no sooner than `retryAfterMs`. */
export class ThrottledError extends SandboxProviderError {
  readonly code = 'Throttled' as const;
  override readonly name = 'ThrottledError';
  /** How long to wait before the next call, in milliseconds (the provider's hint, or its own default). */
  readonly retryAfterMs: number;

  constructor(message: string, context: ProviderErrorContext & { retryAfterMs?: number } = {}) {
    super(message, context);
    this.retryAfterMs = context.retryAfterMs ?? 1000;
  }
}

/** One field of the pod spec the provider cannot run, and what to change. */
export interface PodSpecCause {
  /** e.g. `spec.containers[0].resources.limits.cpu` */
  path: string;
  message: string;
}

/**
 * The provider cannot run this pod spec at all; retrying is useless. The pod controller fails the pod
 * (reason `UnsupportedPodSpec`) with an Event that lists the causes.
 */
export class InvalidPodSpecError extends SandboxProviderError {
  readonly code = 'InvalidPodSpec' as const;
  override readonly name = 'InvalidPodSpecError';
  readonly causes: readonly PodSpecCause[];

  constructor(message: string, context: ProviderErrorContext & { causes?: PodSpecCause[] } = {}) {
    super(message, context);
    this.causes = context.causes ?? [];
  }
}

function hasCode(err: unknown, code: ProviderErrorCode): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { [brand]?: unknown; code?: unknown };
  return e[brand] === true && e.code === code;
}

/** True for a {@link NotFoundError} from any copy of this module. */
export function isNotFound(err: unknown): err is NotFoundError {
  return hasCode(err, 'NotFound');
}

/** True for an {@link InsufficientCapacityError} from any copy of this module. */
export function isInsufficientCapacity(err: unknown): err is InsufficientCapacityError {
  return hasCode(err, 'InsufficientCapacity');
}

/** True for a {@link ThrottledError} from any copy of this module. */
export function isThrottled(err: unknown): err is ThrottledError {
  return hasCode(err, 'Throttled');
}

/** True for an {@link InvalidPodSpecError} from any copy of this module. */
export function isInvalidPodSpec(err: unknown): err is InvalidPodSpecError {
  return hasCode(err, 'InvalidPodSpec');
}
