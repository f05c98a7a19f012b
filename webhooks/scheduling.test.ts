import type { V1Toleration } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { tolerates, type TaintMatch } from './scheduling.ts';

const provider: TaintMatch = { key: 'virtual-kubelet.io/provider', value: 'eci', effect: 'NoSchedule' };
const soft: TaintMatch = { key: 'spillway.dev/virtual-node', value: 'true', effect: 'PreferNoSchedule' };

describe('tolerates (Kubernetes semantics)', () => {
  it.each<[string, V1Toleration, TaintMatch, boolean]>([
    ['wildcard', { operator: 'Exists' }, provider, true],
    ['key Exists, any effect', { key: 'virtual-kubelet.io/provider', operator: 'Exists' }, provider, true],
    [
      'key Exists, same effect',
      { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
      provider,
      true,
    ],
    [
      'key Exists, other effect',
      { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoExecute' },
      provider,
      false,
    ],
    ['other key', { key: 'gpu', operator: 'Exists' }, provider, false],
    ['Equal, same value', { key: 'spillway.dev/virtual-node', operator: 'Equal', value: 'true' }, soft, true],
    ['empty operator means Equal', { key: 'spillway.dev/virtual-node', value: 'true' }, soft, true],
    [
      'Equal, other value',
      { key: 'spillway.dev/virtual-node', operator: 'Equal', value: 'false' },
      soft,
      false,
    ],
    [
      'Equal against "any value"',
      { key: 'virtual-kubelet.io/provider', operator: 'Equal', value: 'eci' },
      { ...provider, value: undefined },
      false,
    ],
    ['wildcard with an effect', { operator: 'Exists', effect: 'NoSchedule' }, soft, false],
  ])('%s', (_name, toleration, taint, expected) => {
    expect(tolerates(toleration, taint)).toBe(expected);
  });
});
