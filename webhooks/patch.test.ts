import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { applyJsonPatch, expectPatchGives } from './admission.fixtures.ts';
import { excludeVirtualNodes } from './daemonset.ts';
import { encodePatch, ObjectEdit } from './patch.ts';
import { placePod } from './placement.ts';

describe('ObjectEdit: pointer escaping', () => {
  it.each<[string, string, string]>([
    ['a key with /', 'spillway.dev/burst', '/metadata/labels/spillway.dev~1burst'],
    ['a key with ~', 'odd~key', '/metadata/labels/odd~0key'],
    ['a key with ~ and /', 'x~/y', '/metadata/labels/x~0~1y'],
    ['a key with ~1 literally', 'a~1b', '/metadata/labels/a~01b'],
    ['the key -, which appends only to arrays', '-', '/metadata/labels/-'],
  ])('%s', (_name, key, pointer) => {
    const raw = { metadata: { labels: { app: 'web' } as Record<string, string> } };
    const edit = new ObjectEdit(raw);
    edit.root().object('metadata').object('labels').set(key, 'v');
    expect(edit.patch).toEqual([{ op: 'add', path: pointer, value: 'v' }]);
    expectPatchGives(raw, edit.patch, { metadata: { labels: { app: 'web', [key]: 'v' } } });
  });

  it('escapes annotation keys added by the placement webhook', () => {
    const raw: V1Pod = {
      metadata: {
        name: 'p',
        labels: { 'spillway.dev/capacity': 'spot', 'we~ird/key': 'x' },
        annotations: { 'a/b': 'c' },
      },
      spec: { containers: [{ name: 'a' }] },
    };
    const { patch, object } = placePod(raw, undefined);
    expect(patch).toEqual([
      { op: 'add', path: '/metadata/annotations/k8s.aliyun.com~1eci-spot-strategy', value: 'SpotAsPriceGo' },
    ]);
    expectPatchGives(raw, patch, object);
  });
});

describe('ObjectEdit: missing parents', () => {
  it.each<[string, object]>([
    ['absent', {}],
    ['null', { affinity: null, tolerations: null }],
    ['empty', { affinity: {}, tolerations: [] }],
    ['partly there', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: {} } } }],
  ])('%s: created by an add before anything goes into them', (_name, spec) => {
    const raw = {
      metadata: { labels: { 'spillway.dev/burst': 'always' } },
      spec: { containers: [], ...spec },
    };
    const { patch, object } = placePod(raw as V1Pod, undefined);
    // applyJsonPatch refuses an add whose parent does not exist, as the apiserver does.
    expectPatchGives(raw, patch, object);
    expect(object.spec!.tolerations).toHaveLength(2);
  });

  it('adds a missing object once, with what goes into it, instead of one operation per level', () => {
    const raw = { metadata: { labels: { 'spillway.dev/burst': 'always' } }, spec: { containers: [] } };
    expect(placePod(raw, undefined).patch.map((o) => o.path)).toEqual([
      '/spec/tolerations',
      '/spec/affinity',
    ]);
  });
});

describe('ObjectEdit: never removes what the user wrote', () => {
  // Fields no schema of ours knows: a newer Kubernetes, an extension, a typo the apiserver will report itself.
  const raw = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', labels: { 'spillway.dev/burst': 'always' }, futureMeta: { a: 1 } },
    spec: {
      containers: [
        { name: 'a', image: 'x', futureContainerField: true, resizePolicy: [{ resourceName: 'cpu' }] },
      ],
      tolerations: [{ key: 'gpu', operator: 'Exists', futureTolerationField: 'y' }],
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'z', operator: 'Exists' }], futureTerm: 1 }],
          },
        },
        futureAffinity: 'kept',
      },
      futureSpecField: [1, 2, 3],
    },
  };

  it.each<[string, Record<string, string> | undefined]>([
    ['burst=always', undefined],
    ['with a namespace label too', { 'spillway.dev/burst': 'overflow' }],
  ])('%s', (_name, ns) => {
    const { object, patch } = placePod(raw as unknown as V1Pod, ns);
    expectPatchGives(raw, patch, object);
    const patched = applyJsonPatch(raw, patch);
    expect(patched.metadata.futureMeta).toEqual({ a: 1 });
    expect(patched.spec.futureSpecField).toEqual([1, 2, 3]);
    expect(patched.spec.containers[0]).toEqual(raw.spec.containers[0]);
    expect(patched.spec.tolerations[0]).toEqual(raw.spec.tolerations[0]);
    expect(patched.spec.affinity.futureAffinity).toBe('kept');
    expect(
      patched.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0],
    ).toMatchObject({ futureTerm: 1 });
  });

  it('an unchanged object gives an empty patch and is the raw object itself', () => {
    const plain = { ...raw, metadata: { name: 'p' } };
    const { object, patch } = placePod(plain as unknown as V1Pod, undefined);
    expect(patch).toEqual([]);
    expect(object).toBe(plain);
  });
});

describe('patch size follows the edits, not the object', () => {
  const tolerations = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      key: `k${i}`,
      operator: 'Equal',
      value: 'v',
      effect: 'NoSchedule',
    }));
  const terms = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      matchExpressions: [{ key: 'zone', operator: 'In', values: [`z${i}`] }],
    }));

  it('5,000 tolerations: burst=always appends two tolerations and adds one affinity', () => {
    const raw: V1Pod = {
      metadata: { name: 'p', labels: { 'spillway.dev/burst': 'always' } },
      spec: { containers: [{ name: 'a' }], tolerations: tolerations(5000) },
    };
    const { patch, object } = placePod(raw, undefined);
    expect(patch.map((o) => o.path)).toEqual([
      '/spec/tolerations/-',
      '/spec/tolerations/-',
      '/spec/affinity',
    ]);
    expectPatchGives(raw, patch, object);
  });

  it('5,000 tolerations, overflow: one toleration and one preferred term', () => {
    const raw: V1Pod = {
      metadata: { name: 'p', labels: { 'spillway.dev/burst': 'overflow' } },
      spec: { containers: [{ name: 'a' }], tolerations: tolerations(5000) },
    };
    const { patch, object } = placePod(raw, undefined);
    expect(patch).toHaveLength(2);
    expectPatchGives(raw, patch, object);
  });

  it('1,000 required terms: one append into each term (terms are ORed)', () => {
    const affinity = {
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms(1000) } },
    };
    const raw: V1Pod = {
      metadata: { name: 'p', labels: { 'spillway.dev/burst': 'always' } },
      spec: { containers: [{ name: 'a' }], tolerations: tolerations(5000), affinity },
    };
    const { patch, object } = placePod(raw, undefined);
    expect(patch).toHaveLength(2 + 1000);
    expectPatchGives(raw, patch, object);
  });

  it('a DaemonSet with 1,000 terms', () => {
    const raw = {
      spec: {
        selector: {},
        template: {
          spec: {
            containers: [{ name: 'a' }],
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms(1000) },
              },
            },
          },
        },
      },
    };
    const { patch, object } = excludeVirtualNodes(raw);
    expect(patch).toHaveLength(1000);
    expectPatchGives(raw, patch, object);
  });
});

describe('encodePatch', () => {
  it('omits an empty patch', () => {
    expect(encodePatch([])).toBeUndefined();
  });

  it('is base64 of the JSON operations', () => {
    const ops = [{ op: 'add' as const, path: '/a', value: 1 }];
    expect(JSON.parse(Buffer.from(encodePatch(ops)!, 'base64').toString())).toEqual(ops);
  });
});
