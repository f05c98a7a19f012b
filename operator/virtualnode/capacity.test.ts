import { describe, expect, it } from 'vitest';
import { FAKE_CAPACITY } from '../providers/fake/fake-provider.ts';
import { localCapacityDefaults, parseCapacityFlag, parseVirtualNodes } from './config.ts';
import { nodeStatus, type VirtualNodeConfig } from './node.ts';

const config: VirtualNodeConfig = { name: 'vn', internalIP: '127.0.0.1', kubeletPort: 10250 };
const healthy = { ok: true, message: '' };

describe('virtual node capacity', () => {
  it('reads --capacity as Kubernetes resource names and quantities', () => {
    expect(parseCapacityFlag('cpu=64, memory=256Gi,pods=500,ephemeral-storage=1Ti')).toEqual({
      cpu: '64',
      memory: '256Gi',
      pods: '500',
      'ephemeral-storage': '1Ti',
    });
    expect(parseCapacityFlag('cpu=500m')).toEqual({ cpu: '500m' });
  });

  it('refuses a bad --capacity naming every problem at once', () => {
    const message = (() => {
      try {
        parseCapacityFlag('cpu=lots,gpu=1,pods=1.5,memory');
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    for (const part of ['"memory" is not resource=quantity', 'cpu:', 'pods:', 'unknown resource gpu'])
      expect(message).toContain(part);
  });

  it('reads a node file capacity and refuses an unknown resource with its path', () => {
    const [node] = parseVirtualNodes(
      'nodes: [{name: a, provider: fake, kubeletPort: 1, capacity: {cpu: "8", ephemeral-storage: 2Ti}}]',
    );
    expect(node!.config.capacity).toEqual({ cpu: '8', 'ephemeral-storage': '2Ti' });
    expect(() =>
      parseVirtualNodes('nodes: [{name: a, provider: fake, kubeletPort: 1, capacity: {gpus: "8"}}]'),
    ).toThrow(/nodes\.0\.capacity.*gpus/);
  });

  it('defaults the local provider to the host: nproc, MemTotal, 110 pods, the state disk', () => {
    expect(
      localCapacityDefaults({ cpus: 6, memoryBytes: 16 * 1024 ** 3, diskBytes: 500 * 1024 ** 3 }),
    ).toEqual({
      cpu: '6',
      memory: `${16 * 1024 ** 2}Ki`,
      pods: '110',
      'ephemeral-storage': `${500 * 1024 ** 2}Ki`,
    });
  });

  it('advertises the configured resources over the provider capacity, in capacity and allocatable', () => {
    const status = nodeStatus(
      { ...config, capacity: { cpu: '12', 'ephemeral-storage': '3Ti' } },
      FAKE_CAPACITY,
      healthy,
      undefined,
    );
    const want = {
      cpu: '12',
      memory: FAKE_CAPACITY.memory,
      pods: FAKE_CAPACITY.pods,
      'ephemeral-storage': '3Ti',
    };
    expect(status.capacity).toEqual(want);
    expect(status.allocatable).toEqual(want);
  });

  it('keeps the provider capacity when none is configured', () => {
    expect(nodeStatus(config, FAKE_CAPACITY, healthy, undefined).capacity).toMatchObject({ cpu: '1000' });
  });
});
