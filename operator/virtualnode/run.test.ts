import { describe, expect, it } from 'vitest';
import { cachedReads } from './run.ts';

describe('cachedReads', () => {
  it('reads a ConfigMap once for a burst of pods, again after the TTL, and never remembers a failure', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    const read = cachedReads(
      async (ns, name) => {
        reads += 1;
        if (fail) throw new Error('apiserver busy');
        return `${ns}/${name}#${reads}`;
      },
      5_000,
      () => now,
    );
    const burst = await Promise.all(Array.from({ length: 100 }, () => read('shop', 'kube-root-ca.crt')));
    expect(new Set(burst)).toEqual(new Set(['shop/kube-root-ca.crt#1']));
    expect(await read('other', 'kube-root-ca.crt')).toBe('other/kube-root-ca.crt#2');
    now = 6_000;
    fail = true;
    await expect(read('shop', 'kube-root-ca.crt')).rejects.toThrow('apiserver busy');
    fail = false;
    expect(await read('shop', 'kube-root-ca.crt')).toBe('shop/kube-root-ca.crt#4');
  });
});
