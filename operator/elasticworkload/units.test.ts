import type { V1Deployment, V1LabelSelector } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ElasticWorkloadSchema, type ElasticUnit, type ElasticWorkload } from '../../api/elasticworkload.ts';
import {
  labelSelectorString,
  templateHash,
  unitDeployment,
  unitDeploymentName,
  unitIsCurrent,
  unitPodTemplate,
  workloadSelector,
} from './units.ts';

const ew: ElasticWorkload = ElasticWorkloadSchema.parse({
  apiVersion: 'elastic.spillway.dev/v1alpha1',
  kind: 'ElasticWorkload',
  metadata: { name: 'web-ew', namespace: 'shop', uid: 'uid-1' },
  spec: {
    sourceTarget: { kind: 'Deployment', name: 'web', max: 4 },
    replicas: 6,
    elasticUnit: [{ name: 'spot' }],
  },
});

function source(): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop', uid: 'src-uid', annotations: { note: 'source only' } },
    spec: {
      replicas: 4,
      selector: {
        matchLabels: { app: 'web' },
        matchExpressions: [{ key: 'tier', operator: 'In', values: ['front'] }],
      },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '50%', maxUnavailable: 0 } },
      minReadySeconds: 5,
      template: {
        metadata: {
          labels: { app: 'web', tier: 'front', version: 'v1' },
          annotations: { 'prometheus.io/scrape': 'true' },
        },
        spec: {
          containers: [{ name: 'web', image: 'nginx:1.27' }],
          nodeSelector: { pool: 'general', zone: 'a' },
          tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'web', effect: 'NoSchedule' }],
          affinity: {
            nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } },
            podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] },
          },
        },
      },
    },
  };
}

const spot: ElasticUnit = {
  name: 'spot',
  labels: {
    'spillway.dev/burst': 'always',
    'spillway.dev/capacity': 'spot',
    app: 'hijack',
    version: 'burst',
  },
  annotations: { 'unit-note': 'x' },
  nodeSelector: { pool: 'virtual' },
  tolerations: [
    { key: 'dedicated', operator: 'Equal', value: 'web', effect: 'NoSchedule' },
    { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
  ],
  affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } },
};

/** Does a LabelSelector match these labels (the subset of semantics Deployments use)? */
function matches(selector: V1LabelSelector, labels: Record<string, string>): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpr = (selector.matchExpressions ?? []).every((e) => {
    const v = labels[e.key];
    if (e.operator === 'In') return v !== undefined && (e.values ?? []).includes(v);
    if (e.operator === 'NotIn') return v === undefined || !(e.values ?? []).includes(v);
    if (e.operator === 'Exists') return v !== undefined;
    return v === undefined;
  });
  return byLabels && byExpr;
}

describe('unitDeploymentName', () => {
  it('is <source>-unit-<unit>', () => {
    expect(unitDeploymentName('web', 'spot')).toBe('web-unit-spot');
  });
});

describe('unitDeployment', () => {
  const d = unitDeployment(ew, source(), spot, 2);
  const podLabels = d.spec!.template.metadata!.labels!;

  it('is named after the source and unit, in the ElasticWorkload’s namespace, with the replicas asked', () => {
    expect(d.metadata).toMatchObject({ name: 'web-unit-spot', namespace: 'shop' });
    expect(d.spec!.replicas).toBe(2);
  });

  it('is owned by the ElasticWorkload as its controller, so deleting it collects the unit', () => {
    expect(d.metadata!.ownerReferences).toEqual([
      {
        apiVersion: 'elastic.spillway.dev/v1alpha1',
        kind: 'ElasticWorkload',
        name: 'web-ew',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
  });

  it('carries spillway.dev/elastic-workload and spillway.dev/unit on itself, its selector and its pods', () => {
    const ids = { 'spillway.dev/elastic-workload': 'web-ew', 'spillway.dev/unit': 'spot' };
    expect(d.metadata!.labels).toMatchObject(ids);
    expect(d.spec!.selector.matchLabels).toMatchObject(ids);
    expect(podLabels).toMatchObject(ids);
  });

  it('selects its own pods only: not the source’s, not another unit’s', () => {
    const other = unitDeployment(ew, source(), { name: 'on-demand' }, 1);
    const sourcePodLabels = source().spec!.template.metadata!.labels!;
    expect(matches(d.spec!.selector, podLabels)).toBe(true);
    expect(matches(d.spec!.selector, sourcePodLabels)).toBe(false);
    expect(matches(d.spec!.selector, other.spec!.template.metadata!.labels!)).toBe(false);
  });

  it('keeps its pods in the workload: the source’s selector (status.selector) matches them', () => {
    expect(matches(source().spec!.selector, podLabels)).toBe(true);
    expect(podLabels.app).toBe('web'); // the unit's app: hijack would have taken them out
    expect(podLabels.version).toBe('burst'); // labels outside the selector are the unit's to set
  });

  it('merges the unit’s scheduling into the source’s pod template', () => {
    const t = d.spec!.template;
    expect(t.metadata!.labels).toMatchObject({
      'spillway.dev/burst': 'always',
      'spillway.dev/capacity': 'spot',
    });
    expect(t.metadata!.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'unit-note': 'x' });
    expect(t.spec!.nodeSelector).toEqual({ pool: 'virtual', zone: 'a' });
    expect(t.spec!.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'web', effect: 'NoSchedule' },
      { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
    ]);
    // nodeAffinity is the unit's; podAntiAffinity, which the unit did not set, stays the source's.
    expect(t.spec!.affinity).toEqual({
      nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] },
      podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] },
    });
    expect(t.spec!.containers).toEqual([{ name: 'web', image: 'nginx:1.27' }]);
  });

  it('rolls out like the source', () => {
    expect(d.spec).toMatchObject({
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '50%', maxUnavailable: 0 } },
      minReadySeconds: 5,
    });
  });

  it('does not modify the source it was built from', () => {
    const src = source();
    const before = structuredClone(src);
    unitDeployment(ew, src, spot, 3);
    expect(src).toEqual(before);
  });

  it('refuses an ElasticWorkload without uid: its owner reference would be dangling', () => {
    const noUid = { ...ew, metadata: { ...ew.metadata, uid: undefined } };
    expect(() => unitDeployment(noUid, source(), spot, 1)).toThrow('shop/web-ew has no uid');
  });
});

describe('template hash', () => {
  const current = unitDeployment(ew, source(), spot, 2);

  it('changes when the source’s pod template changes, so the unit is updated', () => {
    const changed = source();
    changed.spec!.template.spec!.containers[0]!.image = 'nginx:1.28';
    const next = unitDeployment(ew, changed, spot, 2);
    expect(next.spec!.template.spec!.containers[0]!.image).toBe('nginx:1.28');
    expect(unitIsCurrent(current, next)).toBe(false);
  });

  it('changes when the unit changes', () => {
    expect(
      unitIsCurrent(current, unitDeployment(ew, source(), { ...spot, nodeSelector: { pool: 'eci' } }, 2)),
    ).toBe(false);
  });

  it('does not change with replicas, key order or undefined fields', () => {
    const reordered = source();
    const t = reordered.spec!.template;
    reordered.spec!.template = { spec: { ...t.spec!, hostname: undefined }, metadata: t.metadata };
    expect(unitIsCurrent(current, unitDeployment(ew, reordered, spot, 9))).toBe(true);
    expect(templateHash(unitPodTemplate(ew, source(), spot))).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('labelSelectorString', () => {
  it.each<[string, V1LabelSelector, string]>([
    ['matchLabels', { matchLabels: { app: 'web', tier: 'front' } }, 'app=web,tier=front'],
    [
      'every operator, sorted by key',
      {
        matchLabels: { z: '1' },
        matchExpressions: [
          { key: 'env', operator: 'In', values: ['prod', 'canary'] },
          { key: 'b', operator: 'NotIn', values: ['x'] },
          { key: 'a', operator: 'Exists' },
          { key: 'c', operator: 'DoesNotExist' },
        ],
      },
      'a,b notin (x),!c,env in (canary,prod),z=1',
    ],
    ['empty', {}, ''],
  ])('%s', (_name, selector, expected) => {
    expect(labelSelectorString(selector)).toBe(expected);
  });

  it('gives status.selector from the source', () => {
    expect(workloadSelector(source())).toBe('app=web,tier in (front)');
  });
});
