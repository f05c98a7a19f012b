import { describe, expect, it } from 'vitest';
import type { ElasticWorkloadSpec } from '../../api/elasticworkload.ts';
import { distribute, type Observation } from './distribute.ts';
import { seen, spec, summary, type Expected } from './distribute.fixtures.ts';

describe('distribute, WhenUnschedulable', () => {
  const burst = (o: Parameters<typeof spec>[0]) => spec({ policy: 'WhenUnschedulable', ...o });
  it.each<[string, ElasticWorkloadSpec, Observation, Expected]>([
    [
      'while source pods schedule, every replica up to max stays on the source',
      burst({ replicas: 8, min: 2, max: 10 }),
      seen([8, 8]),
      { source: 8, units: [0], decision: 'Settled' },
    ],
    [
      'replicas above max overflow at once, as under Static',
      burst({ replicas: 6, min: 2, max: 4 }),
      seen([4, 4]),
      { source: 4, units: [2], decision: 'Settled' },
    ],
    [
      'pods Unschedulable for less than unschedulableSeconds: wait, and look again when the first reaches it',
      burst({ replicas: 8, max: 10 }),
      seen([8, 6], [], { ages: [10, 20] }),
      { source: 8, units: [0], decision: 'WaitingForScheduler', recheckAfterSeconds: 10 },
    ],
    [
      'pods Unschedulable for too long move to the first unit',
      burst({ replicas: 8, max: 10 }),
      seen([8, 5], [], { ages: [40, 35, 5] }),
      { source: 6, units: [2], decision: 'Overflow', overflowed: 2, recheckAfterSeconds: 25 },
    ],
    [
      'overflow never takes the source below min',
      burst({ replicas: 8, min: 5, max: 10 }),
      seen([8, 4], [], { ages: [40, 40, 40, 40] }),
      { source: 5, units: [3], overflowed: 3 },
    ],
    [
      'a source at min keeps its pending pods',
      burst({ replicas: 8, min: 5, max: 10 }),
      seen([5, 4], [['burst', 3, 3]], { ages: [40] }),
      { source: 5, units: [3], decision: 'WaitingForScheduler' },
    ],
    [
      'overflow fills units in order within their max',
      burst({ replicas: 8, max: 10, units: [['a', 1], ['b']] }),
      seen([8, 5], [], { ages: [40, 40, 40] }),
      { source: 5, units: [1, 2] },
    ],
    [
      'with every unit full, overflowing replicas stay on the source',
      burst({ replicas: 8, max: 8, units: [['a', 2]] }),
      seen([6, 4], [['a', 2, 2]], { ages: [40, 40] }),
      { source: 6, units: [2], decision: 'UnitsFull', overflowed: 0 },
    ],
    [
      'while spilled, new replicas go to the units',
      burst({ replicas: 10, max: 10 }),
      seen([6, 6], [['burst', 2, 2]], { secondsSinceLastOverflow: 5 }),
      { source: 6, units: [4], decision: 'DrainBackPaused', recheckAfterSeconds: 25 },
    ],
    [
      'while spilled, scale-in comes out of the units first',
      burst({ replicas: 7, max: 10 }),
      seen([6, 6], [['burst', 2, 2]], { secondsSinceLastOverflow: 5 }),
      { source: 6, units: [1] },
    ],
    [
      'drain-back: a settled source is offered its replicas back, the unit stays until they are ready',
      burst({ replicas: 8, max: 10 }),
      seen([6, 6], [['burst', 2, 2]], { secondsSinceLastOverflow: 30 }),
      { source: 8, units: [2], unitGoals: [0], decision: 'DrainBack' },
    ],
    [
      'drain-back goes on: the unit shrinks as source pods become ready',
      burst({ replicas: 8, max: 10 }),
      seen([8, 7], [['burst', 2, 2]]),
      { source: 8, units: [1], decision: 'Settled' },
    ],
    [
      'drain-back that does not fit overflows again; the unit never went below the ready count',
      burst({ replicas: 8, max: 10 }),
      seen([8, 6], [['burst', 2, 2]], { ages: [31, 31] }),
      { source: 6, units: [2], decision: 'Overflow', overflowed: 2 },
    ],
    [
      'no drain-back before every source pod is ready',
      burst({ replicas: 8, max: 10 }),
      seen([6, 5], [['burst', 2, 2]]),
      { source: 6, units: [2], decision: 'Settled' },
    ],
    [
      'drain-back keeps the replicas above max on the units',
      burst({ replicas: 14, max: 10 }),
      seen([6, 6], [['burst', 8, 8]]),
      { source: 10, units: [8], unitGoals: [4], decision: 'DrainBack' },
    ],
    [
      'zero replicas',
      burst({ replicas: 0, min: 2, max: 10 }),
      seen([6, 6], [['burst', 2, 2]]),
      { source: 0, units: [0], capped: 0 },
    ],
  ])('%s', (_name, s, observed, expected) => {
    expect(summary(distribute(s, observed), expected)).toEqual(expected);
  });
});

describe('WhenUnschedulable over time (simulated nodes with fixed capacity, one reconcile every 10 s)', () => {
  /** Pods take one tick to become ready; source pods beyond node capacity stay Unschedulable. */
  function simulate(s: ElasticWorkloadSpec, capacityAt: (t: number) => number, seconds: number) {
    let source = { desired: 0, ready: 0, ages: [] as number[] };
    let unit = { desired: 0, ready: 0 };
    let lastOverflow: number | undefined;
    const history: Array<{ t: number; source: number; unit: number; ready: number; decision: string }> = [];
    for (let t = 0; t <= seconds; t += 10) {
      const scheduled = Math.min(source.desired, capacityAt(t));
      const pending = source.desired - scheduled;
      // The oldest pending pods stay pending; new ones join at age 0.
      const ages = source.ages.slice(0, pending).map((a) => a + 10);
      while (ages.length < pending) ages.push(0);
      source = { desired: source.desired, ready: Math.min(scheduled, source.ready + scheduled), ages };
      unit = { desired: unit.desired, ready: unit.desired };
      const plan = distribute(s, {
        source: { desired: source.desired, ready: source.ready, unschedulableForSeconds: ages },
        units: [{ name: 'burst', ...unit }],
        ...(lastOverflow !== undefined ? { secondsSinceLastOverflow: t - lastOverflow } : {}),
      });
      if (plan.overflowed > 0) lastOverflow = t;
      history.push({
        t,
        source: source.desired,
        unit: unit.desired,
        ready: source.ready + unit.ready,
        decision: plan.decision,
      });
      source = {
        ...source,
        desired: plan.source.replicas,
        ready: Math.min(source.ready, plan.source.replicas),
      };
      // Pending pods are deleted first on a scale-down.
      source.ages = source.ages.slice(
        0,
        Math.max(0, plan.source.replicas - Math.min(plan.source.replicas, capacityAt(t))),
      );
      unit = { desired: plan.units[0]!.replicas, ready: Math.min(unit.ready, plan.units[0]!.replicas) };
    }
    return history;
  }

  const s = spec({ replicas: 8, min: 2, max: 10, policy: 'WhenUnschedulable' });
  // Room for 5 source pods until t=200, then for 10.
  const history = simulate(s, (t) => (t < 200 ? 5 : 10), 400);

  it('spills what does not fit to the unit after unschedulableSeconds', () => {
    const at = (t: number) => history.find((h) => h.t === t)!;
    expect(at(20)).toMatchObject({ source: 8, unit: 0 });
    expect(at(190)).toMatchObject({ source: 5, unit: 3, ready: 8 });
  });

  it('drains back to the source once the nodes have room', () => {
    expect(history.at(-1)).toMatchObject({ source: 8, unit: 0, ready: 8 });
  });

  it('never drops below the ready count on the way (a surge above replicas is fine)', () => {
    for (let i = 1; i < history.length; i++) {
      const floor = Math.min(history[i - 1]!.ready, s.replicas);
      expect(history[i]!.ready, `at t=${history[i]!.t}`).toBeGreaterThanOrEqual(floor);
    }
  });

  it('probes a full cluster no more often than every 2 × unschedulableSeconds', () => {
    const probes = history.filter((h) => h.t < 200 && h.decision === 'DrainBack').map((h) => h.t);
    for (let i = 1; i < probes.length; i++) expect(probes[i]! - probes[i - 1]!).toBeGreaterThanOrEqual(60);
  });
});
