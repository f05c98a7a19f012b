import { describe, expect, it } from 'vitest';
import type { ElasticWorkloadSpec } from '../../api/elasticworkload.ts';
import { distribute, foldBack, type DistributionPlan, type Observation } from './distribute.ts';
import { nothing, seen, spec, summary, twoUnits, type Expected } from './distribute.fixtures.ts';

describe('distribute, Static', () => {
  it.each<[string, ElasticWorkloadSpec, Observation, Expected]>([
    [
      'ACK example: min 2, max 4, replicas 6, one unit',
      spec({ replicas: 6, min: 2, max: 4 }),
      nothing,
      { source: 4, units: [2], capped: 0, decision: 'Static' },
    ],
    [
      'kubectl scale to 10',
      spec({ replicas: 10, max: 4 }),
      seen([4, 4], [['burst', 2, 2]]),
      { source: 4, units: [6] },
    ],
    [
      'scale to 3 takes the unit to 0 and the source to 3 at once',
      spec({ replicas: 3, max: 4 }),
      seen([4, 4], [['burst', 6, 6]]),
      { source: 3, units: [0] },
    ],
    [
      'zero replicas',
      spec({ replicas: 0, max: 4, units: twoUnits }),
      seen(
        [4, 4],
        [
          ['spot', 4, 4],
          ['on-demand', 2, 2],
        ],
      ),
      { source: 0, units: [0, 0], capped: 0 },
    ],
    [
      'replicas below max stay on the source',
      spec({ replicas: 3, min: 1, max: 4 }),
      nothing,
      { source: 3, units: [0] },
    ],
    [
      'replicas equal to max stay on the source',
      spec({ replicas: 4, max: 4 }),
      nothing,
      { source: 4, units: [0] },
    ],
    [
      'max 0 sends everything to the units',
      spec({ replicas: 5, max: 0 }),
      nothing,
      { source: 0, units: [5] },
    ],
    ['no max keeps everything on the source', spec({ replicas: 7 }), nothing, { source: 7, units: [0] }],
    [
      'units fill in order; the last one without max is unbounded',
      spec({ replicas: 30, max: 4, units: twoUnits }),
      nothing,
      { source: 4, units: [4, 22], capped: 0 },
    ],
    [
      'a unit without max takes all that is left, even in the middle',
      spec({ replicas: 10, max: 4, units: [['a'], ['b', 3]] }),
      nothing,
      { source: 4, units: [6, 0] },
    ],
    [
      'beyond every max the rest is capped',
      spec({
        replicas: 9,
        max: 2,
        units: [
          ['a', 1],
          ['b', 2],
        ],
      }),
      nothing,
      { source: 2, units: [1, 2], capped: 4 },
    ],
    [
      'no units: the rest is capped',
      spec({ replicas: 5, max: 3, units: [] }),
      nothing,
      { source: 3, units: [], capped: 2 },
    ],
    [
      'scale-in removes from the last unit first',
      spec({ replicas: 7, max: 4, units: twoUnits }),
      seen(
        [4, 4],
        [
          ['spot', 4, 4],
          ['on-demand', 2, 2],
        ],
      ),
      { source: 4, units: [3, 0] },
    ],
    [
      'scale-in reaches the source last',
      spec({ replicas: 2, max: 4, units: twoUnits }),
      seen(
        [4, 4],
        [
          ['spot', 4, 4],
          ['on-demand', 2, 2],
        ],
      ),
      { source: 2, units: [0, 0] },
    ],
    [
      'taking over a source above max keeps its ready replicas until the unit is ready',
      spec({ replicas: 10, max: 4 }),
      seen([10, 10]),
      { source: 10, sourceGoal: 4, units: [6] },
    ],
    [
      '... and gives them up as unit pods become ready',
      spec({ replicas: 10, max: 4 }),
      seen([10, 10], [['burst', 6, 3]]),
      { source: 7, sourceGoal: 4, units: [6] },
    ],
    [
      'source pods that are not ready go at once',
      spec({ replicas: 10, max: 4 }),
      seen([10, 5], [['burst', 6, 0]]),
      { source: 5, units: [6] },
    ],
    [
      'a lowered unit max moves replicas to the next unit, keeping ready ones until replaced',
      spec({ replicas: 10, max: 4, units: [['spot', 2], ['on-demand']] }),
      seen(
        [4, 4],
        [
          ['spot', 4, 4],
          ['on-demand', 2, 2],
        ],
      ),
      { source: 4, units: [4, 4], unitGoals: [2, 4] },
    ],
  ])('%s', (_name, s, observed, expected) => {
    expect(summary(distribute(s, observed), expected)).toEqual(expected);
  });

  it('drains a unit removed from the spec into the remaining ones, then marks it for deletion', () => {
    const s = spec({ replicas: 8, max: 4, units: [['a']] });
    const first = distribute(
      s,
      seen(
        [4, 4],
        [
          ['a', 2, 2],
          ['old', 2, 2],
        ],
      ),
    );
    expect(first.units).toEqual([
      { name: 'a', inSpec: true, replicas: 4, goal: 4 },
      { name: 'old', inSpec: false, replicas: 2, goal: 0 },
    ]);
    const then = distribute(
      s,
      seen(
        [4, 4],
        [
          ['a', 4, 4],
          ['old', 2, 2],
        ],
      ),
    );
    expect(then.units[1]).toEqual({ name: 'old', inSpec: false, replicas: 0, goal: 0 });
  });
});

describe('distribute, blocked template', () => {
  it.each<[string, ElasticWorkloadSpec, Observation, Expected]>([
    [
      'no unit gets a replica; the source keeps up to max; the rest is capped',
      spec({ replicas: 6, max: 4 }),
      seen([0, 0], [], { blocked: true }),
      { source: 4, units: [0], capped: 2, decision: 'Blocked' },
    ],
    [
      'without max the source keeps everything',
      spec({ replicas: 6 }),
      seen([0, 0], [], { blocked: true }),
      { source: 6, units: [0], capped: 0 },
    ],
    [
      'existing unit pods go at once: nothing replaces them',
      spec({ replicas: 6, max: 4 }),
      seen([4, 4], [['burst', 2, 2]], { blocked: true }),
      { source: 4, units: [0] },
    ],
    [
      'also under WhenUnschedulable',
      spec({ replicas: 6, min: 2, max: 4, policy: 'WhenUnschedulable' }),
      seen([4, 2], [], { blocked: true, ages: [100, 100] }),
      { source: 4, units: [0], capped: 2, decision: 'Blocked' },
    ],
  ])('%s', (_name, s, observed, expected) => {
    expect(summary(distribute(s, observed), expected)).toEqual(expected);
  });
});
describe('foldBack (ElasticWorkload deleted)', () => {
  it.each<[string, ElasticWorkloadSpec, Observation, Expected]>([
    [
      'the source scales to every replica, beyond its max; units wait until it is ready',
      spec({ replicas: 10, max: 4 }),
      seen([4, 4], [['burst', 6, 6]]),
      { source: 10, units: [6], unitGoals: [0], capped: 0, decision: 'FoldBack' },
    ],
    [
      'units go as source pods become ready',
      spec({ replicas: 10, max: 4 }),
      seen([10, 8], [['burst', 6, 6]]),
      { source: 10, units: [2] },
    ],
    [
      'once the source is ready, every unit is at 0',
      spec({ replicas: 10, max: 4 }),
      seen([10, 10], [['burst', 2, 2]]),
      { source: 10, units: [0] },
    ],
  ])('%s', (_name, s, observed, expected) => {
    expect(summary(foldBack(s, observed), expected)).toEqual(expected);
  });
});

describe('spot fallback', () => {
  const spec = {
    replicas: 10,
    sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', min: 0, max: 2 },
    elasticUnit: [{ name: 'spot', max: 6 }, { name: 'on-demand' }],
    overflow: { policy: 'Static' as const, unschedulableSeconds: 30 },
  };

  it.each<[string, { ready: number; limited: boolean }, [number, number, number]]>([
    ['spot has stock: it takes its max', { ready: 6, limited: false }, [2, 6, 2]],
    ['spot ran out with 3 ready: it keeps 3, the rest moves on', { ready: 3, limited: true }, [2, 3, 5]],
    ['spot ran out with none ready: everything goes on-demand', { ready: 0, limited: true }, [2, 0, 8]],
  ])('%s', (_name, spot, [source, spotReplicas, onDemand]) => {
    const plan = distribute(spec, {
      source: { desired: 2, ready: 2 },
      units: [
        { name: 'spot', desired: 6, ready: spot.ready, capacityLimited: spot.limited },
        { name: 'on-demand', desired: 2, ready: 2 },
      ],
    });
    expect(plan.source.goal).toBe(source);
    expect(plan.units.map((u) => u.goal)).toEqual([spotReplicas, onDemand]);
    expect(plan.capped).toBe(0);
  });
});

describe('units that cannot run their replicas', () => {
  const webUnits = (refused: { spot?: boolean; onDemand?: boolean }) => [
    { name: 'spot', desired: 0, ready: 0, refused: refused.spot },
    { name: 'on-demand', desired: 0, ready: 0, refused: refused.onDemand },
  ];
  it.each<[string, ElasticWorkloadSpec, Observation, Partial<DistributionPlan> & { unitGoals?: number[] }]>([
    [
      'examples/web with a provider refusing both units: 2 replicas run nowhere, not for the max',
      spec({ replicas: 6, min: 2, max: 4, units: twoUnits }),
      { source: { desired: 4, ready: 4 }, units: webUnits({ spot: true, onDemand: true }) },
      { unitGoals: [0, 0], capped: 2, unplaceable: 2 },
    ],
    [
      'only the spot unit refused: on-demand takes its share',
      spec({ replicas: 6, min: 2, max: 4, units: twoUnits }),
      { source: { desired: 4, ready: 4 }, units: webUnits({ spot: true }) },
      { unitGoals: [0, 2], capped: 0, unplaceable: 0 },
    ],
    [
      'source template blocked: every replica beyond the max is the block’s doing',
      spec({ replicas: 6, max: 4 }),
      seen([4, 4], [], { blocked: true }),
      { unitGoals: [0], capped: 2, unplaceable: 2 },
    ],
    [
      'every target at its max: the max’s doing only',
      spec({ replicas: 10, max: 2, units: [['burst', 3]] }),
      nothing,
      { unitGoals: [3], capped: 5, unplaceable: 0 },
    ],
    [
      'a refused unit and a max: each share named',
      spec({
        replicas: 10,
        max: 2,
        units: [
          ['spot', 3],
          ['on-demand', 2],
        ],
      }),
      { source: { desired: 2, ready: 2 }, units: webUnits({ spot: true }) },
      { unitGoals: [0, 2], capped: 6, unplaceable: 3 },
    ],
    [
      'the last unit without capacity and nothing ready: unplaceable',
      spec({ replicas: 6, max: 4, units: [['spot']] }),
      {
        source: { desired: 4, ready: 4 },
        units: [{ name: 'spot', desired: 2, ready: 0, capacityLimited: true }],
      },
      { unitGoals: [0], capped: 2, unplaceable: 2 },
    ],
  ])('%s', (_name, s, observed, expected) => {
    const plan = distribute(s, observed);
    const { unitGoals, ...rest } = expected;
    expect(plan).toMatchObject(rest);
    if (unitGoals) expect(plan.units.map((u) => u.goal)).toEqual(unitGoals);
  });
});
