import type { V1Node, V1PodTemplateSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  FAILING_THRESHOLD,
  templateRefusal,
  unitTroubles,
  unschedulableUnitPods,
  type FailedUnitPod,
} from './refusals.ts';

const virtualNode = (name: string, provider: string): V1Node => ({
  metadata: {
    name,
    labels: {
      'spillway.dev/virtual-node': 'true',
      type: 'virtual-kubelet',
      'spillway.dev/provider': provider,
    },
  },
  spec: { taints: [{ key: 'virtual-kubelet.io/provider', value: provider, effect: 'NoSchedule' }] },
});
const local = virtualNode('vn-local', 'local');
const eci = virtualNode('vn-eci', 'eci');
// The fake provider has no static rules: it runs any spec.
const fake = virtualNode('vn-fake', 'fake');

/** examples/web's unit template, sent to virtual nodes by its burst label. */
const burstTemplate = (extra: Partial<V1PodTemplateSpec['spec']> = {}): V1PodTemplateSpec => ({
  metadata: { labels: { app: 'web', 'spillway.dev/burst': 'always' } },
  spec: { containers: [{ name: 'web', image: 'nginx:1.27' }], ...extra },
});
/** The same template for Windows, which the local provider (Linux containers only) and ECI refuse. */
const windowsTemplate = (extra: Partial<V1PodTemplateSpec['spec']> = {}): V1PodTemplateSpec =>
  burstTemplate({ os: { name: 'windows' }, ...extra });

describe('templateRefusal', () => {
  it.each<[string, V1PodTemplateSpec, V1Node[], string | undefined]>([
    ['the local provider refuses a Windows pod', windowsTemplate(), [local], 'local'],
    ['the local provider runs a Linux pod', burstTemplate({ os: { name: 'linux' } }), [local], undefined],
    ['the local provider runs a pod without spec.os', burstTemplate(), [local], undefined],
    ['every provider refuses it: the first one is named', windowsTemplate(), [local, eci], 'local'],
    ['one of two providers may run it: not refused', windowsTemplate(), [local, fake], undefined],
    [
      'pinned to the local provider by nodeSelector: the fake node does not count',
      windowsTemplate({ nodeSelector: { 'spillway.dev/provider': 'local' } }),
      [local, fake],
      'local',
    ],
    ['no virtual node registered: not known, not refused', windowsTemplate(), [], undefined],
    [
      'a template that does not go to virtual nodes is none of the providers’ business',
      {
        metadata: { labels: { app: 'web' } },
        spec: { os: { name: 'windows' }, containers: [{ name: 'web', image: 'nginx' }] },
      },
      [local],
      undefined,
    ],
    [
      'a provider this build has no rules for: not refused',
      windowsTemplate(),
      [virtualNode('vn-x', 'acme')],
      undefined,
    ],
  ])('%s', (_name, template, nodes, refusedBy) => {
    expect(templateRefusal(template, nodes)?.provider).toBe(refusedBy);
  });

  it('names the field in the source Deployment, and what to change', () => {
    expect(templateRefusal(windowsTemplate(), [local])?.causes).toEqual([
      {
        path: 'spec.template.spec.os.name',
        message: 'the local provider runs Linux containers only: remove spec.os or set it to linux',
      },
    ]);
  });

  it('names each container without an image and each mount of a missing volume', () => {
    const template = burstTemplate({
      initContainers: [{ name: 'init' }],
      containers: [{ name: 'web', image: 'nginx', volumeMounts: [{ name: 'gone', mountPath: '/data' }] }],
    });
    expect(templateRefusal(template, [local])?.causes.map((c) => c.path)).toEqual([
      'spec.template.spec.initContainers[0].image',
      'spec.template.spec.containers[0].volumeMounts[0].name',
    ]);
  });
});

describe('unitTroubles', () => {
  const now = 1_000_000;
  const cooldown = 300_000;
  const pod = (unit: string, reason: string, agoMs: number): FailedUnitPod => ({
    unit,
    reason,
    message: `${reason} message`,
    at: now - agoMs,
  });
  it.each<[string, FailedUnitPod[], Record<string, string>]>([
    [
      'one pod without capacity holds its unit back',
      [pod('spot', 'InsufficientCapacity', 1000)],
      { spot: 'NoCapacity' },
    ],
    [
      `fewer than ${FAILING_THRESHOLD} refused pods may be a fluke`,
      [pod('spot', 'UnsupportedPodSpec', 1000), pod('spot', 'ProviderFailed', 500)],
      {},
    ],
    [
      `${FAILING_THRESHOLD} refused or failed pods: the unit is failing`,
      [
        pod('spot', 'UnsupportedPodSpec', 3000),
        pod('spot', 'UnsupportedPodSpec', 2000),
        pod('spot', 'ProviderFailed', 1000),
      ],
      { spot: 'PodsFailing' },
    ],
    [
      'failures older than the cooldown no longer count',
      [1, 2, 3].map((i) => pod('spot', 'UnsupportedPodSpec', cooldown + i)),
      {},
    ],
    [
      'a pod failed for another reason (its own exit code) does not count',
      [1, 2, 3].map((i) => pod('a', 'Error', i)),
      {},
    ],
    [
      'no capacity wins over failing',
      [
        ...[1, 2, 3].map((i) => pod('spot', 'UnsupportedPodSpec', i)),
        pod('spot', 'InsufficientCapacity', 10),
      ],
      { spot: 'NoCapacity' },
    ],
  ])('%s', (_name, failed, expected) => {
    const troubles = unitTroubles(failed, cooldown, now);
    expect(Object.fromEntries([...troubles].map(([u, t]) => [u, t.kind]))).toEqual(expected);
  });

  it('holds the unit until the cooldown after its latest failure, with that failure’s words', () => {
    const t = unitTroubles(
      [
        pod('spot', 'UnsupportedPodSpec', 3000),
        pod('spot', 'UnsupportedPodSpec', 2000),
        pod('spot', 'ProviderFailed', 1000),
      ],
      cooldown,
      now,
    ).get('spot');
    expect(t).toEqual({
      kind: 'PodsFailing',
      until: now - 1000 + cooldown,
      failed: 3,
      reason: 'ProviderFailed',
      message: 'ProviderFailed message',
    });
  });
});

describe('templateRefusal for a pod (as the admission webhook would ask)', () => {
  it('names the pod’s own paths and honours a namespace-wide burst label', () => {
    const template: V1PodTemplateSpec = {
      metadata: { labels: { app: 'web' } },
      spec: { os: { name: 'windows' }, containers: [{ name: 'web', image: 'nginx:1.27' }] },
    };
    expect(templateRefusal(template, [local], { base: 'spec' })).toBeUndefined();
    expect(
      templateRefusal(template, [local], {
        base: 'spec',
        namespaceLabels: { 'spillway.dev/burst': 'always' },
      })?.causes[0]?.path,
    ).toBe('spec.os.name');
  });
});

describe('unschedulableUnitPods', () => {
  const pod = (
    labels: Record<string, string>,
    scheduled: { status: string; reason?: string; message?: string },
  ) => ({
    metadata: { labels },
    status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', ...scheduled }] },
  });
  const unit = { 'spillway.dev/elastic-workload': 'web', 'spillway.dev/unit': 'burst' };
  it('counts only this ElasticWorkload’s unit pods the scheduler gave up on, with its message', () => {
    expect(
      unschedulableUnitPods(
        [
          pod(unit, {
            status: 'False',
            reason: 'Unschedulable',
            message: '0/3 nodes are available: 1 Too many pods.',
          }),
          pod(unit, { status: 'False', reason: 'Unschedulable', message: 'other' }),
          pod(unit, { status: 'False', reason: 'SchedulingGated' }),
          pod(unit, { status: 'True' }),
          pod({ app: 'web' }, { status: 'False', reason: 'Unschedulable' }),
          pod(
            { ...unit, 'spillway.dev/elastic-workload': 'api' },
            { status: 'False', reason: 'Unschedulable' },
          ),
        ] as never,
        'web',
      ),
    ).toEqual({ pods: 2, message: '0/3 nodes are available: 1 Too many pods.' });
    expect(unschedulableUnitPods([], 'web')).toEqual({ pods: 0 });
  });
});
