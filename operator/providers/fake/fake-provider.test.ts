import type { V1Pod } from '@kubernetes/client-node';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  isInsufficientCapacity,
  isNotFound,
  isThrottled,
  sandboxKey,
  ThrottledError,
  type ExecStreams,
  type SandboxStatus,
} from '../types.ts';
import { FakeProvider } from './fake-provider.ts';

let uidCounter = 0;
function pod(name: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name, namespace: 'default', uid: `uid-${name}-${++uidCounter}` },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], ...spec },
  };
}

function collectStatuses(provider: FakeProvider): SandboxStatus[] {
  const seen: SandboxStatus[] = [];
  provider.onStatus((s) => seen.push(s));
  return seen;
}

async function execIn(
  provider: FakeProvider,
  p: V1Pod,
  command: string[],
  stdin?: string,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const streams: ExecStreams = {
    stdout,
    stderr,
    tty: false,
    ...(stdin !== undefined && { stdin: Readable.from([stdin]) }),
  };
  const out = text(stdout);
  const err = text(stderr);
  const { exitCode } = await provider.exec(sandboxKey(p), 'app', command, streams);
  stdout.end();
  stderr.end();
  return { exitCode, stdout: await out, stderr: await err };
}

let provider: FakeProvider;
beforeEach(() => {
  provider = new FakeProvider();
});
afterEach(() => provider.close());

describe('creating sandboxes', () => {
  it('runs a pod at once with zero start latency, with an IP and running containers', async () => {
    const web = pod('web-1');
    const status = await provider.create(web);
    expect(status.phase).toBe('Running');
    expect(status.podIP).toMatch(/^10\.253\./);
    expect(status.containers[0]).toMatchObject({ name: 'app', ready: true, started: true, restartCount: 0 });
    expect(status.containers[0]!.state.kind).toBe('running');
    expect(provider.createCalls).toBe(1);
  });

  it('finds the instance it already made when create is replayed for the same UID (no duplicate)', async () => {
    const web = pod('web-1');
    const first = await provider.create(web);
    const again = await provider.create(web);
    expect(provider.size).toBe(1);
    expect(again.podIP).toBe(first.podIP);
    expect(provider.createCalls).toBe(2);
  });

  it('treats a pod re-created under the same name as a new instance (new UID)', async () => {
    await provider.create(pod('web-1'));
    await provider.create(pod('web-1'));
    expect(provider.size).toBe(2);
  });

  it('keeps a pod Pending for the start latency, then reports Running through onStatus', async () => {
    vi.useFakeTimers();
    try {
      provider.startLatencyMs = 500;
      const seen = collectStatuses(provider);
      const status = await provider.create(pod('slow'));
      expect(status.phase).toBe('Pending');
      expect(status.podIP).toBeUndefined();
      expect(status.containers[0]!.state).toEqual({ kind: 'waiting', reason: 'ContainerCreating' });
      await vi.advanceTimersByTimeAsync(499);
      expect(seen.map((s) => s.phase)).toEqual(['Pending']);
      await vi.advanceTimersByTimeAsync(1);
      expect(seen.map((s) => s.phase)).toEqual(['Pending', 'Running']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('starts 5000 pods without a timer each and notifies each pod once per tick', async () => {
    vi.useFakeTimers();
    try {
      const seen = collectStatuses(provider);
      const pods = Array.from({ length: 5000 }, (_, i) => pod(`burst-${i}`));
      await Promise.all(pods.map((p) => provider.create(p)));
      expect(vi.getTimerCount()).toBe(0);
      await Promise.resolve();
      expect(seen).toHaveLength(5000);
      expect(new Set(seen.map((s) => s.podIP)).size).toBe(5000);
      expect(seen.every((s) => s.phase === 'Running')).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shares one timer between all pods that are starting', async () => {
    vi.useFakeTimers();
    try {
      provider.startLatencyMs = 100;
      await Promise.all(Array.from({ length: 1000 }, (_, i) => provider.create(pod(`slow-${i}`))));
      expect(vi.getTimerCount()).toBe(1);
      await vi.advanceTimersByTimeAsync(100);
      const statuses = await Promise.all((await provider.list()).map((i) => provider.status(i.key)));
      expect(statuses.every((s) => s.phase === 'Running')).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses pods beyond its pod capacity with InsufficientCapacity', async () => {
    const small = new FakeProvider({ capacity: { pods: '1' } });
    await small.create(pod('a'));
    const err = await small.create(pod('b')).catch((e: unknown) => e);
    expect(isInsufficientCapacity(err)).toBe(true);
    expect(small.size).toBe(1);
  });
});

describe('injected failures', () => {
  it('fails the next create once, then works, creating nothing on the failed call', async () => {
    provider.nextCreateError = new ThrottledError('slow down', { retryAfterMs: 2000 });
    const web = pod('web-1');
    const err = await provider.create(web).catch((e: unknown) => e);
    expect(isThrottled(err) && err.retryAfterMs).toBe(2000);
    expect(provider.size).toBe(0);
    await provider.create(web);
    expect(provider.size).toBe(1);
    expect(provider.createCalls).toBe(2);
  });

  it('fails chosen calls through the error hook', async () => {
    const web = pod('web-1');
    await provider.create(web);
    provider.errorHook = (method, key) =>
      method === 'status' && key?.name === 'web-1' ? new Error('boom') : undefined;
    await expect(provider.status(sandboxKey(web))).rejects.toThrow('boom');
    await expect(provider.list()).resolves.toHaveLength(1);
  });

  it('fails ping while failPing is set, so the node can turn NotReady', async () => {
    await expect(provider.ping()).resolves.toBeUndefined();
    provider.failPing = true;
    await expect(provider.ping()).rejects.toThrow(/failPing/);
    expect(provider.pingCalls).toBe(2);
  });

  it('forgets everything on reset, but keeps its listeners', async () => {
    const seen = collectStatuses(provider);
    await provider.create(pod('a'));
    provider.failPing = true;
    provider.reset();
    expect(provider.size).toBe(0);
    expect(provider.createCalls).toBe(0);
    await expect(provider.ping()).resolves.toBeUndefined();
    await provider.create(pod('b'));
    await Promise.resolve();
    expect(seen.map((s) => s.key.name)).toContain('b');
  });
});

describe('deleting and listing', () => {
  it('deletes idempotently: a second delete and a delete of an unknown pod resolve', async () => {
    const web = pod('web-1');
    await provider.create(web);
    await provider.delete(sandboxKey(web));
    await provider.delete(sandboxKey(web));
    await provider.delete(sandboxKey(pod('never-created')));
    expect(provider.deleteCalls).toBe(3);
    const err = await provider.status(sandboxKey(web)).catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
  });

  it('lists instances with pod identity and creation time, for orphan clean-up', async () => {
    const web = pod('web-1');
    await provider.create(web);
    const [instance] = await provider.list();
    expect(instance!.key).toEqual(sandboxKey(web));
    expect(instance!.createdAt).toBeInstanceOf(Date);
    expect(instance!.providerID).toContain(web.metadata!.uid);
  });
});

describe('scripted containers', () => {
  it('restarts a container that exits under restartPolicy Always, keeping the last state', async () => {
    provider.script('default/crashy', 'app', { exitCode: 2, logs: ['starting', 'fatal: no config'] });
    const crashy = pod('crashy');
    const status = await provider.create(crashy);
    const app = status.containers[0]!;
    expect(status.phase).toBe('Running');
    expect(app.restartCount).toBe(1);
    expect(app.lastState).toMatchObject({ kind: 'terminated', exitCode: 2, reason: 'Error' });
    const previous = await provider.logs(sandboxKey(crashy), 'app', { previous: true });
    expect(await text(previous)).toBe('starting\nfatal: no config\n');
  });

  it('completes a job pod (restartPolicy Never) as Succeeded or Failed by exit code', async () => {
    provider.script('*', 'app', { exitCode: 0 });
    provider.script('default/bad-job', 'app', { exitCode: 3 });
    const ok = await provider.create(pod('good-job', { restartPolicy: 'Never' }));
    const bad = await provider.create(pod('bad-job', { restartPolicy: 'Never' }));
    expect(ok.phase).toBe('Succeeded');
    expect(bad.phase).toBe('Failed');
    expect(bad.containers[0]!.state).toMatchObject({ kind: 'terminated', exitCode: 3 });
  });

  it('exits a container later when scripted with a delay, and tells the listeners', async () => {
    vi.useFakeTimers();
    try {
      const seen = collectStatuses(provider);
      provider.script('*', 'app', { exitCode: 0, exitAfterMs: 1000 });
      await provider.create(pod('batch', { restartPolicy: 'OnFailure' }));
      await vi.advanceTimersByTimeAsync(1000);
      expect(seen.at(-1)!.phase).toBe('Succeeded');
    } finally {
      vi.useRealTimers();
    }
  });

  it('fails the pod when an init container fails', async () => {
    provider.script('*', 'migrate', { exitCode: 1 });
    const status = await provider.create(
      pod('with-init', { initContainers: [{ name: 'migrate', image: 'tool' }] }),
    );
    expect(status.phase).toBe('Failed');
    expect(status.initContainers[0]!.state).toMatchObject({ kind: 'terminated', exitCode: 1 });
    expect(status.containers[0]!.state).toMatchObject({ kind: 'waiting', reason: 'PodInitializing' });
  });
});

describe('logs', () => {
  it('follows a container until it stops', async () => {
    provider.script('*', 'app', { logs: ['ready'] });
    const web = pod('web-1', { restartPolicy: 'Never' });
    await provider.create(web);
    const stream = await provider.logs(sandboxKey(web), 'app', { follow: true });
    const all = text(stream);
    provider.appendLog(sandboxKey(web), 'app', 'GET / 200\n');
    provider.exitContainer(sandboxKey(web), 'app', 0);
    expect(await all).toBe('ready\nGET / 200\n');
  });

  it('answers NotFound for an unknown container or a missing previous instance', async () => {
    const web = pod('web-1');
    await provider.create(web);
    expect(isNotFound(await provider.logs(sandboxKey(web), 'nope').catch((e: unknown) => e))).toBe(true);
    const previous = await provider.logs(sandboxKey(web), 'app', { previous: true }).catch((e: unknown) => e);
    expect(isNotFound(previous)).toBe(true);
  });
});

describe('exec', () => {
  it('runs the builtin commands a user would try', async () => {
    const web = pod('web-1');
    await provider.create(web, { env: { app: [{ name: 'GREETING', value: 'hello' }] } });
    expect(await execIn(provider, web, ['echo', 'hello', 'world'])).toEqual({
      exitCode: 0,
      stdout: 'hello world\n',
      stderr: '',
    });
    expect((await execIn(provider, web, ['env'])).stdout).toBe('GREETING=hello\n');
    expect((await execIn(provider, web, ['cat'], 'round trip')).stdout).toBe('round trip');
    expect((await execIn(provider, web, ['sh', '-c', 'exit 3'])).exitCode).toBe(3);
    expect(await execIn(provider, web, ['nosuch'])).toMatchObject({
      exitCode: 126,
      stderr: /executable file not found/,
    });
    expect(provider.execCalls).toBe(5);
  });

  it('uses a scripted exec instead of the builtins', async () => {
    provider.script('*', 'app', {
      exec: async (command, streams) => {
        streams.stdout.write(`scripted: ${command.join(' ')}\n`);
        return { exitCode: 7 };
      },
    });
    const web = pod('web-1');
    await provider.create(web);
    expect(await execIn(provider, web, ['ls'])).toMatchObject({ exitCode: 7, stdout: 'scripted: ls\n' });
  });

  it('refuses exec into a stopped container', async () => {
    const job = pod('job', { restartPolicy: 'Never' });
    provider.script('*', 'app', { exitCode: 0 });
    await provider.create(job);
    await expect(execIn(provider, job, ['true'])).rejects.toThrow(/not running/);
  });
});

describe('attach', () => {
  it('shows output written after attaching, until the container stops', async () => {
    provider.script('*', 'app', { logs: ['written before attach'] });
    const web = pod('web-1', { restartPolicy: 'Never' });
    await provider.create(web);
    const stdout = new PassThrough();
    const seen = text(stdout);
    const attached = provider.attach(sandboxKey(web), 'app', { stdout, tty: false });
    provider.appendLog(sandboxKey(web), 'app', 'written while attached\n');
    provider.exitContainer(sandboxKey(web), 'app', 4);
    expect(await attached).toEqual({ exitCode: 4 });
    stdout.end();
    expect(await seen).toBe('written while attached\n');
    expect(provider.attachCalls).toBe(1);
  });

  it('detaches when the client goes away', async () => {
    const web = pod('web-1');
    await provider.create(web);
    const abort = new AbortController();
    const attached = provider.attach(sandboxKey(web), 'app', {
      stdout: new PassThrough(),
      tty: false,
      signal: abort.signal,
    });
    abort.abort();
    expect(await attached).toEqual({ exitCode: 0 });
    expect(provider.sandbox(web.metadata!.uid!)!.containers[0]!.log.followerCount).toBe(0);
  });

  it('echoes an attached client’s input into the output of a container with stdin: true', async () => {
    const web = pod('web-1', {
      restartPolicy: 'Never',
      containers: [{ name: 'app', image: 'busybox', stdin: true }],
    });
    await provider.create(web);
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const seen = text(stdout);
    const attached = provider.attach(sandboxKey(web), 'app', { stdin, stdout, tty: false });
    stdin.write('typed by the user\n');
    await new Promise((r) => setImmediate(r));
    provider.exitContainer(sandboxKey(web), 'app', 0);
    await attached;
    stdout.end();
    expect(await seen).toBe('typed by the user\n');
  });
});

describe('stats and capacity', () => {
  it('reports usage summed per pod, with cumulative CPU growing while it runs', async () => {
    vi.useFakeTimers();
    try {
      provider.script('*', '*', { usage: { cpuNanoCores: 250_000_000, memoryBytes: 64 << 20 } });
      const web = pod('web-1', { containers: [{ name: 'app' }, { name: 'sidecar' }] });
      await provider.create(web);
      await vi.advanceTimersByTimeAsync(2000);
      const stats = await provider.stats(sandboxKey(web));
      expect(stats.cpu).toEqual({ usageNanoCores: 500_000_000, usageCoreNanoSeconds: 1_000_000_000 });
      expect(stats.memory?.workingSetBytes).toBe(128 << 20);
      expect(stats.containers.map((c) => c.name)).toEqual(['app', 'sidecar']);
      expect(await provider.statsSummary()).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('registers enough capacity for the 1000-pod burst, with overrides', async () => {
    expect(await provider.capacity()).toMatchObject({
      pods: '10000',
      nodeInfo: { operatingSystem: 'linux' },
    });
    const custom = new FakeProvider({
      capacity: { cpu: '8', labels: { 'topology.kubernetes.io/zone': 'z1' } },
    });
    expect(await custom.capacity()).toMatchObject({
      cpu: '8',
      pods: '10000',
      labels: { 'topology.kubernetes.io/zone': 'z1' },
    });
  });
});

describe('port-forward', () => {
  it('echoes on the ports its containers declare and refuses the others', async () => {
    const p = pod('web', { containers: [{ name: 'app', image: 'nginx', ports: [{ containerPort: 8080 }] }] });
    await provider.create(p);
    const conn = await provider.portForward(sandboxKey(p), 8080);
    conn.end('ping');
    expect(await text(conn)).toBe('ping');
    await expect(provider.portForward(sandboxKey(p), 81)).rejects.toThrow(/connection refused/);
    expect(provider.portForwardCalls).toBe(2);
  });

  it('answers NotFound for a pod it does not run', async () => {
    await expect(provider.portForward(sandboxKey(pod('gone')), 80)).rejects.toSatisfy(isNotFound);
  });
});
