/**
 * The ElasticWorkload controller's reconcile, called directly against in-memory informers, a recording apiserver,
 * a recording Event sink and a fake clock: each test builds its world, reconciles once, and asserts the writes
 * and Events. test/integration/elasticworkload*.test.ts prove the real apiserver agrees.
 */
import { describe, expect, it } from 'vitest';
import { FINALIZER } from '../../api/labels.ts';
import {
  T0,
  condition,
  deleted,
  elasticWorkload,
  eventOf,
  eventReasons,
  expectApplied,
  expectScaledSource,
  finalizerRemoved,
  source,
  unit,
  unitPod,
  virtualNode,
  world,
  writtenStatus,
} from './reconcile.fixtures.ts';

const twoUnits = [{ name: 'spot', max: 2 }, { name: 'on-demand' }];

describe('ElasticWorkload reconcile: distribution', () => {
  it('adds its finalizer first and writes nothing else', async () => {
    const w = world({
      ews: [elasticWorkload({ replicas: 5 }, { finalizers: [] })],
      deployments: [source(5)],
    });
    await w.reconcile();
    expect(w.api.writes).toEqual([
      {
        verb: 'patch',
        kind: 'ElasticWorkload',
        name: 'web',
        body: { metadata: { finalizers: [FINALIZER], resourceVersion: '7' } },
      },
    ]);
    expect(w.events.events).toEqual([]);
  });

  it('bursts what the source may not hold to the unit, and says so; the source keeps its replicas meanwhile', async () => {
    const w = world({ ews: [elasticWorkload({ replicas: 5 })], deployments: [source(5)] });
    await w.reconcile();
    expectApplied(w, { 'web-unit-burst': 3 });
    expect(w.api.writes.filter((x) => x.verb === 'patch' && x.kind === 'Deployment')).toEqual([]);
    expect(eventReasons(w)).toEqual(['ScaledUnit']);
    expect(eventOf(w, 'ScaledUnit').note).toBe('scaled unit burst (Deployment web-unit-burst) from 0 to 3');
  });

  it('once the unit runs its replicas, the source gives up its share', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const w = world({ ews: [ew], deployments: [source(5), unit(ew, 'burst', 3, source(5))] });
    await w.reconcile();
    expectScaledSource(w, 2);
    expect(eventOf(w, 'ScaledSource').note).toBe('scaled source Deployment web from 5 to 2');
    expect(condition(w, 'Bursting')?.[0]).toBe('True');
  });

  it('fills the units in order, each up to its max', async () => {
    const w = world({ ews: [elasticWorkload({ replicas: 7, units: twoUnits })], deployments: [source(2)] });
    await w.reconcile();
    expectApplied(w, { 'web-unit-spot': 2, 'web-unit-on-demand': 3 });
  });

  it('changes nothing when the world already matches the plan', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const w = world({ ews: [ew], deployments: [source(2), unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expect(w.api.writes.filter((x) => x.kind === 'Deployment')).toEqual([]);
    expect(w.events.events).toEqual([]);
  });

  it('scales in: the unit goes to zero while the source keeps its max', async () => {
    const ew = elasticWorkload({ replicas: 2 });
    const w = world({ ews: [ew], deployments: [source(2), unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expectApplied(w, { 'web-unit-burst': 0 });
    expect(eventOf(w, 'ScaledUnit').note).toBe('scaled unit burst (Deployment web-unit-burst) from 3 to 0');
  });

  it('deletes the Deployment of a unit removed from the spec', async () => {
    const old = elasticWorkload({ replicas: 2, units: twoUnits });
    const ew = elasticWorkload({ replicas: 2, units: [{ name: 'on-demand' }] });
    const w = world({ ews: [ew], deployments: [source(2), unit(old, 'spot', 0, source(2))] });
    await w.reconcile();
    expect(deleted(w)).toEqual(['Deployment/web-unit-spot']);
    expect(eventReasons(w)).toContain('DeletedUnit');
  });

  it('a failed unit apply is an Event and an error', async () => {
    const w = world({ ews: [elasticWorkload({ replicas: 5 })], deployments: [source(2)] });
    w.api.failWith = (x) => (x.verb === 'apply' ? new Error('admission webhook denied') : undefined);
    await expect(w.reconcile()).rejects.toThrow(
      'applying unit Deployment team/web-unit-burst: admission webhook denied',
    );
    expect(eventOf(w, 'UnitApplyFailed').note).toContain('web-unit-burst: admission webhook denied');
  });

  it('errors say what was being done: scaling the source, patching the status', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const scale = world({ ews: [ew], deployments: [source(5), unit(ew, 'burst', 3, source(5))] });
    scale.api.failWith = (x) =>
      x.kind === 'Deployment' ? new Error('etcdserver: request timed out') : undefined;
    await expect(scale.reconcile()).rejects.toThrow(
      'scaling source Deployment team/web to 2: etcdserver: request timed out',
    );
    expect(scale.events.events).toEqual([]);

    const status = world({ ews: [ew], deployments: [source(2), unit(ew, 'burst', 3, source(2))] });
    status.api.failWith = (x) => ('subresource' in x ? new Error('conflict') : undefined);
    await expect(status.reconcile()).rejects.toThrow('patching ElasticWorkload team/web status: conflict');
  });
});

describe('ElasticWorkload reconcile: one source, one owner', () => {
  const first = elasticWorkload({ replicas: 5 }, { name: 'first', created: '2025-01-01T00:00:00Z' });
  const second = elasticWorkload({ replicas: 9 }, { name: 'second', created: '2025-06-01T00:00:00Z' });

  it('the younger claim touches nothing and says SourceClaimed once', async () => {
    const w = world({ ews: [first, second], deployments: [source(2)] });
    await w.reconcile('second');
    expect(w.api.writes.filter((x) => x.kind === 'Deployment')).toEqual([]);
    expect(condition(w, 'Ready')).toEqual(['False', 'SourceClaimed']);
    expect(eventOf(w, 'SourceClaimed').note).toBe(
      'Deployment web is already split by ElasticWorkload first: delete one of the two',
    );

    const told = { ...second, status: writtenStatus(w) };
    const again = world({ ews: [first, told], deployments: [source(2)] });
    await again.reconcile('second');
    expect(again.events.events).toEqual([]);
    expect(again.api.writes).toEqual([]);
  });

  it('deleting the younger claim folds nothing back into the winner’s source', async () => {
    const deleting = { ...second, metadata: { ...second.metadata, deletionTimestamp: T0.toISOString() } };
    const w = world({ ews: [first, deleting as never], deployments: [source(2)] });
    await w.reconcile('second');
    expect(w.api.writes.filter((x) => x.kind === 'Deployment')).toEqual([]);
    expect(finalizerRemoved(w)).toBe(true);
  });
});

describe('ElasticWorkload reconcile: fold-back on delete', () => {
  const deletedAt = new Date(T0.getTime() - 60_000);

  it('scales the source back up first and keeps the unit until the source is ready', async () => {
    const ew = elasticWorkload({ replicas: 5 }, { deletedAt });
    const w = world({ ews: [ew], deployments: [source(2), unit(ew, 'burst', 3, source(2))] });
    const result = await w.reconcile();
    expectScaledSource(w, 5);
    expect(deleted(w)).toEqual([]);
    expect(finalizerRemoved(w)).toBe(false);
    // Rechecked when the fold-back timeout ends at the latest.
    expect(result).toEqual({ requeueAfter: 540_100 });
  });

  it('once the source runs them all, deletes the units and releases the finalizer', async () => {
    const ew = elasticWorkload({ replicas: 5 }, { deletedAt });
    const w = world({ ews: [ew], deployments: [source(5, 5), unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expect(deleted(w)).toEqual(['Deployment/web-unit-burst']);
    expect(finalizerRemoved(w)).toBe(true);
  });

  it('past foldBackTimeoutSeconds removes the units anyway and says so', async () => {
    const ew = elasticWorkload({ replicas: 5, foldBackTimeoutSeconds: 30 }, { deletedAt });
    const w = world({ ews: [ew], deployments: [source(5, 2), unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expect(eventOf(w, 'FoldBackTimedOut').note).toBe(
      'the source ran 2 of 5 replicas 30 s after the deletion: removing the units anyway, so 3 replicas wait as pending pods of the source',
    );
    expect(deleted(w)).toEqual(['Deployment/web-unit-burst']);
    expect(finalizerRemoved(w)).toBe(true);
  });

  it('a deleted source releases the finalizer at once', async () => {
    const ew = elasticWorkload({ replicas: 5 }, { deletedAt });
    const w = world({ ews: [ew], deployments: [unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expect(deleted(w)).toEqual(['Deployment/web-unit-burst']);
    expect(finalizerRemoved(w)).toBe(true);
  });
});

describe('ElasticWorkload reconcile: what blocks bursting', () => {
  it('a template the only virtual node’s provider refuses gets no unit replica, and an Event once', async () => {
    // The local provider runs Linux containers only (operator/providers/local/rules.ts).
    const template = { os: { name: 'windows' }, containers: [{ name: 'web', image: 'nginx:1.27' }] };
    // The burst label sends the unit's pods to virtual nodes (examples/web's unit).
    const ew = elasticWorkload({
      replicas: 5,
      units: [{ name: 'burst', labels: { 'spillway.dev/burst': 'always' } }],
    });
    const w = world({
      ews: [ew],
      deployments: [source(2, 2, template)],
      virtualNodes: [virtualNode('local')],
    });
    await w.reconcile();
    expectApplied(w, {});
    expect(condition(w, 'BurstBlocked')).toEqual(['True', 'ProviderRefusesPodSpec']);
    expect(condition(w, 'Capped')?.[0]).toBe('True');
    expect(eventOf(w, 'ProviderRefusesPodSpec').note).toMatch(
      /^unit burst gets no replica: provider local cannot run Deployment web's pod template: spec\.template\.spec\.os\.name: the local provider runs Linux containers only/,
    );

    const told = { ...ew, status: writtenStatus(w) };
    const again = world({
      ews: [told],
      deployments: [source(2, 2, template)],
      virtualNodes: [virtualNode('local')],
    });
    await again.reconcile();
    expect(eventReasons(again)).toEqual([]);
  });

  it('a source template no sandbox can run keeps every replica on the source', async () => {
    const w = world({
      ews: [elasticWorkload({ replicas: 5 })],
      deployments: [source(5, 5, { hostNetwork: true, containers: [{ name: 'web', image: 'nginx' }] })],
    });
    await w.reconcile();
    expectApplied(w, {});
    expect(condition(w, 'BurstBlocked')).toEqual(['True', 'UnsupportedPodSpec']);
    expect(eventOf(w, 'BurstBlocked').note).toMatch(/^no replica can burst: .*hostNetwork/);
  });

  it('a unit whose pods keep failing on the node keeps its ready replicas, the rest go on', async () => {
    const ew = elasticWorkload({ replicas: 7, units: twoUnits });
    const failed = [1, 2, 3].map((i) =>
      unitPod(`spot-${i}`, 'spot', {
        phase: 'Failed',
        reason: 'ProviderFailed',
        message: 'image pull failed',
        conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: new Date(T0.getTime() - 10_000) }],
      }),
    );
    const spot = { ...unit(ew, 'spot', 2, source(2)), status: { readyReplicas: 1 } };
    const w = world({ ews: [ew], deployments: [source(2), spot], failedPods: failed });
    const result = await w.reconcile();
    expectApplied(w, { 'web-unit-spot': 1, 'web-unit-on-demand': 4 });
    expect(condition(w, 'BurstBlocked')).toEqual(['True', 'UnitPodsFailing']);
    expect(eventOf(w, 'UnitPodsFailing').note).toMatch(/^unit spot keeps only its ready replicas until/);
    // Tried again when the cooldown (300 s from the last failure) ends.
    expect(result).toEqual({ requeueAfter: 291_000 });
  });

  it('a unit whose provider ran out of capacity falls back to the next one (SpotFallback)', async () => {
    const ew = elasticWorkload({ replicas: 7, units: twoUnits });
    const noCapacity = unitPod('spot-1', 'spot', {
      phase: 'Failed',
      reason: 'InsufficientCapacity',
      message: 'no stock',
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: T0 }],
    });
    const spot = { ...unit(ew, 'spot', 2, source(2)), status: { readyReplicas: 0 } };
    const w = world({ ews: [ew], deployments: [source(2), spot], failedPods: [noCapacity] });
    await w.reconcile();
    expectApplied(w, { 'web-unit-spot': 0, 'web-unit-on-demand': 5 });
    expect(eventOf(w, 'SpotFallback').note).toMatch(/^unit spot has no provider capacity/);
  });

  it('deletes failed unit pods older than the cooldown: they no longer count', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const old = unitPod('burst-1', 'burst', {
      phase: 'Failed',
      reason: 'InsufficientCapacity',
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: new Date(T0.getTime() - 301_000) }],
    });
    const w = world({
      ews: [ew],
      deployments: [source(2), unit(ew, 'burst', 3, source(2))],
      failedPods: [old],
    });
    await w.reconcile();
    expect(deleted(w)).toEqual(['Pod/burst-1']);
    expect(eventReasons(w)).toEqual([]);
  });

  it('unit pods no virtual node has room for show in Capped', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const waiting = unitPod('burst-1', 'burst', {
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: '0/3 nodes are available: 1 Too many pods.',
        },
      ],
    });
    const w = world({
      ews: [ew],
      deployments: [source(2), { ...unit(ew, 'burst', 3, source(2)), status: { readyReplicas: 2 } }],
      pendingPods: [waiting],
    });
    await w.reconcile();
    expect(condition(w, 'Capped')).toEqual(['True', 'NoVirtualNodeCapacity']);
    expect(writtenStatus(w)?.conditions?.find((c) => c.type === 'Capped')?.message).toContain(
      '0/3 nodes are available: 1 Too many pods.',
    );
  });
});

describe('ElasticWorkload reconcile: a missing source', () => {
  it('says so once, naming what to do', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const w = world({ ews: [ew] });
    await w.reconcile();
    expect(eventOf(w, 'SourceNotFound').note).toBe(
      'Deployment web not found in namespace team: no replica is placed until it exists; create it or fix sourceTarget.name',
    );
    expect(condition(w, 'Ready')).toEqual(['False', 'SourceNotFound']);

    const again = world({ ews: [{ ...ew, status: writtenStatus(w) }] });
    await again.reconcile();
    expect(again.events.events).toEqual([]);
  });

  it('with replicas still on units, says how many and how to remove them', async () => {
    const ew = elasticWorkload({ replicas: 5 });
    const w = world({ ews: [ew], deployments: [unit(ew, 'burst', 3, source(2))] });
    await w.reconcile();
    expect(eventOf(w, 'SourceNotFound').note).toBe(
      'Deployment web is gone while 3 replicas still run on elastic units: re-create it, or delete this ElasticWorkload to remove the units',
    );
    expect(w.api.writes.filter((x) => x.kind === 'Deployment')).toEqual([]);
  });
});
