import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ContainerReport, SandboxStatus } from '../providers/types.ts';
import {
  containerEvents,
  goDuration,
  killingEvents,
  viewsFromPodStatus,
  viewsFromReport,
  withContainerWaiting,
} from './container-events.ts';
import { podStatusFrom } from './pod-status.ts';

const pod: V1Pod = {
  metadata: { name: 'web-1', namespace: 'shop', uid: 'u1' },
  spec: {
    initContainers: [{ name: 'init', image: 'busybox:1.36' }],
    containers: [{ name: 'app', image: 'nginx:1.27', readinessProbe: { tcpSocket: { port: 80 } } }],
  },
};
const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T00:00:01.5Z');

const waiting = (name: string, reason = 'ContainerCreating'): ContainerReport => ({
  name,
  state: { kind: 'waiting', reason },
  restartCount: 0,
  ready: false,
  started: false,
});
const running = (name: string, restartCount = 0, ready = true): ContainerReport => ({
  name,
  state: { kind: 'running', startedAt: t1 },
  restartCount,
  ready,
  started: true,
  containerID: `fake://u1/${name}/${restartCount}`,
});
const done = (name: string): ContainerReport => ({
  name,
  state: { kind: 'terminated', exitCode: 0, reason: 'Completed', startedAt: t0, finishedAt: t1 },
  restartCount: 0,
  ready: false,
  started: false,
  containerID: `fake://u1/${name}/0`,
});
const report = (init: ContainerReport, app: ContainerReport): SandboxStatus => ({
  key: { uid: 'u1', namespace: 'shop', name: 'web-1' },
  phase: 'Running',
  startTime: t0,
  initContainers: [init],
  containers: [app],
});
const reasons = (events: { reason: string }[]) => events.map((e) => e.reason);

describe('container lifecycle Events', () => {
  it('records Pulling, Pulled, Created, Started per container on its first start, init first', () => {
    const events = containerEvents(pod, [], report(done('init'), running('app')));
    expect(reasons(events)).toEqual([
      ...['Pulling', 'Pulled', 'Created', 'Started'],
      ...['Pulling', 'Pulled', 'Created', 'Started'],
    ]);
    expect(events[0]).toEqual({
      type: 'Normal',
      reason: 'Pulling',
      message: 'Pulling image "busybox:1.36"',
      fieldPath: 'spec.initContainers{init}',
    });
    expect(events.slice(4).map((e) => e.message)).toEqual([
      'Pulling image "nginx:1.27"',
      'Successfully pulled image "nginx:1.27" in 1.5s (1.5s including waiting)',
      'Created container: app',
      'Started container app',
    ]);
    expect(events[7]!.fieldPath).toBe('spec.containers{app}');
  });

  it('records nothing for an unchanged or merely repeated report', () => {
    const r = report(done('init'), running('app'));
    expect(containerEvents(pod, viewsFromReport(r), r)).toEqual([]);
  });

  it('records nothing again after a restart when the Pod status already shows the state', () => {
    const r = report(done('init'), running('app'));
    const status = podStatusFrom(pod, r, '10.0.0.1');
    expect(containerEvents(pod, viewsFromPodStatus(status), r)).toEqual([]);
  });

  it('records nothing while containers are being created', () => {
    expect(containerEvents(pod, [], report(waiting('init'), waiting('app', 'PodInitializing')))).toEqual([]);
  });

  it('records Pulled (already present), Created, Started on a restart', () => {
    const before = viewsFromReport(report(done('init'), running('app')));
    const events = containerEvents(pod, before, report(done('init'), running('app', 1)));
    expect(events.map((e) => `${e.reason}: ${e.message}`)).toEqual([
      'Pulled: Container image "nginx:1.27" already present on machine',
      'Created: Created container: app',
      'Started: Started container app',
    ]);
  });

  it('records BackOff once when a container enters CrashLoopBackOff', () => {
    const before = viewsFromReport(report(done('init'), running('app')));
    const crashing: ContainerReport = { ...waiting('app', 'CrashLoopBackOff'), restartCount: 1 };
    const events = containerEvents(pod, before, report(done('init'), crashing));
    expect(events).toEqual([
      {
        type: 'Warning',
        reason: 'BackOff',
        message: 'Back-off restarting failed container app in pod web-1_shop(u1)',
        fieldPath: 'spec.containers{app}',
      },
    ]);
    const again = report(done('init'), crashing);
    expect(containerEvents(pod, viewsFromReport(again), again)).toEqual([]);
  });

  it('records Failed with the runtime message for a StartError instead of Started', () => {
    const failed: ContainerReport = {
      name: 'app',
      state: {
        kind: 'terminated',
        exitCode: 128,
        reason: 'StartError',
        message: 'exec: "nginx": executable file not found in $PATH',
        finishedAt: t1,
      },
      restartCount: 0,
      ready: false,
      started: false,
      containerID: 'fake://u1/app/0',
    };
    const events = containerEvents(pod, [], report(done('init'), failed)).slice(4);
    expect(events.map((e) => `${e.type} ${e.reason}: ${e.message}`)).toEqual([
      'Normal Pulling: Pulling image "nginx:1.27"',
      'Normal Pulled: Successfully pulled image "nginx:1.27" in 0s (0s including waiting)',
      'Normal Created: Created container: app',
      'Warning Failed: Error: exec: "nginx": executable file not found in $PATH',
    ]);
  });

  it('records Failed for image and create errors, with BackOff for an image pull back-off', () => {
    const events = containerEvents(pod, [], report(done('init'), waiting('app', 'ImagePullBackOff')));
    expect(events.slice(4).map((e) => `${e.type} ${e.reason}: ${e.message}`)).toEqual([
      'Normal BackOff: Back-off pulling image "nginx:1.27"',
      'Warning Failed: Error: ImagePullBackOff',
    ]);
  });

  it('records a failed pull as the kubelet does: Pulling, the pull error, then the reason', () => {
    const failed: ContainerReport = {
      ...waiting('app', 'ErrImagePull'),
      state: { kind: 'waiting', reason: 'ErrImagePull', message: 'failed to resolve image: not found' },
    };
    const events = containerEvents(pod, [], report(done('init'), failed));
    expect(events.slice(4).map((e) => `${e.type} ${e.reason}: ${e.message}`)).toEqual([
      'Normal Pulling: Pulling image "nginx:1.27"',
      'Warning Failed: Failed to pull image "nginx:1.27": failed to resolve image: not found',
      'Warning Failed: Error: ErrImagePull',
    ]);
  });

  it('records Unhealthy when a running container with a readiness probe stops being ready', () => {
    const before = viewsFromReport(report(done('init'), running('app')));
    const events = containerEvents(pod, before, report(done('init'), running('app', 0, false)));
    expect(reasons(events)).toEqual(['Unhealthy']);
    expect(events[0]!.type).toBe('Warning');
    expect(events[0]!.message).toMatch(/^Readiness probe failed: /);
  });

  it('records Killing for each running container of a deleted pod', () => {
    const known = viewsFromReport(report(done('init'), running('app')));
    expect(killingEvents(pod, known)).toEqual([
      {
        type: 'Normal',
        reason: 'Killing',
        message: 'Stopping container app',
        fieldPath: 'spec.containers{app}',
      },
    ]);
  });

  it('marks the container whose config cannot be built as CreateContainerConfigError', () => {
    const status = withContainerWaiting(
      { containerStatuses: [{ name: 'app', image: 'x', imageID: '', ready: false, restartCount: 0 }] },
      'app',
      'CreateContainerConfigError',
      'configmap "cfg" not found',
    );
    expect(status.containerStatuses![0]!.state).toEqual({
      waiting: { reason: 'CreateContainerConfigError', message: 'configmap "cfg" not found' },
    });
  });

  it('formats durations as Go does', () => {
    expect([0, 842, 1500, 61_250].map(goDuration)).toEqual(['0s', '842ms', '1.5s', '1m1.25s']);
  });
});
