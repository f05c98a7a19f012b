/**
 * The status an ElasticWorkload shows: where its replicas are (`kubectl get ew` columns), the scale
 * subresource's replicas and selector, and the Ready / Bursting / BurstBlocked / Capped conditions.
 * Pure: the controller writes it only when it differs from what is stored.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import type { SandboxViolation } from '../../api/sandbox-rules.ts';
import { describeViolations } from '../../api/sandbox-rules.ts';
import type { ElasticWorkload, ElasticWorkloadStatus } from '../../api/elasticworkload.ts';
import { ConditionType } from '../../api/elasticworkload.ts';
import { kubernetesTime, setCondition } from './conditions.ts';
import type { DistributionPlan } from './distribute.ts';
import type { TemplateRefusal, UnitTrouble } from './refusals.ts';
import { stableJson, workloadSelector } from './units.ts';
import { ConditionReason } from '../../api/reasons.ts';

/** Unit pods the scheduler could not place (PodScheduled=False, reason Unschedulable). */
export interface UnschedulableUnitPods {
  /** How many. */
  pods: number;
  /** The scheduler's message on one of them ("0/3 nodes are available: 1 Too many pods..."). */
  message?: string;
}

/** Everything the status is derived from. */
export interface StatusInputs {
  ew: ElasticWorkload;
  source: V1Deployment | undefined;
  units: Map<string, V1Deployment>;
  plan: DistributionPlan | undefined;
  violations: SandboxViolation[];
  /** Units whose pod template every provider they may land on refuses, by unit name. */
  refusals?: ReadonlyMap<string, TemplateRefusal>;
  /** Units held at their ready replicas because their pods failed on the node, by unit name. */
  troubles?: ReadonlyMap<string, UnitTrouble>;
  unschedulable?: UnschedulableUnitPods;
  now: Date;
}

/** The BurstBlocked condition's reason and message: the source's template, then refused units, then failing ones. */
export function burstBlocked(
  sourceName: string,
  violations: SandboxViolation[],
  refusals: ReadonlyMap<string, TemplateRefusal>,
  troubles: ReadonlyMap<string, UnitTrouble>,
): { blocked: boolean; reason: string; message: string } {
  const parts: string[] = [];
  let reason: string | undefined;
  if (violations.length > 0) {
    reason = ConditionReason.UnsupportedPodSpec;
    parts.push(
      `the source's pod template uses what a sandbox cannot run, so no unit is created and the source keeps up to its max: ${describeViolations(violations)}`,
    );
  }
  for (const [unit, r] of refusals) {
    reason ??= ConditionReason.ProviderRefusesPodSpec;
    parts.push(
      `unit ${unit} gets no replica: provider ${r.provider} cannot run Deployment ${sourceName}'s pod template: ${r.causes.map((c) => `${c.path}: ${c.message}`).join('; ')}`,
    );
  }
  for (const [unit, t] of troubles) {
    if (t.kind !== 'PodsFailing') continue;
    reason ??= ConditionReason.UnitPodsFailing;
    parts.push(
      `unit ${unit} keeps only its ready replicas until ${kubernetesTime(new Date(t.until))}: ${t.failed} of its pods failed on the virtual node (last: ${t.reason}: ${t.message})`,
    );
  }
  return reason
    ? { blocked: true, reason, message: parts.join('. ') }
    : {
        blocked: false,
        reason: ConditionReason.NoUnsupportedFeatures,
        message: 'the pod template can run in a sandbox',
      };
}

/**
 * The Capped condition: replicas that do not run anywhere. The units cannot take them (refused, failing, no
 * capacity), every target is at its max, or unit pods wait for room on a virtual node; the reason names the
 * first of these that holds, the message all.
 */
export function cappedCondition(
  plan: Pick<DistributionPlan, 'capped' | 'unplaceable'>,
  unschedulable: UnschedulableUnitPods,
): { capped: boolean; reason: string; message: string } {
  const byMax = plan.capped - plan.unplaceable;
  const parts: string[] = [];
  let reason: string | undefined;
  if (plan.unplaceable > 0) {
    reason = ConditionReason.UnitsCannotRun;
    parts.push(
      `${plan.unplaceable} replicas are not placed: the units that would take them cannot run them (see BurstBlocked, and the Events)`,
    );
  }
  if (byMax > 0) {
    reason ??= ConditionReason.AllTargetsAtMax;
    parts.push(
      `${byMax} replicas are not placed: the source and every unit are at their max; raise a max or add an unbounded last unit`,
    );
  }
  if (unschedulable.pods > 0) {
    reason ??= ConditionReason.NoVirtualNodeCapacity;
    parts.push(
      `${unschedulable.pods} unit pods are Pending: the scheduler finds no room for them${unschedulable.message ? ` (${unschedulable.message})` : ''}`,
    );
  }
  return reason
    ? { capped: true, reason, message: parts.join('; ') }
    : { capped: false, reason: ConditionReason.AllPlaced, message: 'every replica is placed' };
}

/** The status for `inputs`, keeping condition transition times of the stored status. */
export function elasticWorkloadStatus({
  ew,
  source,
  units,
  plan,
  violations,
  refusals = new Map(),
  troubles = new Map(),
  unschedulable = { pods: 0 },
  now,
}: StatusInputs): ElasticWorkloadStatus {
  const gen = ew.metadata.generation;
  let conditions = ew.status?.conditions;
  const set = (type: string, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      {
        type,
        status: ok ? 'True' : 'False',
        reason,
        message,
        ...(gen === undefined ? {} : { observedGeneration: gen }),
      },
      now,
    );
  };
  if (!source || !plan) {
    set(
      ConditionType.Ready,
      false,
      ConditionReason.SourceNotFound,
      `Deployment ${ew.spec.sourceTarget.name} not found in namespace ${ew.metadata.namespace}: create it or fix sourceTarget.name`,
    );
    return { ...ew.status, observedGeneration: gen, conditions };
  }
  const unitStatus = (ew.spec.elasticUnit ?? []).map((u) => ({
    name: u.name,
    desiredReplicas: plan.units.find((p) => p.name === u.name)?.replicas ?? 0,
    readyReplicas: units.get(u.name)?.status?.readyReplicas ?? 0,
  }));
  const onUnits = unitStatus.reduce((s, u) => s + u.desiredReplicas, 0);
  const ready =
    (source.status?.readyReplicas ?? 0) +
    [...units.values()].reduce((s, d) => s + (d.status?.readyReplicas ?? 0), 0);
  const pods =
    (source.status?.replicas ?? 0) + [...units.values()].reduce((s, d) => s + (d.status?.replicas ?? 0), 0);
  const placed = plan.source.replicas + onUnits;

  // Replicas left out by a max the user chose do not make the workload unready; replicas the units cannot
  // run (a refused template, no capacity, failing pods) do.
  const readyMessage = `${ready} of ${placed} placed replicas are ready (${plan.source.replicas} on the source, ${onUnits} on elastic units)`;
  const blocked = burstBlocked(ew.spec.sourceTarget.name, violations, refusals, troubles);
  if (plan.unplaceable > 0) {
    // The reason says what stops them, so that `kubectl get ew` (STATUS column) shows it.
    set(
      ConditionType.Ready,
      false,
      blocked.blocked ? blocked.reason : ConditionReason.UnitsWithoutCapacity,
      `${plan.unplaceable} of ${ew.spec.replicas} replicas run nowhere: ${blocked.blocked ? blocked.message : 'the units that would take them have no provider capacity'}; ${readyMessage}`,
    );
  } else {
    set(
      ConditionType.Ready,
      ready >= placed && placed === ew.spec.replicas - plan.capped,
      ready >= placed ? 'AllReplicasReady' : ConditionReason.ReplicasNotReady,
      readyMessage,
    );
  }
  set(
    ConditionType.Bursting,
    onUnits > 0,
    onUnits > 0 ? 'ReplicasOnUnits' : ConditionReason.AllOnSource,
    onUnits > 0
      ? `${onUnits} of ${placed} replicas run on elastic units (${plan.decision})`
      : `every replica runs on the source (${plan.decision})`,
  );
  set(ConditionType.BurstBlocked, blocked.blocked, blocked.reason, blocked.message);
  const capped = cappedCondition(plan, unschedulable);
  set(ConditionType.Capped, capped.capped, capped.reason, capped.message);
  return {
    observedGeneration: gen,
    replicas: pods,
    readyReplicas: ready,
    selector: workloadSelector(source),
    sourceTarget: { desiredReplicas: plan.source.replicas, readyReplicas: source.status?.readyReplicas ?? 0 },
    elasticUnitReplicas: onUnits,
    elasticUnitsStatus: unitStatus,
    cappedReplicas: plan.capped,
    ...(plan.overflowed > 0
      ? { lastOverflowTime: kubernetesTime(now) }
      : ew.status?.lastOverflowTime
        ? { lastOverflowTime: ew.status.lastOverflowTime }
        : {}),
    conditions,
  };
}

/** Whether two statuses show the same thing (key order and undefined fields do not matter). */
export function sameStatus(
  a: ElasticWorkloadStatus | undefined,
  b: ElasticWorkloadStatus | undefined,
): boolean {
  return stableJson(a ?? {}) === stableJson(b ?? {});
}
