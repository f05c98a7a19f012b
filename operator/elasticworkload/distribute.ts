/**
 * How many replicas run where (docs/architecture.md#distribution-rules): a pure function of the spec and of what the controller observes,
 * so that the controller stays level-based: every decision is re-derived from the current replica counts of the
 * source and unit Deployments, never from memory of a previous reconcile.
 *
 * Two steps:
 * 1. the *goal*: the placement the policy wants (Static, or WhenUnschedulable's overflow and drain-back);
 * 2. the *step* towards it: scale-ups happen at once, but a target only loses a ready replica once a ready
 *    replica elsewhere makes up for it. So moving replicas between source and units (a lowered max, drain-back,
 *    fold-back on delete, the first take-over of a source) never drops the workload below its ready count,
 *    while a plain scale-in (`replicas` lowered) removes ready replicas at once, last unit first, source last.
 */
import type { ElasticWorkloadSpec } from '../../api/elasticworkload.ts';

/** The parts of the spec the distribution reads. */
export type DistributionSpec = Pick<
  ElasticWorkloadSpec,
  'replicas' | 'sourceTarget' | 'elasticUnit' | 'overflow'
>;

/** Replica counts of one target (a Deployment) as the controller sees them. */
export interface TargetObservation {
  /** Its `spec.replicas` now (0 when the Deployment does not exist). */
  desired: number;
  /** Its `status.readyReplicas`. */
  ready: number;
}

/** What the controller observed. Units that do not exist yet may be left out. */
export interface Observation {
  source: TargetObservation & {
    /**
     * For each source pod that the scheduler marked Unschedulable (PodScheduled=False, reason Unschedulable),
     * how long ago, in seconds. Only read by the WhenUnschedulable policy.
     */
    unschedulableForSeconds?: number[];
  };
  /**
   * Unit Deployments that exist, including those of units since removed from the spec. `capacityLimited`: the
   * unit's provider recently had no capacity for its pods (spot stock ran out): it keeps what is ready and
   * the rest overflows into the next unit (spot fallback); so does a unit whose pods keep failing on the virtual
   * node. `refused`: the unit's provider cannot run its pod template at all: it takes no replica, the next
   * unit does.
   */
  units?: Array<TargetObservation & { name: string; capacityLimited?: boolean; refused?: boolean }>;
  /** The source's pod template breaks the sandbox rules (docs/architecture.md#what-a-sandbox-cannot-run): no replica may go to a unit. */
  blocked?: boolean;
  /** Seconds since replicas last moved to units because of Unschedulable pods (status.lastOverflowTime). */
  secondsSinceLastOverflow?: number;
}

/**
 * Why the goal is what it is:
 * - `Static`: the source gets min(replicas, max), units the rest in order;
 * - `Blocked`: the template breaks the sandbox rules, the source keeps everything up to its max;
 * - `Settled`: WhenUnschedulable with nothing to move;
 * - `WaitingForScheduler`: source pods are Unschedulable, but not yet for `unschedulableSeconds`;
 * - `Overflow`: replicas of pods Unschedulable for too long move to units;
 * - `UnitsFull`: the same, but every unit is at its max: the replicas stay on the source, pending;
 * - `DrainBack`: the source looks healthy, spilled replicas try to return to it;
 * - `DrainBackPaused`: the same, but the last overflow is too recent to try again yet;
 * - `FoldBack`: the ElasticWorkload is being deleted, every replica returns to the source.
 */
export type DistributionDecision =
  | 'Static'
  | 'Blocked'
  | 'Settled'
  | 'WaitingForScheduler'
  | 'Overflow'
  | 'UnitsFull'
  | 'DrainBack'
  | 'DrainBackPaused'
  | 'FoldBack';

/** Replicas of one target: what to set now, and where it converges. */
export interface TargetPlan {
  /** The `spec.replicas` to apply now. */
  replicas: number;
  /** The goal; differs from `replicas` while a ready replica is kept until its replacement is ready. */
  goal: number;
}

/** The plan for one elastic unit. */
export interface UnitPlan extends TargetPlan {
  name: string;
  /** False for a unit Deployment whose unit left the spec: delete it once `replicas` reaches 0. */
  inSpec: boolean;
}

/** The distribution plan the controller applies. */
export interface DistributionPlan {
  source: TargetPlan;
  /** Spec units in spec order, then observed units no longer in the spec. */
  units: UnitPlan[];
  /** Replicas placed nowhere (condition `Capped`): the source and every unit are at their max, or see below. */
  capped: number;
  /**
   * Of `capped`, the replicas the units' max would leave room for but that no unit can take: the template is
   * blocked or refused, or the unit has no capacity or keeps failing. The rest of `capped` is the max's doing.
   */
  unplaceable: number;
  decision: DistributionDecision;
  /** Replicas moved to units this time because source pods were Unschedulable: record lastOverflowTime. */
  overflowed: number;
  /** Reconcile again after this many seconds: a pending decision depends on time, not on a watch event. */
  recheckAfterSeconds?: number;
}

/**
 * Distributes `spec.replicas` over the source and the elastic units.
 *
 * Static: the source gets min(replicas, sourceTarget.max), the rest fills the units in order, each up to its
 * max (a unit without max takes everything left), and what remains is `capped`. Scale-in therefore removes
 * from the last unit first and from the source last.
 *
 * WhenUnschedulable: the source may hold up to min(replicas, max) as Static, but replicas of source pods
 * Unschedulable for longer than `overflow.unschedulableSeconds` move to the units (never taking the source below
 * `sourceTarget.min`). While replicas are spilled, the source's current `spec.replicas` is what it has proven it
 * can hold: new replicas go to units, and scale-in comes out of units first. Once the source has no
 * Unschedulable pod and every pod ready, and `unschedulableSeconds` have passed since the last overflow, the
 * source is offered all its replicas back (DrainBack): the pods that schedule stay, the units shrink only as they
 * become ready, and the rest overflow again after `unschedulableSeconds`.
 */
export function distribute(spec: DistributionSpec, observed: Observation): DistributionPlan {
  const total = spec.replicas;
  const cap = Math.min(total, spec.sourceTarget.max ?? Infinity);
  const units = spec.elasticUnit ?? [];
  if (observed.blocked) {
    return plan(spec, observed, {
      source: cap,
      unitCaps: units.map(() => 0),
      decision: 'Blocked',
      overflowed: 0,
    });
  }
  if ((spec.overflow?.policy ?? 'Static') === 'Static') {
    return plan(spec, observed, { source: cap, decision: 'Static', overflowed: 0 });
  }
  return plan(spec, observed, whenUnschedulable(spec, observed, cap));
}

/**
 * Folds every replica back into the source, for the finalizer of a deleted ElasticWorkload: units shrink only as
 * the source's new pods become ready, so deleting an ElasticWorkload loses no capacity. The source's max no longer
 * applies (it is about to be a plain Deployment again); the controller deletes the units once they reach 0.
 */
export function foldBack(spec: DistributionSpec, observed: Observation): DistributionPlan {
  return plan(spec, observed, {
    source: spec.replicas,
    unitCaps: (spec.elasticUnit ?? []).map(() => 0),
    decision: 'FoldBack',
    overflowed: 0,
  });
}

interface Goal {
  source: number;
  /** Per spec unit, overriding the unit's max (Blocked, FoldBack). */
  unitCaps?: number[];
  decision: DistributionDecision;
  overflowed: number;
  recheckAfterSeconds?: number;
}

function whenUnschedulable(spec: DistributionSpec, observed: Observation, cap: number): Goal {
  const threshold = spec.overflow?.unschedulableSeconds ?? 30;
  const floor = Math.min(spec.sourceTarget.min ?? 0, cap);
  const current = observed.source.desired;
  const onUnits = (observed.units ?? []).reduce((sum, u) => sum + u.desired, 0);
  // Spilled: units hold replicas while the source runs fewer than it may. Then the source's current size is
  // what it proved it can schedule; otherwise it gets its full share, as under Static.
  const spilled = onUnits > 0 && current < cap;
  const base = clamp(spilled ? current : cap, floor, cap);

  const ages = observed.source.unschedulableForSeconds ?? [];
  const soon = ages.filter((a) => a < threshold).map((a) => threshold - a);
  const recheck = (...s: number[]) => {
    const all = [...soon, ...s];
    return all.length ? { recheckAfterSeconds: Math.max(1, Math.ceil(Math.min(...all))) } : {};
  };
  // A scale-down to `base` already removes pending pods first (the ReplicaSet controller deletes unscheduled
  // pods before scheduled ones), so those do not count twice.
  const tooLong = Math.max(0, ages.length - soon.length - Math.max(0, current - base));
  if (tooLong > 0) {
    const source = Math.max(floor, base - tooLong);
    if (source < base) return { source, decision: 'Overflow', overflowed: base - source, ...recheck() };
  }
  if (ages.length > 0) return { source: base, decision: 'WaitingForScheduler', overflowed: 0, ...recheck() };
  // Drain back only from a settled source: every pod scheduled and ready.
  if (!spilled || base === cap || observed.source.ready < current) {
    return { source: base, decision: 'Settled', overflowed: 0 };
  }
  const since = observed.secondsSinceLastOverflow;
  if (since !== undefined && since < threshold) {
    return { source: base, decision: 'DrainBackPaused', overflowed: 0, ...recheck(threshold - since) };
  }
  return { source: cap, decision: 'DrainBack', overflowed: 0 };
}

/** Fills the units in order behind the goal's source count, then steps from the observed counts towards it. */
function plan(spec: DistributionSpec, observed: Observation, goal: Goal): DistributionPlan {
  const total = spec.replicas;
  const cap = Math.min(total, spec.sourceTarget.max ?? Infinity);
  const units = spec.elasticUnit ?? [];
  let rest = total - goal.source;
  const seen = new Map((observed.units ?? []).map((u) => [u.name, u]));
  // What the max alone would leave unplaced, to tell the max's share of `capped` from the units' troubles.
  let byMax = units.reduce((left, u) => left - Math.min(left, u.max ?? Infinity), total - goal.source);
  const unitGoals = units.map((u, i) => {
    const observedUnit = seen.get(u.name);
    const limit = observedUnit?.refused ? 0 : observedUnit?.capacityLimited ? observedUnit.ready : Infinity;
    const n = Math.min(rest, goal.unitCaps?.[i] ?? u.max ?? Infinity, limit);
    rest -= n;
    return n;
  });
  // Spilled replicas that no unit can take stay on the source (pending) rather than vanish.
  let source = goal.source;
  let back = 0;
  if (goal.decision !== 'Blocked' && goal.decision !== 'FoldBack') {
    back = Math.min(rest, Math.max(0, cap - source));
    source += back;
    rest -= back;
    byMax -= Math.min(byMax, Math.max(0, cap - goal.source));
  }
  const overflowed = Math.max(0, goal.overflowed - back);
  const decision = goal.decision === 'Overflow' && overflowed === 0 ? 'UnitsFull' : goal.decision;

  const specNames = new Set(units.map((u) => u.name));
  const targets = [
    { goal: source, ...pick(observed.source) },
    ...units.map((u, i) => ({ goal: unitGoals[i]!, ...pick(seen.get(u.name)) })),
    ...(observed.units ?? []).filter((u) => !specNames.has(u.name)).map((u) => ({ goal: 0, ...pick(u) })),
  ];
  // Capped replicas are placed nowhere: no ready replica is kept for them.
  const replicas = stepTowards(total - rest, targets);
  const orphans = (observed.units ?? []).filter((u) => !specNames.has(u.name));
  return {
    source: { replicas: replicas[0]!, goal: source },
    units: [
      ...units.map((u, i) => ({
        name: u.name,
        inSpec: true,
        goal: unitGoals[i]!,
        replicas: replicas[i + 1]!,
      })),
      ...orphans.map((u, i) => ({
        name: u.name,
        inSpec: false,
        goal: 0,
        replicas: replicas[units.length + 1 + i]!,
      })),
    ],
    capped: rest,
    unplaceable: rest - Math.min(rest, byMax),
    decision,
    overflowed,
    ...(goal.recheckAfterSeconds !== undefined ? { recheckAfterSeconds: goal.recheckAfterSeconds } : {}),
  };
}

/**
 * Replicas to set now for targets listed source first, then units in order. Each target scales up to its goal
 * at once; a shrinking target keeps the ready replicas that would otherwise take the workload below
 * min(ready, placed). Ready replicas above `placed` may go at once (a scale-in); that allowance is handed out
 * in scale-in order: removed units, then the last unit, ..., the source last.
 */
function stepTowards(
  placed: number,
  targets: Array<{ goal: number; desired: number; ready: number }>,
): number[] {
  // A Deployment reports at most spec.replicas ready once a scale-down settles; count no more than that.
  const ready = targets.map((t) => Math.min(t.ready, t.desired));
  let allowance = Math.max(0, ready.reduce((a, b) => a + b, 0) - placed);
  const out = targets.map((t) => t.goal);
  for (let i = targets.length - 1; i >= 0; i--) {
    const t = targets[i]!;
    if (t.goal >= t.desired) continue;
    const readyToLose = Math.max(0, ready[i]! - t.goal);
    const granted = Math.min(allowance, readyToLose);
    allowance -= granted;
    // Not-ready pods go at once (the ReplicaSet controller deletes them first); ready ones only as allowed.
    out[i] = Math.max(t.goal, ready[i]! - granted);
  }
  return out;
}

function pick(t: TargetObservation | undefined): TargetObservation {
  return { desired: t?.desired ?? 0, ready: t?.ready ?? 0 };
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
