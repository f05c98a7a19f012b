import type { V1Pod } from '@kubernetes/client-node';
import { applyPatch } from 'rfc6902';
import { describe, expect, it } from 'vitest';
import { admissionPatch, encodePatch } from './patch.ts';
import { placePod } from './placement.ts';

/** Applies a patch the way the apiserver does (to its own copy of the raw object). */
function apply(raw: unknown, ops: ReturnType<typeof admissionPatch>) {
  const target = structuredClone(raw);
  expect(applyPatch(target, ops).every((r) => r === null)).toBe(true);
  return target;
}

describe('admissionPatch: pointer escaping', () => {
  it.each<[string, string, string]>([
    ['a key with /', 'spillway.dev/burst', '/metadata/labels/spillway.dev~1burst'],
    ['a key with ~', 'odd~key', '/metadata/labels/odd~0key'],
    ['a key with ~ and /', 'x~/y', '/metadata/labels/x~0~1y'],
    ['a key with ~1 literally', 'a~1b', '/metadata/labels/a~01b'],
  ])('%s', (_name, key, pointer) => {
    const raw = { metadata: { labels: { app: 'web' } } };
    const mutated = { metadata: { labels: { app: 'web', [key]: 'v' } } };
    const ops = admissionPatch(raw, mutated);
    expect(ops).toEqual([{ op: 'add', path: pointer, value: 'v' }]);
    expect(apply(raw, ops)).toEqual(mutated);
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
    const ops = admissionPatch(raw, placePod(raw, undefined).object);
    expect(ops).toEqual([
      { op: 'add', path: '/metadata/annotations/k8s.aliyun.com~1eci-spot-strategy', value: 'SpotAsPriceGo' },
    ]);
  });
});

describe('admissionPatch: never removes what the user wrote', () => {
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
      futureSpecField: [1, 2, 3],
    },
  };

  it.each<[string, Record<string, string> | undefined]>([
    ['burst=always', undefined],
    ['with a namespace label too', { 'spillway.dev/burst': 'overflow' }],
  ])('%s', (_name, ns) => {
    const { object } = placePod(raw as unknown as V1Pod, ns);
    const ops = admissionPatch(raw, object);
    expect(ops.filter((o) => o.op === 'remove' || o.op === 'replace' || o.op === 'move')).toEqual([]);
    const patched = apply(raw, ops) as typeof raw;
    expect(patched).toEqual(object);
    expect(patched.metadata.futureMeta).toEqual({ a: 1 });
    expect(patched.spec.futureSpecField).toEqual([1, 2, 3]);
    expect(patched.spec.containers[0]).toEqual(raw.spec.containers[0]);
    expect(patched.spec.tolerations[0]).toEqual(raw.spec.tolerations[0]);
  });

  it('an unchanged object gives an empty patch', () => {
    expect(admissionPatch(raw, structuredClone(raw))).toEqual([]);
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
