import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ElasticWorkload } from '../../api/elasticworkload.ts';
import { distribute, type Observation } from './distribute.ts';
import { spec, twoUnits } from './distribute.fixtures.ts';
import type { TemplateRefusal, UnitTrouble } from './refusals.ts';
import { elasticWorkloadStatus, type StatusInputs } from './status.ts';

const now = new Date('2026-12-03T10:00:00Z');
const ew = (replicas: number, max: number, units = twoUnits): ElasticWorkload => ({
  apiVersion: 'elastic.spillway.dev/v1alpha1',
  kind: 'ElasticWorkload',
  metadata: { name: 'web', namespace: 'shop', uid: 'u', generation: 1 },
  spec: spec({ replicas, min: 0, max, units }),
});
const deployment = (replicas: number, ready: number): V1Deployment => ({
  metadata: { name: 'web', namespace: 'shop' },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { spec: { containers: [] } } },
  status: { replicas, readyReplicas: ready },
});
const refusedByLocal: TemplateRefusal = {
  provider: 'local',
  causes: [{ path: 'spec.template.spec.containers[0].command', message: 'set command' }],
};
const failing: UnitTrouble = {
  kind: 'PodsFailing',
  until: now.getTime() + 300_000,
  failed: 3,
  reason: 'UnsupportedPodSpec',
  message: 'provider local cannot run this pod',
};

/** The status of `e` with the source at `source` ready replicas and the plan `distribute` makes for `observed`. */
function statusOf(e: ElasticWorkload, observed: Observation, extra: Partial<StatusInputs> = {}) {
  const plan = distribute(e.spec, observed);
  const source = deployment(plan.source.replicas, observed.source.ready);
  const s = elasticWorkloadStatus({ ew: e, source, units: new Map(), plan, violations: [], now, ...extra });
  return Object.fromEntries((s.conditions ?? []).map((c) => [c.type, c]));
}

describe('ElasticWorkload conditions', () => {
  it('a provider refusing every unit: Ready is False naming the refusal, Capped does not blame the max', () => {
    const c = statusOf(
      ew(6, 4),
      {
        source: { desired: 4, ready: 4 },
        units: [
          { name: 'spot', desired: 0, ready: 0, refused: true },
          { name: 'on-demand', desired: 0, ready: 0, refused: true },
        ],
      },
      {
        refusals: new Map([
          ['spot', refusedByLocal],
          ['on-demand', refusedByLocal],
        ]),
      },
    );
    expect(c.Ready).toMatchObject({ status: 'False', reason: 'ProviderRefusesPodSpec' });
    expect(c.Ready!.message).toMatch(/^2 of 6 replicas run nowhere/);
    expect(c.BurstBlocked).toMatchObject({ status: 'True', reason: 'ProviderRefusesPodSpec' });
    expect(c.BurstBlocked!.message).toContain(
      "unit spot gets no replica: provider local cannot run Deployment web's pod template: spec.template.spec.containers[0].command: set command",
    );
    expect(c.Capped).toMatchObject({ status: 'True', reason: 'UnitsCannotRun' });
    expect(c.Capped!.message).not.toMatch(/at their max/);
  });

  it('the source’s template breaks the sandbox rules: Ready is False, not AllReplicasReady', () => {
    const e = ew(6, 4, [['burst']]);
    const plan = distribute(e.spec, { source: { desired: 4, ready: 4 }, blocked: true });
    const s = elasticWorkloadStatus({
      ew: e,
      source: deployment(4, 4),
      units: new Map(),
      plan,
      violations: [{ path: 'spec.template.spec.hostNetwork', message: 'hostNetwork is not supported' }],
      now,
    });
    const ready = s.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'UnsupportedPodSpec' });
    expect(s.conditions?.find((c) => c.type === 'Capped')?.reason).toBe('UnitsCannotRun');
  });

  it('a unit whose pods keep failing: BurstBlocked says so and until when', () => {
    const c = statusOf(
      ew(6, 4, [['spot']]),
      {
        source: { desired: 4, ready: 4 },
        units: [{ name: 'spot', desired: 2, ready: 0, capacityLimited: true }],
      },
      { troubles: new Map([['spot', failing]]) },
    );
    expect(c.BurstBlocked).toMatchObject({ status: 'True', reason: 'UnitPodsFailing' });
    expect(c.BurstBlocked!.message).toMatch(
      /^unit spot keeps only its ready replicas until 2026-12-03T10:05:00Z: 3 of its pods failed on the virtual node \(last: UnsupportedPodSpec: provider local cannot run this pod\)$/,
    );
    expect(c.Ready).toMatchObject({ status: 'False', reason: 'UnitPodsFailing' });
  });

  it('unit pods Pending for lack of virtual-node room: Capped says so, not AllPlaced', () => {
    const c = statusOf(
      ew(6, 4, [['burst']]),
      { source: { desired: 4, ready: 4 }, units: [{ name: 'burst', desired: 2, ready: 0 }] },
      { unschedulable: { pods: 2, message: '0/3 nodes are available: 1 Too many pods.' } },
    );
    expect(c.Capped).toMatchObject({
      status: 'True',
      reason: 'NoVirtualNodeCapacity',
      message:
        '2 unit pods are Pending: the scheduler finds no room for them (0/3 nodes are available: 1 Too many pods.)',
    });
  });

  it.each<[string, number, number, string, string]>([
    ['all placed and ready', 6, 6, 'True/AllReplicasReady', 'False/AllPlaced'],
    ['all placed, some not ready', 6, 3, 'False/ReplicasNotReady', 'False/AllPlaced'],
    [
      'a max leaves replicas out: Capped blames it, Ready stays True',
      10,
      6,
      'True/AllReplicasReady',
      'True/AllTargetsAtMax',
    ],
  ])('%s', (_name, replicas, ready, readyCondition, cappedCondition) => {
    const e = ew(replicas, 4, [['burst', 2]]);
    const plan = distribute(e.spec, {
      source: { desired: 4, ready: 4 },
      units: [{ name: 'burst', desired: 2, ready: 2 }],
    });
    const s = elasticWorkloadStatus({
      ew: e,
      source: deployment(4, Math.min(4, ready)),
      units: new Map([
        ['burst', { ...deployment(2, Math.max(0, ready - 4)), metadata: { name: 'web-unit-burst' } }],
      ]),
      plan,
      violations: [],
      now,
    });
    const at = (t: string) => s.conditions?.find((c) => c.type === t);
    expect(`${at('Ready')?.status}/${at('Ready')?.reason}`).toBe(readyCondition);
    expect(`${at('Capped')?.status}/${at('Capped')?.reason}`).toBe(cappedCondition);
  });
});
