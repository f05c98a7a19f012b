import type { V1DaemonSet, V1NodeSelectorTerm } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { expectPatchGives } from './admission.fixtures.ts';
import { OFF_VIRTUAL_NODE } from '../api/taints.ts';
import { excludeVirtualNodes } from './daemonset.ts';

function ds(terms?: V1NodeSelectorTerm[], extra: object = {}): V1DaemonSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: 'monitoring' },
    spec: {
      selector: { matchLabels: { app: 'agent' } },
      template: {
        metadata: { labels: { app: 'agent' } },
        spec: {
          containers: [{ name: 'a', image: 'agent' }],
          tolerations: [{ operator: 'Exists' }],
          ...(terms
            ? {
                affinity: {
                  nodeAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
                  },
                },
              }
            : {}),
          ...extra,
        },
      },
    },
  };
}

const terms = (d: V1DaemonSet) =>
  d.spec!.template.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!
    .nodeSelectorTerms;

const zone = (z: string) => ({ key: 'zone', operator: 'In', values: [z] });

describe('excludeVirtualNodes', () => {
  it.each<[string, V1NodeSelectorTerm[] | undefined, V1NodeSelectorTerm[]]>([
    ['no affinity: one term with the exclusion', undefined, [{ matchExpressions: [OFF_VIRTUAL_NODE] }]],
    ['empty term list: one term', [], [{ matchExpressions: [OFF_VIRTUAL_NODE] }]],
    [
      'one term: appended',
      [{ matchExpressions: [zone('a')] }],
      [{ matchExpressions: [zone('a'), OFF_VIRTUAL_NODE] }],
    ],
    [
      'two ORed terms: into each',
      [{ matchExpressions: [zone('a')] }, { matchExpressions: [zone('b')] }],
      [
        { matchExpressions: [zone('a'), OFF_VIRTUAL_NODE] },
        { matchExpressions: [zone('b'), OFF_VIRTUAL_NODE] },
      ],
    ],
    [
      'only the term that lacks it',
      [{ matchExpressions: [OFF_VIRTUAL_NODE] }, { matchExpressions: [zone('b')] }],
      [{ matchExpressions: [OFF_VIRTUAL_NODE] }, { matchExpressions: [zone('b'), OFF_VIRTUAL_NODE] }],
    ],
    [
      'values compared as a set',
      [{ matchExpressions: [{ ...OFF_VIRTUAL_NODE, values: ['true'] }] }],
      [{ matchExpressions: [OFF_VIRTUAL_NODE] }],
    ],
    [
      'a matchFields term keeps its fields',
      [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }],
      [
        {
          matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }],
          matchExpressions: [OFF_VIRTUAL_NODE],
        },
      ],
    ],
  ])('%s', (_name, input, expected) => {
    const raw = ds(input);
    const before = structuredClone(raw);
    const { object: once, patch } = excludeVirtualNodes(raw);
    expect(terms(once)).toEqual(expected);
    expect(raw).toEqual(before);
    expectPatchGives(raw, patch, once);
    expect(excludeVirtualNodes(once).object).toEqual(once);
    expect(excludeVirtualNodes(once).patch).toEqual([]);
  });

  it('keeps preferred terms, pod affinity and tolerations', () => {
    const preferred = [{ weight: 1, preference: { matchExpressions: [zone('a')] } }];
    const raw = ds(undefined, {
      affinity: {
        podAntiAffinity: {},
        nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: preferred },
      },
    });
    const spec = excludeVirtualNodes(raw).object.spec!.template.spec!;
    expect(spec.affinity!.nodeAffinity!.preferredDuringSchedulingIgnoredDuringExecution).toEqual(preferred);
    expect(spec.affinity!.podAntiAffinity).toEqual({});
    expect(spec.tolerations).toEqual([{ operator: 'Exists' }]);
  });

  it('uses NotIn, which also matches nodes without the label', () => {
    expect(OFF_VIRTUAL_NODE).toEqual({
      key: 'spillway.dev/virtual-node',
      operator: 'NotIn',
      values: ['true'],
    });
  });
});
