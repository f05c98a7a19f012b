/**
 * The status an ElasticWorkload shows: where its replicas are (`kubectl get ew` columns), the scale
 * subresource's replicas and selector, and the Ready / Bursting / BurstBlocked / Capped conditions.
 * Pure: the controller writes it only when it differs from what is stored.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import type { SandboxViolation } from '../shared/sandbox-rules.ts';
import { describeViolations } from '../shared/sandbox-rules.ts';
import type { ElasticWorkload, ElasticWorkloadStatus } from './api.ts';
import { ConditionType, kubernetesTime, setCondition } from './conditions.ts';
import type { DistributionPlan } from './distribute.ts';
import { stableJson, workloadSelector } from './units.ts';

/** Everything the status is derived from. */
export interface StatusInputs {
  ew: ElasticWorkload;
  source: V1Deployment | undefined;
  units: Map<string, V1Deployment>;
  plan: DistributionPlan | undefined;
  violations: SandboxViolation[];
  now: Date;
}

/** The status for `inputs`, keeping condition transition times of the stored status. */
export function elasticWorkloadStatus({
  ew,
  source,
  units,
  plan,
  violations,
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
      'SourceNotFound',
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

  set(
    ConditionType.Ready,
    ready >= placed && placed === ew.spec.replicas - plan.capped,
    ready >= placed ? 'AllReplicasReady' : 'ReplicasNotReady',
    `${ready} of ${placed} placed replicas are ready (${plan.source.replicas} on the source, ${onUnits} on elastic units)`,
  );
  set(
    ConditionType.Bursting,
    onUnits > 0,
    onUnits > 0 ? 'ReplicasOnUnits' : 'AllOnSource',
    onUnits > 0
      ? `${onUnits} of ${placed} replicas run on elastic units (${plan.decision})`
      : `every replica runs on the source (${plan.decision})`,
  );
  set(
    ConditionType.BurstBlocked,
    violations.length > 0,
    violations.length > 0 ? 'UnsupportedPodSpec' : 'NoUnsupportedFeatures',
    violations.length > 0
      ? `the source's pod template uses what a sandbox cannot run, so no unit is created and the source keeps up to its max: ${describeViolations(violations)}`
      : 'the pod template can run in a sandbox',
  );
  set(
    ConditionType.Capped,
    plan.capped > 0,
    plan.capped > 0 ? 'AllTargetsAtMax' : 'AllPlaced',
    plan.capped > 0
      ? `${plan.capped} replicas are not placed: the source and every unit are at their max; raise a max or add an unbounded last unit`
      : 'every replica is placed',
  );
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
