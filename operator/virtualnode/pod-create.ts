/**
 * What a failed create means for the pod, as pure decisions: the pod fails at once (the provider cannot run it,
 * or has no capacity for it), the create waits (throttled, a reference still missing), or it is retried with
 * exponential backoff until the attempts run out and the pod fails with `ProviderFailed`; and how a missing
 * reference is reported.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { apiErrorMessage } from '../shared/client.ts';
import { isInsufficientCapacity, isInvalidPodSpec, isThrottled } from '../providers/types.ts';
import { withContainerWaiting, type ContainerEvent } from './container-events.ts';
import { pendingStatus } from './pod-status.ts';
import { MissingReferenceError } from './resolve.ts';
import { PodReason } from '../../api/reasons.ts';

/** What to do after a create threw. */
export type CreateFailure =
  /** Fail the pod now with `reason`: retrying cannot help. */
  | {
      kind: 'fail';
      reason: typeof PodReason.UnsupportedPodSpec | typeof PodReason.InsufficientCapacity;
      message: string;
    }
  /** The provider is pacing us: retry after `requeueAfter`, without counting an attempt. */
  | { kind: 'throttled'; requeueAfter: number }
  /** A referenced ConfigMap/Secret/volume source is missing: report it as a kubelet does and retry. */
  | { kind: 'missingReference'; err: MissingReferenceError }
  /** Any other error: counts as an attempt. */
  | { kind: 'retry'; detail: string };

/** Classifies an error thrown by resolving the pod's inputs or by `provider.create`. */
export function classifyCreateError(err: unknown, provider: string): CreateFailure {
  if (isInvalidPodSpec(err)) {
    return {
      kind: 'fail',
      reason: PodReason.UnsupportedPodSpec,
      message: `provider ${provider} cannot run this pod: ${(err as Error).message}`,
    };
  }
  if (isInsufficientCapacity(err)) {
    // No capacity (ECI no stock, spot exhausted): fail the pod at once with a reason the ElasticWorkload
    // controller reads, so that a spot unit falls back to its next unit instead of waiting here.
    return {
      kind: 'fail',
      reason: PodReason.InsufficientCapacity,
      message: `provider ${provider} has no capacity for this pod: ${(err as Error).message}`,
    };
  }
  if (isThrottled(err)) {
    // Throttling is the provider pacing us, not a failure of this pod: it never counts towards ProviderFailed.
    return { kind: 'throttled', requeueAfter: (err as { retryAfterMs?: number }).retryAfterMs ?? 1000 };
  }
  if (err instanceof MissingReferenceError) return { kind: 'missingReference', err };
  return { kind: 'retry', detail: apiErrorMessage(err) };
}

/** Delay before retrying after the `attempts`-th failed create: 1 s, 2 s, 4 s, … up to one minute. */
export function createBackoffMs(attempts: number): number {
  // Exponential, so that a provider outage does not become a request storm.
  return Math.min(1000 * 2 ** (attempts - 1), 60_000);
}

/** Delay before looking for a missing reference again, as a kubelet retries: up to 30 s. */
export function missingReferenceBackoffMs(attempts: number): number {
  return Math.min(1000 * 2 ** (attempts - 1), 30_000);
}

/** The message of a refused create, on the `ProviderCreateFailed` Event and, at the last attempt, the pod. */
export function refusedCreateMessage(
  provider: string,
  attempts: number,
  max: number,
  detail: string,
): string {
  return `provider ${provider} refused the create (attempt ${attempts} of ${max}): ${detail}`;
}

/** How a missing reference is reported: the pod's status, and the Event (of the pod, or of a container). */
export interface MissingReferenceReport {
  status: V1PodStatus;
  /** A volume source is missing: a `FailedMount` Warning on the pod with this message. */
  failedMount?: string;
  /** An env reference is missing: a `Failed` Warning on the container. */
  containerEvent?: ContainerEvent;
}

/**
 * A reference the pod needs does not exist, reported as a kubelet does: a volume source is a `FailedMount`
 * Warning and the pod stays ContainerCreating; an env reference is a `Failed` Warning (`Error: ...`) and the
 * container waits with `CreateContainerConfigError`. The same message each retry, so Events form one series.
 */
export function missingReferenceReport(
  pod: V1Pod,
  err: MissingReferenceError,
  hostIP: string,
): MissingReferenceReport {
  const site = err.site ?? { volume: '' };
  const status = pendingStatus(pod, hostIP);
  if ('volume' in site) {
    return { status, failedMount: `MountVolume.SetUp failed for volume "${site.volume}" : ${err.message}` };
  }
  const spec = pod.spec?.initContainers?.some((c) => c.name === site.container)
    ? 'initContainers'
    : 'containers';
  return {
    status: withContainerWaiting(status, site.container, 'CreateContainerConfigError', err.message),
    containerEvent: {
      type: 'Warning',
      reason: 'Failed',
      message: `Error: ${err.message}`,
      fieldPath: `spec.${spec}{${site.container}}`,
    },
  };
}
