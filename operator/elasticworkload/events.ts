/**
 * Every Event the ElasticWorkload controller records, one constructor per reason (what `kubectl describe ew`
 * shows), and when a standing one is told again. Pure: the writer records what these return.
 */
import { EventType } from '../shared/events.ts';
import { describeViolations, type SandboxViolation } from '../../api/sandbox-rules.ts';
import type { ElasticWorkload } from '../../api/elasticworkload.ts';
import { ConditionType } from '../../api/elasticworkload.ts';
import { EventReason, ConditionReason } from '../../api/reasons.ts';

/** An Event to record on the ElasticWorkload: its type, reason, action (what the controller did) and message. */
export interface WorkloadEvent {
  type: EventType;
  reason: string;
  action: string;
  message: string;
}

const warning = (reason: string, action: string, message: string): WorkloadEvent => ({
  type: EventType.Warning,
  reason,
  action,
  message,
});
const normal = (reason: string, action: string, message: string): WorkloadEvent => ({
  type: EventType.Normal,
  reason,
  action,
  message,
});

/** Another ElasticWorkload (`rival`) splits the same source first. */
export function sourceClaimed(source: string, rival: string): WorkloadEvent {
  return warning(
    EventReason.SourceClaimed,
    'Claim',
    `Deployment ${source} is already split by ElasticWorkload ${rival}: delete one of the two`,
  );
}

/** The source Deployment does not exist; `onUnits` replicas still run on units. */
export function sourceNotFound(source: string, namespace: string, onUnits: number): WorkloadEvent {
  return warning(
    EventReason.SourceNotFound,
    'Scale',
    onUnits > 0
      ? `Deployment ${source} is gone while ${onUnits} replicas still run on elastic units: re-create it, or delete this ElasticWorkload to remove the units`
      : `Deployment ${source} not found in namespace ${namespace}: no replica is placed until it exists; create it or fix sourceTarget.name`,
  );
}

/** The deletion waited `timeoutSeconds` for the source to take the units' replicas back, and gives up. */
export function foldBackTimedOut(
  ready: number,
  wanted: number,
  timeoutSeconds: number,
  onUnits: number,
): WorkloadEvent {
  return warning(
    EventReason.FoldBackTimedOut,
    'Delete',
    `the source ran ${ready} of ${wanted} replicas ${timeoutSeconds} s after the deletion: removing the units anyway, so ${onUnits} replicas wait as pending pods of the source`,
  );
}

/**
 * Bursting is blocked (status.ts `burstBlocked`): by the source's template (reason BurstBlocked), or by units the
 * providers refuse (ProviderRefusesPodSpec) or whose pods fail (UnitPodsFailing).
 */
export function burstBlockedEvent(
  blocked: { reason: string; message: string },
  violations: readonly SandboxViolation[],
): WorkloadEvent {
  return blocked.reason === ConditionReason.UnsupportedPodSpec
    ? warning(
        EventReason.BurstBlocked,
        'Block',
        `no replica can burst: ${describeViolations([...violations])}`,
      )
    : warning(blocked.reason, 'Block', blocked.message);
}

/** Unit `unit`'s provider has no capacity: it keeps `keeps` ready replicas and the rest overflow until `until`. */
export function spotFallback(unit: string, keeps: number, until: number): WorkloadEvent {
  return warning(
    EventReason.SpotFallback,
    'Scale',
    `unit ${unit} has no provider capacity (its pods failed with InsufficientCapacity): it keeps its ${keeps} ready replicas and the rest overflow into the next unit until ${new Date(until).toISOString()}`,
  );
}

/** The source Deployment was scaled. */
export function scaledSource(source: string, from: number, to: number): WorkloadEvent {
  return normal(
    EventReason.ScaledSource,
    'Scale',
    `scaled source Deployment ${source} from ${from} to ${to}`,
  );
}

/** A unit Deployment was scaled. */
export function scaledUnit(unit: string, deployment: string, from: number, to: number): WorkloadEvent {
  return normal(
    EventReason.ScaledUnit,
    'Scale',
    `scaled unit ${unit} (Deployment ${deployment}) from ${from} to ${to}`,
  );
}

/** A unit Deployment could not be applied. */
export function unitApplyFailed(deployment: string, error: string): WorkloadEvent {
  return warning(
    EventReason.UnitApplyFailed,
    'Apply',
    `could not apply unit Deployment ${deployment}: ${error}`,
  );
}

/** A unit Deployment was deleted. */
export function deletedUnit(deployment: string): WorkloadEvent {
  return normal(EventReason.DeletedUnit, 'Delete', `deleted unit Deployment ${deployment}`);
}

/**
 * Whether a standing Ready=False `reason` is news: told once per transition, the stored Ready reason says
 * whether it was already told (not on every reconcile while it holds).
 */
export function readyReasonIsNew(ew: ElasticWorkload, reason: string): boolean {
  return ew.status?.conditions?.find((c) => c.type === ConditionType.Ready)?.reason !== reason;
}

/** Whether a BurstBlocked `message` is news: an Event each time what blocks bursting changes. */
export function burstBlockedIsNew(ew: ElasticWorkload, message: string): boolean {
  const stored = ew.status?.conditions?.find((c) => c.type === ConditionType.BurstBlocked);
  return stored?.status !== 'True' || stored.message !== message;
}
