/**
 * Status conditions of an ElasticWorkload (metav1.Condition semantics): `lastTransitionTime` moves only when
 * `status` changes, so `kubectl describe` shows how long a condition has held, not when it was last written.
 */
import type { Condition } from '../../api/elasticworkload.ts';

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
