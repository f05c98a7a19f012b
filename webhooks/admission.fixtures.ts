/**
 * Test support for the webhooks: a strict JSON Patch applier that behaves like the apiserver's (evanphx/json-patch:
 * an `add` needs its parent to exist, array indexes must be in range), so that a test can check a patch by what it
 * does to the raw object rather than by its exact operations.
 */
import { expect } from 'vitest';
import type { PatchOperation } from './patch.ts';

function unescapeToken(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

/**
 * Applies `ops` to a deep copy of `raw` and returns it; throws on any operation the apiserver would refuse.
 * Only `add` exists in {@link PatchOperation}; anything else is refused too.
 */
export function applyJsonPatch<T>(raw: T, ops: readonly PatchOperation[]): T {
  const doc = { root: structuredClone(raw) as unknown };
  for (const op of ops) {
    if (op.op !== 'add') throw new Error(`unexpected operation ${JSON.stringify(op)}`);
    if (op.path !== '' && !op.path.startsWith('/')) throw new Error(`bad pointer ${op.path}`);
    const tokens = op.path === '' ? [] : op.path.slice(1).split('/').map(unescapeToken);
    let parent: unknown = doc;
    let key: string = 'root';
    for (const token of tokens) {
      parent = (parent as Record<string, unknown>)[key];
      if (typeof parent !== 'object' || parent === null) {
        throw new Error(`${op.path}: the parent of "${token}" does not exist`);
      }
      key = token;
    }
    const value = structuredClone(op.value);
    if (Array.isArray(parent)) {
      const index = key === '-' ? parent.length : Number(key);
      if (!/^(0|[1-9]\d*|-)$/.test(key) || index > parent.length) {
        throw new Error(`${op.path}: index out of range`);
      }
      parent.splice(index, 0, value);
    } else {
      (parent as Record<string, unknown>)[key] = value;
    }
  }
  return doc.root as T;
}

/** Asserts that `patch` turns `raw` into exactly `expected`, and that `raw` was left as it was. */
export function expectPatchGives(raw: unknown, patch: readonly PatchOperation[], expected: unknown): void {
  const before = structuredClone(raw);
  expect(applyJsonPatch(raw, patch)).toEqual(expected);
  expect(raw).toEqual(before);
}
