/**
 * The local provider over a FAKE CRI runtime (./cri/fake-runtime.ts): what it asks the runtime for a pod, how it
 * supervises containers (restarts, back-off, image pulls, init containers), and what a restarted operator adopts.
 * The real runtime (containerd) is exercised by test/e2e/local-provider.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../shared/wait.ts';
import { isNotFound, type SandboxStatus } from '../types.ts';
import { CriClient } from './cri/client.ts';
import { IMAGE, keyOf, ProviderFixture, until } from './provider.fixtures.ts';

const f = new ProviderFixture();
beforeEach(() => f.setUp());
afterEach(() => f.tearDown());

const app = (s: SandboxStatus) => s.containers[0]!;

describe('create', () => {
  it('runs the pod in a sandbox labelled with its UID, from its image, and reports it Running', async () => {
    const p = await f.start({ runtimeHandler: 'kata' });
    const pd = f.pod({}, [{ env: [{ name: 'COLOR', value: 'blue' }] }]);
    await p.create(pd);
    const s = await until(p, pd, 'running', (x) => x.phase === 'Running' && app(x).ready);
    expect(f.fake.calls('CreateContainer')[0]!.config.envs).toEqual([
      { key: 'COLOR', value: Buffer.from('blue') },
    ]);
    const [run] = f.fake.calls('RunPodSandbox');
    expect(run!.runtime_handler).toBe('kata');
    expect(run!.config.labels).toMatchObject({
      'io.kubernetes.pod.uid': pd.metadata!.uid,
      'spillway.dev/node': 'node-a',
    });
    expect(run!.config.log_directory).toBe(
      join(f.stateDir, 'pods', `shop_${pd.metadata!.name}_${pd.metadata!.uid}`, 'logs'),
    );
    const container = [...f.fake.containers.values()][0]!;
    expect(app(s)).toMatchObject({
      state: { kind: 'running' },
      restartCount: 0,
      image: IMAGE,
      imageID: 'sha256:busybox',
      containerID: `containerd://${container.id}`,
    });
    expect(s.podIP).toMatch(/^10\.250\.0\./);
    expect((await p.list()).map((i) => i.key.uid)).toEqual([pd.metadata!.uid]);
    // The pod's /etc/hosts names it on the address the runtime gave.
    const hosts = container.config.mounts.find(
      (m: { container_path: string }) => m.container_path === '/etc/hosts',
    );
    expect(readFileSync(hosts.host_path, 'utf8')).toContain(`${s.podIP}\t${pd.metadata!.name}`);
  });

  it('is idempotent per UID: a second create makes no second sandbox', async () => {
    const p = await f.start();
    const pd = f.pod();
    await Promise.all([p.create(pd), p.create(pd)]);
    await p.create(pd);
    expect(f.fake.sandboxes.size).toBe(1);
  });

  it('refuses a container without an image before touching the runtime', async () => {
    const p = await f.start();
    await expect(p.create(f.pod({}, [{ image: '' }]))).rejects.toMatchObject({ code: 'InvalidPodSpec' });
    expect(f.fake.calls('RunPodSandbox')).toHaveLength(0);
  });
});

describe('images', () => {
  it('pulls per policy: IfNotPresent skips a present image, Always pulls it', async () => {
    const p = await f.start();
    const a = f.pod({}, [{ imagePullPolicy: 'IfNotPresent' }]);
    await p.create(a);
    await until(p, a, 'running', (x) => app(x).state.kind === 'running');
    expect(f.fake.calls('PullImage')).toHaveLength(0);
    const b = f.pod({}, [{ imagePullPolicy: 'Always' }]);
    await p.create(b);
    await until(p, b, 'running', (x) => app(x).state.kind === 'running');
    expect(f.fake.calls('PullImage').map((r) => r.image.image)).toEqual([IMAGE]);
  });

  it('shows ErrImagePull then ImagePullBackOff for a missing image, the pod Pending, never Failed; runs once it appears', async () => {
    const p = await f.start();
    const missing = 'localhost:5000/spillway/nope:1';
    f.fake.pullFailures.set(missing, `failed to resolve reference "${missing}": not found`);
    const pd = f.pod({}, [{ image: missing }]);
    await p.create(pd);
    const first = await until(
      p,
      pd,
      'ErrImagePull',
      (x) =>
        app(x).state.kind === 'waiting' && (app(x).state as { reason: string }).reason === 'ErrImagePull',
    );
    expect(first.phase).toBe('Pending');
    expect(app(first).state).toMatchObject({ message: expect.stringContaining('not found') });
    const backoff = await until(
      p,
      pd,
      'ImagePullBackOff',
      (x) => (app(x).state as { reason?: string }).reason === 'ImagePullBackOff',
    );
    expect(backoff.phase).toBe('Pending');
    f.fake.pullFailures.delete(missing);
    await until(p, pd, 'running after the image appeared', (x) => x.phase === 'Running');
  });

  it('refuses to pull with policy Never (ErrImageNeverPull)', async () => {
    const p = await f.start();
    const pd = f.pod({}, [{ image: 'localhost:5000/absent:1', imagePullPolicy: 'Never' }]);
    await p.create(pd);
    await until(
      p,
      pd,
      'ErrImageNeverPull',
      (x) => (app(x).state as { reason?: string }).reason === 'ErrImageNeverPull',
    );
    expect(f.fake.calls('PullImage')).toHaveLength(0);
  });

  it('pulls with the credentials of the pod imagePullSecrets for the image registry', async () => {
    const p = await f.start();
    const image = 'localhost:5001/private/app:1';
    f.fake.requiredAuth.set(image, 'alice:s3cret');
    const config = { auths: { 'localhost:5001': { auth: Buffer.from('alice:s3cret').toString('base64') } } };
    const pd = f.pod({ imagePullSecrets: [{ name: 'regcred' }] }, [{ image }]);
    await p.create(pd, { imagePullSecrets: { regcred: Buffer.from(JSON.stringify(config)) } });
    await until(p, pd, 'running', (x) => x.phase === 'Running');
    // The secret's credentials, without a server_address that containerd would fail to match to the registry.
    expect(f.fake.calls('PullImage')[0]!.auth).toMatchObject({
      auth: Buffer.from('alice:s3cret').toString('base64'),
      server_address: '',
    });
  });
});

describe('supervision', () => {
  it('restarts a crashing container at once, then with back-off shown as CrashLoopBackOff', async () => {
    const p = await f.start();
    f.fake.exitOnStart = () => 1;
    const pd = f.pod();
    await p.create(pd);
    const looping = await until(
      p,
      pd,
      'CrashLoopBackOff',
      (x) => (app(x).state as { reason?: string }).reason === 'CrashLoopBackOff',
    );
    expect(looping.phase).toBe('Running');
    expect(app(looping).restartCount).toBeGreaterThanOrEqual(1);
    expect(app(looping).lastState).toMatchObject({ kind: 'terminated', exitCode: 1, reason: 'Error' });
    await until(p, pd, 'a later attempt', (x) => app(x).restartCount >= 3);
    // Only the latest attempt and the one before it are kept (logs --previous).
    expect(f.fake.containersNamed('app').length).toBeLessThanOrEqual(2);
  });

  it('ends a restartPolicy Never pod as Succeeded or Failed by the exit codes', async () => {
    const p = await f.start();
    f.fake.exitOnStart = (c) => (c.command?.[0] === 'false' ? 1 : 0);
    const ok = f.pod({ restartPolicy: 'Never' }, [{ command: ['true'] }]);
    const bad = f.pod({ restartPolicy: 'Never' }, [{ command: ['false'] }]);
    await p.create(ok);
    await p.create(bad);
    const s = await until(p, ok, 'Succeeded', (x) => x.phase === 'Succeeded');
    expect(app(s).state).toMatchObject({ kind: 'terminated', exitCode: 0, reason: 'Completed' });
    await until(p, bad, 'Failed', (x) => x.phase === 'Failed');
    expect(f.fake.containersNamed('app').filter((c) => c.config.command?.[0] === 'false')).toHaveLength(1);
  });

  it('runs init containers in order before the containers', async () => {
    const p = await f.start();
    f.fake.exitOnStart = (c) => (c.metadata.name.startsWith('init') ? 0 : undefined);
    const pd = f.pod({
      initContainers: [
        { name: 'init-a', image: IMAGE },
        { name: 'init-b', image: IMAGE },
      ],
    });
    await p.create(pd);
    const s = await until(p, pd, 'running', (x) => x.phase === 'Running' && app(x).state.kind === 'running');
    expect(s.initContainers.map((c) => c.state.kind)).toEqual(['terminated', 'terminated']);
    const order = f.fake.calls('CreateContainer').map((r) => r.config.metadata.name);
    expect(order).toEqual(['init-a', 'init-b', 'app']);
  });

  it('reports the OOM kill and the termination message of a run', async () => {
    const p = await f.start();
    const pd = f.pod({ restartPolicy: 'Never' });
    await p.create(pd);
    await until(p, pd, 'running', (x) => app(x).state.kind === 'running');
    f.fake.exit('app', 137, 'OOMKilled');
    const s = await until(p, pd, 'terminated', (x) => app(x).state.kind === 'terminated');
    expect(app(s).state).toMatchObject({ exitCode: 137, reason: 'OOMKilled', signal: 9 });
  });
});

describe('volumes', () => {
  it('writes materialised volumes behind ..data and refreshes them in place', async () => {
    const p = await f.start();
    const pd = f.pod({ volumes: [{ name: 'cfg', configMap: { name: 'c' } }] }, [
      { volumeMounts: [{ name: 'cfg', mountPath: '/etc/app' }] },
    ]);
    await p.create(pd, { volumes: { cfg: { files: [{ path: 'mode', content: Buffer.from('blue') }] } } });
    await until(p, pd, 'running', (x) => x.phase === 'Running');
    const m = [...f.fake.containers.values()][0]!.config.mounts.find(
      (x: { container_path: string }) => x.container_path === '/etc/app',
    );
    expect(m.readonly).toBe(true);
    expect(readFileSync(join(m.host_path, 'mode'), 'utf8')).toBe('blue');
    await p.updateVolumes(keyOf(pd), { cfg: { files: [{ path: 'mode', content: Buffer.from('green') }] } });
    expect(readFileSync(join(m.host_path, 'mode'), 'utf8')).toBe('green');
  });
});

describe('delete', () => {
  it('stops the containers with the grace period, removes the sandbox and the state', async () => {
    const p = await f.start();
    const pd = f.pod();
    await p.create(pd);
    await until(p, pd, 'running', (x) => x.phase === 'Running');
    await p.delete(keyOf(pd), { gracePeriodSeconds: 7 });
    expect(f.fake.calls('StopContainer').map((r) => Number(r.timeout))).toEqual([7]);
    expect(f.fake.sandboxes.size).toBe(0);
    await expect(p.status(keyOf(pd))).rejects.toSatisfy(isNotFound);
    expect(await p.list()).toEqual([]);
    await p.delete(keyOf(pd)); // again: resolves
  });
});

describe('adoption after an operator restart', () => {
  it('adopts a complete sandbox and keeps its containers running', async () => {
    const first = await f.start();
    const pd = f.pod();
    await first.create(pd);
    await until(first, pd, 'running', (x) => x.phase === 'Running');
    await first.close();
    const second = await f.start();
    const s = await until(second, pd, 'running', (x) => x.phase === 'Running');
    expect(app(s).restartCount).toBe(0);
    expect(f.fake.containers.size).toBe(1);
    expect(f.fake.calls('RemovePodSandbox')).toHaveLength(0);
  });

  it('removes a sandbox whose create died before its record', async () => {
    const first = await f.start({
      step: (name) => {
        if (name === 'sandbox') throw new Error('killed after RunPodSandbox');
      },
    });
    const pd = f.pod();
    await expect(first.create(pd)).rejects.toThrow(/killed/);
    // The failed create cleaned up; now leave one behind as a kill -9 would.
    const cri = new CriClient({ endpoint: f.fake.endpoint });
    await cri.runPodSandbox({
      metadata: { name: pd.metadata!.name!, uid: pd.metadata!.uid!, namespace: 'shop', attempt: 0 },
      hostname: 'x',
      log_directory: '/tmp',
      labels: { 'spillway.dev/node': 'node-a', 'io.kubernetes.pod.uid': pd.metadata!.uid! },
    });
    cri.close();
    await first.close();
    const second = await f.start();
    expect(f.fake.sandboxes.size).toBe(0);
    expect(await second.list()).toEqual([]);
    await second.create(pd);
    await until(second, pd, 'running', (x) => x.phase === 'Running');
    expect(f.fake.sandboxes.size).toBe(1);
  });

  it('removes a container created but never started and creates it again: never two for one name', async () => {
    let crash = true;
    const first = await f.start({
      step: (name) => {
        if (name === 'container-created' && crash) {
          crash = false;
          void first.close(); // the operator dies between CreateContainer and StartContainer
          throw new Error('killed');
        }
      },
    });
    const pd = f.pod();
    await first.create(pd);
    await waitFor('the container created', 5000, async () => f.fake.containers.size === 1);
    expect([...f.fake.containers.values()][0]!.state).toBe('CONTAINER_CREATED');
    const second = await f.start();
    const s = await until(
      second,
      pd,
      'running',
      (x) => x.phase === 'Running' && app(x).state.kind === 'running',
    );
    expect(app(s).restartCount).toBe(0);
    expect(f.fake.containersNamed('app').map((c) => c.state)).toEqual(['CONTAINER_RUNNING']);
  });
});

describe('a sandbox that dies', () => {
  it('is replaced by a new one, with the containers started again in it', async () => {
    const p = await f.start();
    const pd = f.pod();
    await p.create(pd);
    await until(p, pd, 'running', (x) => x.phase === 'Running');
    const [first] = [...f.fake.sandboxes.values()];
    // Its shim was killed: the sandbox is not ready, and its container ended with it.
    first!.state = 'SANDBOX_NOTREADY';
    f.fake.exit('app', 137);
    await waitFor(
      'a new sandbox',
      10_000,
      async () => f.fake.sandboxes.size === 1 && !f.fake.sandboxes.has(first!.id),
    );
    const s = await until(
      p,
      pd,
      'running in the new sandbox',
      (x) => x.phase === 'Running' && app(x).state.kind === 'running',
    );
    expect([...f.fake.containers.values()].map((c) => c.sandboxId)).toEqual([
      [...f.fake.sandboxes.keys()][0],
    ]);
    expect(s.podIP).toBe(f.fake.sandboxes.values().next().value!.ip);
  });
});

describe('node', () => {
  it('reports the runtime version and answers ping through the runtime', async () => {
    const p = await f.start();
    expect((await p.capacity()).nodeInfo.containerRuntimeVersion).toBe('fake://0.0.1');
    await p.ping();
    f.fake.failHook = (method) => {
      if (method === 'Version') throw Object.assign(new Error('down'), { code: 14, details: 'down' });
    };
    await expect(p.ping()).rejects.toThrow(/not answering/);
  });
});
