/**
 * What a reconcile reads from the caches, turned into the pure `distribute`/`foldBack` input: the units that
 * exist, the source's Unschedulable pods, and per unit whether it is held back (refused template, failing or
 * out-of-capacity pods). Pure functions of cached objects and the time.
 */
import type { V1Deployment, V1Node, V1Pod } from '@kubernetes/client-node';
import type { SandboxViolation } from '../../api/sandbox-rules.ts';
import { LABEL_ELASTIC_WORKLOAD, LABEL_UNIT } from '../../api/labels.ts';
import type { ElasticWorkload } from '../../api/elasticworkload.ts';
import type { DistributionPlan, Observation } from './distribute.ts';
import {
  failedUnitPod,
  templateRefusal,
  type FailedUnitPod,
  type TemplateRefusal,
  type UnitTrouble,
} from './refusals.ts';
import { unitPodTemplate } from './units.ts';

/** What one reconcile saw of an ElasticWorkload whose source exists. */
export interface Seen {
  observed: Observation;
  /** What in the source's template no sandbox can run. */
  violations: SandboxViolation[];
  /** Units whose pod template every provider they may land on refuses (none while deleting). */
  refusals: Map<string, TemplateRefusal>;
  /** Units held at their ready replicas because their pods failed on the node. */
  troubles: Map<string, UnitTrouble>;
}

/** The unit Deployments of `ew` among `deployments` (its namespace's), by unit name. */
export function ownedUnits(
  ew: ElasticWorkload,
  deployments: readonly V1Deployment[],
): Map<string, V1Deployment> {
  const out = new Map<string, V1Deployment>();
  for (const d of deployments) {
    const owned = d.metadata?.ownerReferences?.some((o) => o.uid === ew.metadata.uid && o.controller);
    const unit = d.metadata?.labels?.[LABEL_UNIT];
    if (owned && unit && d.metadata?.labels?.[LABEL_ELASTIC_WORKLOAD] === ew.metadata.name) out.set(unit, d);
  }
  return out;
}

/** Seconds each Unschedulable pod of `source` among `pending` has been waiting (unit pods excluded). */
export function unschedulableAges(source: V1Deployment, pending: readonly V1Pod[], now: Date): number[] {
  const match = source.spec?.selector?.matchLabels ?? {};
  return pending
    .filter((p) => {
      const labels = p.metadata?.labels ?? {};
      return !labels[LABEL_UNIT] && Object.entries(match).every(([k, v]) => labels[k] === v);
    })
    .flatMap((p) => {
      const c = p.status?.conditions?.find((x) => x.type === 'PodScheduled');
      if (c?.status !== 'False' || c.reason !== 'Unschedulable') return [];
      const since = c.lastTransitionTime ? new Date(c.lastTransitionTime).getTime() : now.getTime();
      return [Math.max(0, (now.getTime() - since) / 1000)];
    });
}

/** The spec units of `ew` whose pod template no virtual node they may land on can run, by unit name. */
export function unitRefusals(
  ew: ElasticWorkload,
  source: V1Deployment,
  virtualNodes: readonly V1Node[],
): Map<string, TemplateRefusal> {
  const out = new Map<string, TemplateRefusal>();
  if (virtualNodes.length === 0) return out;
  for (const unit of ew.spec.elasticUnit ?? []) {
    const refusal = templateRefusal(unitPodTemplate(ew, source, unit), virtualNodes);
    if (refusal) out.set(unit.name, refusal);
  }
  return out;
}

/**
 * The Failed pods of `ewName`'s units among `failed` that failed on the node: those within `cooldownMs` of `now`
 * (they hold their unit back) and the pods of those older (to delete).
 */
export function failedUnitPods(
  failed: readonly V1Pod[],
  ewName: string,
  cooldownMs: number,
  now: Date,
): { recent: FailedUnitPod[]; expired: V1Pod[] } {
  const recent: FailedUnitPod[] = [];
  const expired: V1Pod[] = [];
  for (const p of failed) {
    const f = failedUnitPod(p, ewName, now);
    if (!f) continue;
    if (f.at + cooldownMs <= now.getTime()) expired.push(p);
    else recent.push(f);
  }
  return { recent, expired };
}

/** The observation `distribute`/`foldBack` plan from. */
export function observation(o: {
  ew: ElasticWorkload;
  source: V1Deployment;
  units: ReadonlyMap<string, V1Deployment>;
  unschedulableForSeconds: number[];
  violations: readonly SandboxViolation[];
  refusals: ReadonlyMap<string, TemplateRefusal>;
  troubles: ReadonlyMap<string, UnitTrouble>;
  now: Date;
}): Observation {
  const { ew, source, units, refusals, troubles, now } = o;
  const lastOverflow = ew.status?.lastOverflowTime
    ? new Date(ew.status.lastOverflowTime).getTime()
    : undefined;
  return {
    source: {
      desired: source.spec?.replicas ?? 1,
      ready: source.status?.readyReplicas ?? 0,
      unschedulableForSeconds: o.unschedulableForSeconds,
    },
    units: [
      ...[...units].map(([unit, d]) => ({
        name: unit,
        desired: d.spec?.replicas ?? 0,
        ready: d.status?.readyReplicas ?? 0,
        capacityLimited: troubles.has(unit),
        refused: refusals.has(unit),
      })),
      ...[...refusals.keys()]
        .filter((unit) => !units.has(unit))
        .map((unit) => ({ name: unit, desired: 0, ready: 0, refused: true })),
    ],
    blocked: o.violations.length > 0,
    ...(lastOverflow === undefined
      ? {}
      : { secondsSinceLastOverflow: (now.getTime() - lastOverflow) / 1000 }),
  };
}

/** How long a deletion may still wait for the fold-back (negative: past `foldBackTimeoutSeconds`). */
export function foldBackLeftMs(ew: ElasticWorkload, now: Date): number {
  const since = now.getTime() - new Date(ew.metadata.deletionTimestamp!).getTime();
  return (ew.spec.foldBackTimeoutSeconds ?? 600) * 1000 - since;
}

/**
 * When to reconcile again though nothing changes: the plan's own recheck, the end of the fold-back timeout, the
 * end of each unit's cooldown; undefined: only on a change.
 */
export function requeueAfterMs(
  plan: Pick<DistributionPlan, 'recheckAfterSeconds'>,
  foldBackLeft: number | undefined,
  troubles: ReadonlyMap<string, UnitTrouble>,
  now: Date,
): number | undefined {
  const waits = [
    ...(plan.recheckAfterSeconds ? [plan.recheckAfterSeconds * 1000] : []),
    ...(foldBackLeft !== undefined ? [foldBackLeft + 100] : []),
    ...[...troubles.values()].map(({ until }) => until - now.getTime() + 1000),
  ];
  return waits.length > 0 ? Math.min(...waits) : undefined;
}
