import { describe, expect, it } from 'vitest';
import { labelChanges, missingTaints, nodeMaySetLabel } from './node.ts';

describe('what NodeRestriction lets a virtual node do to its own Node', () => {
  it('sets its own labels and the kubelet’s, never node-restriction or other kubernetes.io labels', () => {
    for (const ok of [
      'spillway.dev/virtual-node',
      'type',
      'kubernetes.io/hostname',
      'topology.kubernetes.io/zone',
      'node.kubernetes.io/instance-type',
      'kubelet.kubernetes.io/anything',
      'example.com/generation',
    ])
      expect(nodeMaySetLabel(ok), ok).toBe(true);
    for (const refused of [
      'kubernetes.io/role',
      'node-role.kubernetes.io/agent',
      'node-restriction.kubernetes.io/trusted',
      'team.node-restriction.kubernetes.io/x',
      'k8s.io/anything',
    ])
      expect(nodeMaySetLabel(refused), refused).toBe(false);
  });

  it('patches only labels that changed and it may change; reports taints it cannot add', () => {
    expect(
      labelChanges(
        { 'kubernetes.io/role': 'agent', a: '1', 'kubernetes.io/hostname': 'vn' },
        {
          'kubernetes.io/role': 'agent',
          a: '2',
          'kubernetes.io/hostname': 'vn',
          'node-role.kubernetes.io/x': '',
        },
      ),
    ).toEqual({ patch: { a: '2' }, refused: ['node-role.kubernetes.io/x'] });
    const t = (key: string, value?: string) => ({ key, ...(value && { value }), effect: 'NoSchedule' });
    expect(missingTaints([t('node.kubernetes.io/unreachable'), t('p', 'eci')], [t('p', 'eci')])).toEqual([]);
    expect(missingTaints([t('p', 'eci')], [t('p', 'eci'), t('team', 'ml')])).toEqual([t('team', 'ml')]);
  });
});
