import { describe, expect, it } from 'vitest';
import { parseVirtualNodes } from './config.ts';

describe('parseVirtualNodes', () => {
  it('reads several nodes with their labels, taints and defaults', () => {
    const nodes = parseVirtualNodes(`
nodes:
- name: spillway-virtual-spot
  provider: fake
  kubeletPort: 10250
  labels: {spillway.dev/capacity: spot}
  taints: [{key: capacity, value: spot, effect: NoSchedule}]
- name: spillway-virtual-on-demand
  provider: fake
  kubeletPort: 10251
  podCIDR: 10.250.1.0/24
`);
    expect(nodes).toEqual([
      {
        provider: 'fake',
        config: {
          name: 'spillway-virtual-spot',
          internalIP: '127.0.0.1',
          kubeletPort: 10250,
          labels: { 'spillway.dev/capacity': 'spot' },
          taints: [{ key: 'capacity', value: 'spot', effect: 'NoSchedule' }],
        },
      },
      {
        provider: 'fake',
        config: {
          name: 'spillway-virtual-on-demand',
          internalIP: '127.0.0.1',
          kubeletPort: 10251,
          podCIDR: '10.250.1.0/24',
        },
      },
    ]);
  });

  it.each([
    [
      'an unknown key',
      'nodes: [{name: a, provider: fake, kubeletPort: 1, kubletPort: 2}]',
      /nodes.0: Unrecognized key.*kubletPort/,
    ],
    ['a missing port', 'nodes: [{name: a, provider: fake}]', /nodes.0.kubeletPort/],
    [
      'an upper-case name',
      'nodes: [{name: A, provider: fake, kubeletPort: 1}]',
      /nodes.0.name: a node name is a DNS subdomain/,
    ],
    [
      'duplicate names',
      'nodes: [{name: a, provider: fake, kubeletPort: 1}, {name: a, provider: fake, kubeletPort: 2}]',
      /node names must be unique/,
    ],
    [
      'a shared kubelet port',
      'nodes: [{name: a, provider: fake, kubeletPort: 1}, {name: b, provider: fake, kubeletPort: 1}]',
      /own kubelet address/,
    ],
    ['no nodes', 'nodes: []', /nodes: /],
    [
      'a bad taint effect',
      'nodes: [{name: a, provider: fake, kubeletPort: 1, taints: [{key: k, effect: Sometimes}]}]',
      /nodes.0.taints.0.effect/,
    ],
  ])('rejects %s with the path of the problem', (_what, text, message) => {
    expect(() => parseVirtualNodes(text, 'nodes.yaml')).toThrow(message);
  });
});
