/** Shared fixtures of the distribution tests: specs as users write them, observations, plan summaries. */
import {
  ElasticWorkloadSpecSchema,
  type ElasticWorkloadSpec,
  type OverflowPolicy,
} from '../../api/elasticworkload.ts';
import type { DistributionPlan, Observation } from './distribute.ts';

/** A spec as a user writes it, defaults applied by the real schema. */
export function spec(o: {
  replicas: number;
  min?: number;
  max?: number;
  units?: Array<[name: string, max?: number]>;
  policy?: OverflowPolicy;
}): ElasticWorkloadSpec {
  return ElasticWorkloadSpecSchema.parse({
    sourceTarget: { kind: 'Deployment', name: 'web', min: o.min, max: o.max },
    replicas: o.replicas,
    elasticUnit: (o.units ?? [['burst']]).map(([name, max]) => ({ name, max })),
    overflow: { policy: o.policy },
  });
}

/** An observation: the source as [desired, ready], units as [name, desired, ready], `ages` of Unschedulable source pods. */
export function seen(
  source: [number, number],
  units: Array<[string, number, number]> = [],
  extra: Omit<Observation, 'source' | 'units'> & { ages?: number[] } = {},
): Observation {
  const { ages, ...rest } = extra;
  return {
    source: { desired: source[0], ready: source[1], unschedulableForSeconds: ages },
    units: units.map(([name, desired, ready]) => ({ name, desired, ready })),
    ...rest,
  };
}

/** The parts of a plan a test row checks; `summary` picks the same keys from the real plan. */
export interface Expected {
  source: number;
  units: number[];
  sourceGoal?: number;
  unitGoals?: number[];
  capped?: number;
  decision?: DistributionPlan['decision'];
  overflowed?: number;
  recheckAfterSeconds?: number;
}

/** The fields of `plan` named in `expected`, so that a row states only what it is about. */
export function summary(plan: DistributionPlan, expected: Expected): Expected {
  const all: Required<Expected> = {
    source: plan.source.replicas,
    units: plan.units.map((u) => u.replicas),
    sourceGoal: plan.source.goal,
    unitGoals: plan.units.map((u) => u.goal),
    capped: plan.capped,
    decision: plan.decision,
    overflowed: plan.overflowed,
    recheckAfterSeconds: plan.recheckAfterSeconds as number,
  };
  return Object.fromEntries(
    Object.keys(expected).map((k) => [k, all[k as keyof Expected]]),
  ) as unknown as Expected;
}

/** Nothing exists yet: a fresh ElasticWorkload. */
export const nothing = seen([0, 0]);
/** ACK's example: a spot unit of at most 4, then an unbounded on-demand unit. */
export const twoUnits: Array<[string, number?]> = [['spot', 4], ['on-demand']];
