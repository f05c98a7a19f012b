/**
 * Native sidecars (init containers with `restartPolicy: Always`) on the local provider over a FAKE CRI runtime
 * (./cri/fake-runtime.ts): they start in their place in the init order without blocking it, run and restart for
 * the pod's life whatever its restartPolicy, count for readiness, and stop after the main containers.
 * test/e2e/local-provider.test.ts runs one on containerd.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.ts';
import { waitFor } from '../../shared/wait.ts';
import type { ContainerReport, SandboxStatus } from '../types.ts';
import { CriClient } from './cri/client.ts';
import { PodWorker } from './pod-worker.ts';
import { IMAGE, keyOf, ProviderFixture, until } from './provider.fixtures.ts';

const f = new ProviderFixture();
beforeEach(() => f.setUp());
afterEach(() => f.tearDown());

const sidecar = (name: string, extra: Partial<V1Container> = {}): V1Container => ({
  name,
  image: IMAGE,
  restartPolicy: 'Always',
  ...extra,
});
const init = (name: string): V1Container => ({ name, image: IMAGE, command: ['true'] });
const named = (s: SandboxStatus, name: string): ContainerReport =>
  [...s.initContainers, ...s.containers].find((c) => c.name === name)!;
const created = () => f.fake.calls('CreateContainer').map((r) => r.config.metadata.name as string);
const stopped = () =>
  f.fake
    .calls('StopContainer')
    .map((r) => f.fake.containers.get(r.container_id)?.config.metadata.name as string);

describe('native sidecars', () => {
  it('start in the init order, let the next init container start once started, and run beside the containers', async () => {
    const p = await f.start();
    f.fake.exitOnStart = (c) => (c.command?.[0] === 'true' ? 0 : undefined);
    const pd = f.pod({ initContainers: [init('init-a'), sidecar('proxy'), init('init-b')] });
    await p.create(pd);
    const s = await until(
      p,
      pd,
      'running',
      (x) => x.phase === 'Running' && x.containers[0]!.state.kind === 'running',
    );
    expect(created()).toEqual(['init-a', 'proxy', 'init-b', 'app']);
    expect(named(s, 'proxy')).toMatchObject({ state: { kind: 'running' }, started: true, ready: true });
    expect(named(s, 'init-b')).toMatchObject({ state: { kind: 'terminated', exitCode: 0 } });
    expect(named(s, 'app')).toMatchObject({ state: { kind: 'running' }, ready: true });
  });

  it('hold the next init container until their startupProbe passes', async () => {
    const p = await f.start();
    f.fake.exitOnStart = (c) => (c.command?.[0] === 'true' ? 0 : undefined);
    let up = false;
    f.fake.failHook = (method) => {
      if (method === 'ExecSync' && !up)
        throw Object.assign(new Error('not up'), { code: 2, details: 'not up' });
    };
    const probe = { exec: { command: ['check'] }, periodSeconds: 1, failureThreshold: 1000 };
    const pd = f.pod({ initContainers: [sidecar('proxy', { startupProbe: probe }), init('init-b')] });
    await p.create(pd);
    await waitFor('two failed startup probes', 10_000, async () => f.fake.calls('ExecSync').length >= 2);
    const waiting = await p.status(keyOf(pd));
    expect(waiting.phase).toBe('Pending');
    expect(named(waiting, 'proxy')).toMatchObject({ state: { kind: 'running' }, started: false });
    expect(created()).toEqual(['proxy']);
    up = true;
    await until(p, pd, 'running', (x) => x.phase === 'Running' && x.containers[0]!.state.kind === 'running');
    expect(created()).toEqual(['proxy', 'init-b', 'app']);
  });

  it('count for the pod readiness through their readinessProbe', async () => {
    const p = await f.start();
    const pd = f.pod({
      initContainers: [
        sidecar('proxy', { readinessProbe: { exec: { command: ['false'] }, periodSeconds: 1 } }),
      ],
    });
    await p.create(pd);
    const s = await until(p, pd, 'running', (x) => x.containers[0]!.state.kind === 'running');
    await waitFor('a readiness probe', 10_000, async () => f.fake.calls('ExecSync').length >= 1);
    expect(named(await p.status(keyOf(pd)), 'proxy')).toMatchObject({ started: true, ready: false });
    expect(named(s, 'app').ready).toBe(true);
  });

  it('restart when they exit, even in a restartPolicy Never pod, with the back-off', async () => {
    const p = await f.start();
    const pd = f.pod({ restartPolicy: 'Never', initContainers: [sidecar('proxy')] });
    await p.create(pd);
    await until(p, pd, 'running', (x) => x.containers[0]!.state.kind === 'running');
    f.fake.exit('proxy', 1);
    const s = await until(
      p,
      pd,
      'the sidecar running again',
      (x) => named(x, 'proxy').restartCount === 1 && named(x, 'proxy').state.kind === 'running',
    );
    expect(named(s, 'proxy').lastState).toMatchObject({ kind: 'terminated', exitCode: 1 });
    expect(s.phase).toBe('Running');
    expect(named(s, 'app')).toMatchObject({ state: { kind: 'running' }, restartCount: 0 });
    // The second exit waits for the back-off, shown as CrashLoopBackOff; then it runs again.
    f.fake.exit('proxy', 1);
    await until(
      p,
      pd,
      'CrashLoopBackOff',
      (x) => (named(x, 'proxy').state as { reason?: string }).reason === 'CrashLoopBackOff',
    );
    await until(p, pd, 'a third run', (x) => named(x, 'proxy').restartCount === 2);
  });

  it('let a Job-like pod end Succeeded or Failed by its containers, then stop in reverse order', async () => {
    const p = await f.start();
    const pd = f.pod({ restartPolicy: 'Never', initContainers: [sidecar('log-a'), sidecar('log-b')] }, [
      { command: ['sleep', '1'] },
    ]);
    await p.create(pd);
    await until(p, pd, 'running', (x) => x.containers[0]!.state.kind === 'running');
    f.fake.exit('app', 0);
    const s = await until(p, pd, 'Succeeded', (x) => x.phase === 'Succeeded');
    expect(stopped()).toEqual(['log-b', 'log-a']);
    await until(p, pd, 'sidecars stopped', (x) =>
      ['log-a', 'log-b'].every((n) => named(x, n).state.kind === 'terminated'),
    );
    expect(named(s, 'app').state).toMatchObject({ kind: 'terminated', exitCode: 0 });
    expect(f.fake.containersNamed('log-a')).toHaveLength(1); // not restarted after the pod ended

    const bad = f.pod({ restartPolicy: 'OnFailure', initContainers: [sidecar('log-a')] }, [{}]);
    await p.create(bad);
    await until(p, bad, 'running', (x) => x.containers[0]!.state.kind === 'running');
    f.fake.exit('app', 0); // OnFailure: a clean exit ends it
    await until(p, bad, 'Succeeded', (x) => x.phase === 'Succeeded');
  });

  it('stop after the main containers, in reverse order, when the pod is deleted', async () => {
    const cri = new CriClient({ endpoint: f.fake.endpoint });
    const dir = mkdtempSync(join(tmpdir(), 'sidecar-worker-'));
    try {
      const pd: V1Pod = {
        metadata: { name: 'web', namespace: 'shop', uid: 'uid-w' },
        spec: {
          initContainers: [sidecar('log-a'), init('init-b'), sidecar('log-c')],
          containers: [
            { name: 'app', image: IMAGE },
            { name: 'app2', image: IMAGE },
          ],
        },
      };
      f.fake.exitOnStart = (c) => (c.command?.[0] === 'true' ? 0 : undefined);
      const sandboxConfig = {
        metadata: { name: 'web', uid: 'uid-w', namespace: 'shop', attempt: 0 },
        hostname: 'web',
        log_directory: join(dir, 'logs'),
        labels: {},
      };
      const sandboxId = await cri.runPodSandbox(sandboxConfig);
      const worker = new PodWorker(
        {
          key: keyOf(pd),
          createdAt: new Date().toISOString(),
          pod: pd,
          env: {},
          sandboxId,
          sandboxConfig,
          ips: [],
        },
        {
          cri,
          nodeName: 'node-a',
          paths: {
            volume: (n) => join(dir, 'volumes', n),
            hosts: join(dir, 'hosts'),
            terminationMessage: (c, a) => join(dir, 'termination', c, String(a)),
            logDirectory: join(dir, 'logs'),
          },
          supervision: { backoffMs: 100, maxBackoffMs: 400, backoffResetMs: 60_000 },
          log: createLogger({ level: 'silent' }),
          changed: () => undefined,
          event: () => undefined,
          sandboxLost: () => undefined,
        },
      );
      await waitFor('all running', 10_000, async () => {
        await worker.sync();
        return worker.status().containers.every((c) => c.state.kind === 'running');
      });
      worker.detach();
      await worker.stopContainers(10);
      expect(stopped().slice(0, 2).sort()).toEqual(['app', 'app2']);
      expect(stopped().slice(2)).toEqual(['log-c', 'log-a']);
    } finally {
      cri.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
