import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ContainerReport, SandboxStatus } from '../providers/types.ts';
import { failedStatus, pendingStatus, podStatusFrom, qosClass, statusFingerprint } from './pod-status.ts';

const t0 = new Date('2026-11-23T10:00:00.000Z');
const t1 = new Date('2026-11-23T10:00:05.000Z');

const pod: V1Pod = {
  metadata: { name: 'web-1', namespace: 'shop', uid: 'u1' },
  spec: {
    nodeName: 'spillway-virtual',
    initContainers: [{ name: 'setup', image: 'busybox' }],
    containers: [
      { name: 'app', image: 'nginx:1.27' },
      { name: 'sidecar', image: 'envoy' },
    ],
  },
  status: {
    phase: 'Pending',
    conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: t0 }],
  },
};

const running: SandboxStatus = {
  key: { uid: 'u1', namespace: 'shop', name: 'web-1' },
  phase: 'Running',
  podIP: '10.250.0.7',
  startTime: t0,
  initContainers: [
    {
      name: 'setup',
      state: { kind: 'terminated', exitCode: 0, reason: 'Completed', finishedAt: t0 },
      restartCount: 0,
      ready: false,
      started: false,
    },
  ],
  containers: [
    {
      name: 'app',
      state: { kind: 'running', startedAt: t0 },
      restartCount: 0,
      ready: true,
      started: true,
      containerID: 'fake://a',
    },
    {
      name: 'sidecar',
      state: { kind: 'running', startedAt: t0 },
      restartCount: 2,
      ready: true,
      started: true,
    },
  ],
};

const cond = (s: ReturnType<typeof podStatusFrom>, type: string) =>
  s.conditions?.find((c) => c.type === type)?.status;

describe('podStatusFrom', () => {
  it('reports a running pod as Ready with IPs, host IP and every container status in spec order', () => {
    const s = podStatusFrom(pod, running, '127.0.0.1', t1);
    expect(s.phase).toBe('Running');
    expect(s.podIP).toBe('10.250.0.7');
    expect(s.podIPs).toEqual([{ ip: '10.250.0.7' }]);
    expect(s.hostIP).toBe('127.0.0.1');
    expect(s.qosClass).toBe('BestEffort');
    expect(s.startTime).toEqual(t0);
    for (const t of [
      'PodScheduled',
      'Initialized',
      'ContainersReady',
      'Ready',
      'PodReadyToStartContainers',
    ]) {
      expect(cond(s, t)).toBe('True');
    }
    expect(s.containerStatuses?.map((c) => [c.name, c.ready, c.restartCount])).toEqual([
      ['app', true, 0],
      ['sidecar', true, 2],
    ]);
    expect(s.initContainerStatuses?.[0]?.state?.terminated?.reason).toBe('Completed');
    // PodScheduled came from the scheduler and keeps its time.
    expect(s.conditions?.find((c) => c.type === 'PodScheduled')?.lastTransitionTime).toEqual(t0);
  });

  it('is not Ready while one container is not ready, and says why', () => {
    const notReady = {
      ...running,
      containers: [running.containers[0]!, { ...running.containers[1]!, ready: false }],
    };
    const s = podStatusFrom(pod, notReady, '127.0.0.1', t1);
    expect(cond(s, 'Ready')).toBe('False');
    expect(s.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('ContainersNotReady');
  });

  it('shows CrashLoopBackOff with the last termination and restart count', () => {
    const crashing: SandboxStatus = {
      ...running,
      containers: [
        {
          name: 'app',
          state: {
            kind: 'waiting',
            reason: 'CrashLoopBackOff',
            message: 'back-off 10s restarting failed container',
          },
          lastState: { kind: 'terminated', exitCode: 3, reason: 'Error', finishedAt: t0 },
          restartCount: 4,
          ready: false,
          started: false,
        },
      ],
    };
    const s = podStatusFrom(pod, crashing, '127.0.0.1', t1);
    const app = s.containerStatuses?.find((c) => c.name === 'app');
    expect(app?.state?.waiting?.reason).toBe('CrashLoopBackOff');
    expect(app?.lastState?.terminated?.exitCode).toBe(3);
    expect(app?.restartCount).toBe(4);
    // The sidecar has no report yet: it is waiting, not missing.
    expect(s.containerStatuses?.find((c) => c.name === 'sidecar')?.state?.waiting?.reason).toBe(
      'ContainerCreating',
    );
  });

  it('keeps lastTransitionTime when a condition does not change', () => {
    const first = podStatusFrom(pod, running, '127.0.0.1', t0);
    const second = podStatusFrom({ ...pod, status: first }, running, '127.0.0.1', t1);
    expect(second.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime).toEqual(t0);
  });

  it('marks a completed pod not Ready with reason PodCompleted', () => {
    const done: SandboxStatus = {
      ...running,
      phase: 'Succeeded',
      containers: running.containers.map((c) => ({
        ...c,
        ready: false,
        state: { kind: 'terminated' as const, exitCode: 0, reason: 'Completed', finishedAt: t1 },
      })),
    };
    const s = podStatusFrom(pod, done, '127.0.0.1', t1);
    expect(s.phase).toBe('Succeeded');
    expect(s.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'PodCompleted',
    });
  });

  it('lets provider conditions such as DisruptionTarget through', () => {
    const s = podStatusFrom(
      pod,
      {
        ...running,
        conditions: [
          {
            type: 'DisruptionTarget',
            status: 'True',
            reason: 'SpotReclaim',
            message: 'spot instance released in 3m',
          },
        ],
      },
      '127.0.0.1',
      t1,
    );
    expect(s.conditions?.find((c) => c.type === 'DisruptionTarget')).toMatchObject({
      status: 'True',
      reason: 'SpotReclaim',
    });
  });

  it('pending and failed statuses', () => {
    const p = pendingStatus(pod, '127.0.0.1', t1);
    expect(p.phase).toBe('Pending');
    expect(cond(p, 'Ready')).toBe('False');
    expect(p.containerStatuses?.map((c) => c.state?.waiting?.reason)).toEqual([
      'PodInitializing',
      'PodInitializing',
    ]);
    const f = failedStatus(pod, '127.0.0.1', 'UnsupportedPodSpec', 'spec.hostNetwork: not supported', t1);
    expect(f).toMatchObject({
      phase: 'Failed',
      reason: 'UnsupportedPodSpec',
      message: 'spec.hostNetwork: not supported',
    });
  });

  it('a Failed pod’s containers are terminated with its reason, not waiting in ContainerCreating', () => {
    const f = failedStatus(pod, '127.0.0.1', 'UnsupportedPodSpec', 'spec.hostNetwork: not supported', t1);
    for (const s of [...(f.initContainerStatuses ?? []), ...(f.containerStatuses ?? [])]) {
      expect(s.state).toEqual({
        terminated: {
          exitCode: 128,
          reason: 'UnsupportedPodSpec',
          message: 'spec.hostNetwork: not supported',
          finishedAt: t1,
        },
      });
      expect(s.ready).toBe(false);
    }
    expect(f.containerStatuses).toHaveLength(2);
    // Derived again later (same pod, now with that status), the termination keeps its time.
    const again = failedStatus(
      { ...pod, status: f },
      '127.0.0.1',
      'UnsupportedPodSpec',
      'spec.hostNetwork: not supported',
      new Date(t1.getTime() + 60_000),
    );
    expect(statusFingerprint(again)).toBe(statusFingerprint(f));
  });

  it('a pod the provider reports Failed shows unreported or waiting containers as ContainerStatusUnknown', () => {
    const s = podStatusFrom(
      pod,
      {
        ...running,
        phase: 'Failed',
        initContainers: [],
        containers: [
          {
            name: 'app',
            state: { kind: 'waiting', reason: 'ContainerCreating' },
            restartCount: 0,
            ready: false,
            started: false,
          },
        ],
      },
      '127.0.0.1',
      t1,
    );
    expect(s.containerStatuses?.map((c) => c.state?.terminated?.reason)).toEqual([
      'ContainerStatusUnknown',
      'ContainerStatusUnknown',
    ]);
    expect(s.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(137);
  });
});

describe('qosClass', () => {
  it.each<[string, V1Pod['spec'], string]>([
    ['no resources', { containers: [{ name: 'a' }] }, 'BestEffort'],
    ['requests only', { containers: [{ name: 'a', resources: { requests: { cpu: '1' } } }] }, 'Burstable'],
    [
      'limits equal requests',
      {
        containers: [
          {
            name: 'a',
            resources: { requests: { cpu: '1', memory: '1Gi' }, limits: { cpu: '1', memory: '1Gi' } },
          },
        ],
      },
      'Guaranteed',
    ],
    [
      'limits only (requests default to them)',
      { containers: [{ name: 'a', resources: { limits: { cpu: '1', memory: '1Gi' } } }] },
      'Guaranteed',
    ],
    ['cpu limit only', { containers: [{ name: 'a', resources: { limits: { cpu: '1' } } }] }, 'Burstable'],
  ])('%s → %s', (_n, spec, expected) => {
    expect(qosClass({ spec })).toBe(expected);
  });
});

describe('statusFingerprint', () => {
  it('ignores sub-second timestamp differences the apiserver drops, but sees a readiness change', () => {
    const a = podStatusFrom(pod, running, '127.0.0.1', new Date('2026-11-23T10:00:00.123Z'));
    const stored = JSON.parse(JSON.stringify(a).replace(/\.\d{3}Z/g, 'Z'));
    expect(statusFingerprint(stored)).toBe(statusFingerprint(a));
    const b = podStatusFrom(
      pod,
      { ...running, containers: [{ ...running.containers[0]!, ready: false }] },
      '127.0.0.1',
      t1,
    );
    expect(statusFingerprint(b)).not.toBe(statusFingerprint(a));
  });
});

describe('native sidecars (init containers with restartPolicy Always)', () => {
  const spec = {
    initContainers: [
      { name: 'setup', image: 'busybox' },
      { name: 'proxy', image: 'envoy', restartPolicy: 'Always' },
    ],
    containers: [{ name: 'app', image: 'nginx' }],
  };
  const sidecarPod: V1Pod = { metadata: { name: 'p', namespace: 'd', uid: 'u' }, spec };
  const at = new Date('2026-01-01T00:00:00Z');
  const done = { kind: 'terminated' as const, exitCode: 0, reason: 'Completed', finishedAt: at };
  const report = (proxy: Partial<ContainerReport>, app: Partial<ContainerReport>, phase = 'Running') =>
    ({
      key: { uid: 'u', namespace: 'd', name: 'p' },
      phase,
      initContainers: [
        { name: 'setup', state: done, restartCount: 0, ready: true, started: false },
        {
          name: 'proxy',
          state: { kind: 'running', startedAt: at },
          restartCount: 0,
          ready: true,
          started: true,
          ...proxy,
        },
      ],
      containers: [
        {
          name: 'app',
          state: { kind: 'running', startedAt: at },
          restartCount: 0,
          ready: true,
          started: true,
          ...app,
        },
      ],
    }) as SandboxStatus;
  const cond = (s: V1PodStatus, type: string) => s.conditions?.find((c) => c.type === type)?.status;

  it('is Initialized once the sidecar has started, and Ready only with the sidecar ready', () => {
    const waiting = { kind: 'waiting' as const, reason: 'PodInitializing' };
    const starting = podStatusFrom(
      sidecarPod,
      report({ started: false, ready: false }, { state: waiting, ready: false, started: false }, 'Pending'),
      '10.0.0.1',
      at,
    );
    expect(cond(starting, 'Initialized')).toBe('False');
    const s = podStatusFrom(sidecarPod, report({}, {}), '10.0.0.1', at);
    expect([cond(s, 'Initialized'), cond(s, 'Ready')]).toEqual(['True', 'True']);
    const unready = podStatusFrom(sidecarPod, report({ ready: false }, {}), '10.0.0.1', at);
    expect([cond(unready, 'ContainersReady'), cond(unready, 'Ready')]).toEqual(['False', 'False']);
  });

  it('stays Initialized while the sidecar restarts and after a Job-like pod stopped it', () => {
    const looping = { kind: 'waiting' as const, reason: 'CrashLoopBackOff' };
    const restarting = podStatusFrom(
      sidecarPod,
      report({ state: looping, started: false, ready: false }, {}),
      '10.0.0.1',
      at,
    );
    expect(cond(restarting, 'Initialized')).toBe('True');
    const killed = { kind: 'terminated' as const, exitCode: 137, reason: 'Error', finishedAt: at };
    const completed = podStatusFrom(
      sidecarPod,
      report(
        { state: killed, started: false, ready: false },
        { state: done, ready: false, started: false },
        'Succeeded',
      ),
      '10.0.0.1',
      at,
    );
    expect(cond(completed, 'Initialized')).toBe('True');
  });
});
