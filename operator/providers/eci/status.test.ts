import { describe, expect, it } from 'vitest';
import type { ContainerGroup } from './client.ts';
import { groupToStatus, keyOfGroup } from './status.ts';

const key = { uid: 'u1', namespace: 'default', name: 'web' };
const group = (g: Record<string, unknown>) =>
  ({ containerGroupId: 'eci-1', ...g }) as unknown as ContainerGroup;

describe('groupToStatus', () => {
  it.each<[string, Record<string, unknown>, Record<string, unknown>]>([
    ['Scheduling is Pending', { status: 'Scheduling' }, { phase: 'Pending' }],
    ['Restarting is still Running', { status: 'Restarting' }, { phase: 'Running' }],
    [
      'ScheduleFailed for lack of stock fails the pod as InsufficientCapacity',
      {
        status: 'ScheduleFailed',
        events: [
          { type: 'Warning', reason: 'ScheduleFailed', message: 'OperationDenied.NoStock: no spot stock' },
        ],
      },
      { phase: 'Failed', reason: 'InsufficientCapacity' },
    ],
    ['Expired without a spot notice', { status: 'Expired' }, { phase: 'Failed', reason: 'Expired' }],
    ['an unknown status', { status: 'Weird' }, { phase: 'Unknown' }],
  ])('%s', (_name, g, expected) => {
    expect(groupToStatus(group(g), key)).toMatchObject(expected);
  });

  it('maps IPs, container states and restart counts, and hides the kube-proxy sidecar', () => {
    const status = groupToStatus(
      group({
        status: 'Running',
        intranetIp: '192.168.0.9',
        creationTime: '2026-01-01T00:00:00Z',
        containers: [
          {
            name: 'app',
            image: 'nginx',
            ready: true,
            restartCount: 2,
            currentState: { state: 'Running', startTime: '2026-01-01T00:00:05Z' },
            previousState: {
              state: 'Terminated',
              exitCode: 137,
              reason: 'OOMKilled',
              finishTime: '2026-01-01T00:00:04Z',
            },
          },
          { name: 'spillway-kube-proxy', currentState: { state: 'Running' } },
        ],
        initContainers: [
          {
            name: 'init',
            currentState: { state: 'Terminated', exitCode: 0, finishTime: '2026-01-01T00:00:03Z' },
          },
        ],
      }),
      key,
    );
    expect(status).toMatchObject({
      phase: 'Running',
      podIP: '192.168.0.9',
      podIPs: ['192.168.0.9'],
      startTime: new Date('2026-01-01T00:00:00Z'),
    });
    expect(status.containers).toEqual([
      {
        name: 'app',
        image: 'nginx',
        ready: true,
        started: true,
        restartCount: 2,
        containerID: 'eci://eci-1/app',
        state: { kind: 'running', startedAt: new Date('2026-01-01T00:00:05Z') },
        lastState: {
          kind: 'terminated',
          exitCode: 137,
          reason: 'OOMKilled',
          finishedAt: new Date('2026-01-01T00:00:04Z'),
        },
      },
    ]);
    expect(status.initContainers[0]!.state).toMatchObject({
      kind: 'terminated',
      exitCode: 0,
      reason: 'Completed',
    });
  });

  it('reads the pod identity from the tags, and ignores groups that are not spillway’s', () => {
    const tags = [
      { key: 'spillway.dev/uid', value: 'u9' },
      { key: 'spillway.dev/namespace', value: 'ns' },
      { key: 'spillway.dev/pod', value: 'p' },
    ];
    expect(keyOfGroup(group({ tags }))).toEqual({ uid: 'u9', namespace: 'ns', name: 'p' });
    expect(keyOfGroup(group({ tags: [{ key: 'team', value: 'a' }] }))).toBeUndefined();
  });
});
