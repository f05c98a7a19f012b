/**
 * ECI's error codes, sorted into what spillway does with them: retry (throttling, 5xx, network), or turn into
 * the typed provider errors the virtual node branches on (docs/architecture.md#typed-errors). The SDK throws a `ResponseError` with
 * `code` (ECI's code), `statusCode` and `data.RequestId`, and never retries by itself.
 */
import {
  describeKey,
  InsufficientCapacityError,
  InvalidPodSpecError,
  NotFoundError,
  ThrottledError,
  type SandboxKey,
} from '../types.ts';

/** The fields of an SDK error that matter here. */
export interface SdkError {
  code?: string;
  statusCode?: number;
  message?: string;
  data?: { RequestId?: string; Message?: string };
}

const THROTTLE_CODES = new Set([
  'Throttling',
  'Throttling.User',
  'Throttling.Api',
  'Throttling.Resource',
  'Degrade.Api',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ReadTimeout',
  'ConnectTimeout',
]);

const asSdk = (err: unknown): SdkError => (typeof err === 'object' && err !== null ? (err as SdkError) : {});

/** What to do with a failed call. */
export type ErrorClass = 'throttled' | 'server' | 'network' | 'final';

/** Sorts an SDK error: throttled, server-side (5xx), network (all three retried), or final. */
export function classify(err: unknown): ErrorClass {
  const e = asSdk(err);
  if (e.code && THROTTLE_CODES.has(e.code)) return 'throttled';
  if (e.statusCode !== undefined && e.statusCode >= 500) return 'server';
  if (e.code === 'ServiceUnavailable' || e.code === 'InternalError') return 'server';
  if (e.code && NETWORK_CODES.has(e.code)) return 'network';
  if (e.statusCode === undefined && /socket hang up|timeout/i.test(e.message ?? '')) return 'network';
  return 'final';
}

/** ECI's request id of a failed call, for support tickets. */
export function requestIdOf(err: unknown): string | undefined {
  return asSdk(err).data?.RequestId;
}

/** True for ECI's "no stock" family (`OperationDenied.NoStock`, `RecommendEmpty.InstanceTypeNoStock`, ...). */
export function isNoStock(err: unknown): boolean {
  return /NoStock/.test(asSdk(err).code ?? '');
}

/** True when ECI says the instance does not exist. */
export function isEciNotFound(err: unknown): boolean {
  return /NotFound/.test(asSdk(err).code ?? '') && !isNoStock(err);
}

/**
 * ECI answered a create with `IdempotentParameterMismatch`: its ClientToken (derived from the pod's UID) already
 * made a container group, from a request with other parameters (a replay after a lost answer, with a freshly
 * minted service-account token in it). Not a spec problem: the pod's instance exists and is to be adopted.
 */
export class ClientTokenReusedError extends Error {
  override readonly name = 'ClientTokenReusedError';
}

/** The context of a call, for messages. */
export interface CallContext {
  action: string;
  key?: SandboxKey;
  /** The capacity class of a create, for InsufficientCapacityError. */
  capacityType?: 'spot' | 'on-demand';
  /** Back-off hint for ThrottledError. */
  retryAfterMs?: number;
}

/**
 * Translates an SDK error into a provider error. Parameter errors on CreateContainerGroup mean the spec cannot
 * run (InvalidPodSpecError, not retried); everything else keeps ECI's code and request id in the message.
 */
export function toProviderError(err: unknown, ctx: CallContext): Error {
  const e = asSdk(err);
  const requestId = requestIdOf(err);
  const who = ctx.key ? ` for pod ${describeKey(ctx.key)}` : '';
  const detail = `${e.code ?? 'error'}: ${e.data?.Message ?? e.message ?? String(err)}${requestId ? ` (request id ${requestId})` : ''}`;
  const context = { cause: err, ...(ctx.key && { key: ctx.key }), ...(requestId && { requestId }) };
  if (isNoStock(err)) {
    const kind = ctx.capacityType ? `${ctx.capacityType} ` : '';
    return new InsufficientCapacityError(`ECI has no ${kind}capacity${who} now: ${detail}`, {
      ...context,
      ...(ctx.capacityType && { capacityType: ctx.capacityType }),
    });
  }
  if (classify(err) === 'throttled') {
    return new ThrottledError(`ECI throttled ${ctx.action}${who}: ${detail}`, {
      ...context,
      retryAfterMs: ctx.retryAfterMs ?? 1000,
    });
  }
  if (isEciNotFound(err)) return new NotFoundError(`ECI ${ctx.action}${who}: ${detail}`, context);
  if (e.code === 'IdempotentParameterMismatch') {
    return new ClientTokenReusedError(`ECI ${ctx.action}${who}: the ClientToken was used before: ${detail}`, {
      cause: err,
    });
  }
  if (
    ctx.action === 'CreateContainerGroup' &&
    /^(InvalidParameter|MissingParameter|InvalidParam)/.test(e.code ?? '')
  ) {
    return new InvalidPodSpecError(`ECI rejected the container group${who}: ${detail}`, {
      ...context,
      causes: [{ path: 'spec', message: e.data?.Message ?? e.message ?? String(e.code) }],
    });
  }
  return new Error(`ECI ${ctx.action} failed${who}: ${detail}`, { cause: err });
}
