/**
 * Status conditions of an ElasticWorkload (metav1.Condition semantics): `lastTransitionTime` moves only when
 * `status` changes, so `kubectl describe` shows how long a condition has held, not when it was last written.
 */
import type { Condition } from './api.ts';

/** The condition types an ElasticWorkload reports. */
export const ConditionType = {
  /**
   * Every placed replica is ready on the source and the units. False, with the blocking reason, when replicas run
   * nowhere because the units cannot run them; a replica left out by a max does not make it False.
   */
  Ready: 'Ready',
  /** Some replicas run on elastic units. */
  Bursting: 'Bursting',
  /**
   * Replicas cannot burst, and the message names each field and unit: the source's pod template breaks the
   * sandbox rules (UnsupportedPodSpec: no unit is created), a unit's provider refuses its template
   * (ProviderRefusesPodSpec: that unit gets no replica), or a unit's pods keep failing on the virtual node
   * (UnitPodsFailing: it keeps its ready replicas for a cooldown).
   */
  BurstBlocked: 'BurstBlocked',
  /**
   * Replicas do not run anywhere: the units cannot run them (UnitsCannotRun), the source and every unit are at
   * their max (AllTargetsAtMax), or unit pods wait for room on a virtual node (NoVirtualNodeCapacity).
   */
  Capped: 'Capped',
} as const;
/** One of {@link ConditionType}. */
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** A condition as the controller decides it; the time is filled in by {@link setCondition}. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'>;

/** metav1.Time: RFC 3339 at second precision, as the apiserver writes it. */
export function kubernetesTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Returns `conditions` with `update` applied (the input is not modified). A condition whose status is
 * unchanged keeps its `lastTransitionTime` and takes the new reason, message and observedGeneration; a new
 * condition or a status change stamps `now`. Other conditions keep their order.
 */
export function setCondition(
  conditions: Condition[] | undefined,
  update: ConditionUpdate,
  now: Date,
): Condition[] {
  const list = conditions ?? [];
  const existing = list.find((c) => c.type === update.type);
  const next: Condition = {
    ...update,
    lastTransitionTime:
      existing && existing.status === update.status ? existing.lastTransitionTime : kubernetesTime(now),
  };
  return existing ? list.map((c) => (c === existing ? next : c)) : [...list, next];
}

/** The condition of that type, if any. */
export function findCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** True when the condition exists with status True. */
export function isConditionTrue(conditions: Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}
