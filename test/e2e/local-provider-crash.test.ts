/**
 * e2e (issue 13, points 1 and 2): the operator is SIGKILLed right after each step of a local sandbox's set-up
 * and of its container's start; a fresh provider on the same host then adopts what it finds. Every pod must
 * end Ready with a working network and DNS (adopted, or torn down and created again as the virtual node does
 * for a pod without a sandbox), with exactly one run of its container and no restart counted, and must leave
 * nothing behind once deleted. Needs root; no control plane is used.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { SETUP_STEPS } from '../../operator/providers/local/adoption.ts';
import { detectCgroups, podCgroupUids } from '../../operator/providers/local/cgroups.ts';
import { vethName } from '../../operator/providers/local/network.ts';
import { LocalProvider, type LocalProviderOptions } from '../../operator/providers/local/provider.ts';
import type { SandboxRecord } from '../../operator/providers/local/sandbox.ts';
import { sandboxKey, type SandboxStatus } from '../../operator/providers/types.ts';
import type { CrashChildInput } from '../support/local-crash-child.ts';
import { removeNodeState } from '../support/local-network.ts';

const run = promisify(execFile);
const nodeName = 'spillway-crash-e2e';
const options: LocalProviderOptions = { nodeName, supervision: { backoffMs: 1000, maxBackoffMs: 4000 } };
const stateDir = `/run/spillway/${nodeName}`;
const marker = 'spillway-crash-test-server';
/** Binds 8080: a second run beside the first fails with "Address already in use". */
const server = `# ${marker}\nimport socket, time\ns = socket.socket()\ns.bind(("0.0.0.0", 8080))\ns.listen()\nprint("serving", flush=True)\nwhile True: s.accept()[0].close()`;

/** Like {@link server}, but its first run in a sandbox exits 1 (the container is restarted once). */
const flakyServer = `import os, sys\nif not os.path.exists("/tmp/ran-once"):\n    open("/tmp/ran-once", "w").close()\n    sys.exit(1)\n${server}`;

function testPod(name: string, script = server): V1Pod {
  return {
    metadata: { name, namespace: 'crash', uid: randomUUID() },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'web',
          image: 'python',
          command: ['/usr/bin/python3', '-c', script],
          readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
        },
      ],
    },
  };
}

/** Runs an operator that creates `pod` and is SIGKILLed right after `step`. */
async function crashAt(step: string, pod: V1Pod | V1Pod[], nth = 1): Promise<void> {
  const pods = Array.isArray(pod) ? pod : [pod];
  const file = `/tmp/spillway-crash-${pods[0]!.metadata!.uid}.json`;
  writeFileSync(file, JSON.stringify({ options, step, nth, pods } satisfies CrashChildInput));
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '../support/local-crash-child.ts'), file],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const [code, signal] = await new Promise<[number | null, string | null]>((r) =>
    child.once('exit', (c, s) => r([c, s])),
  );
  rmSync(file, { force: true });
  expect({ code, signal }, `the operator was killed at ${step}`).toEqual({ code: null, signal: 'SIGKILL' });
}

async function waitReady(provider: LocalProvider, pod: V1Pod): Promise<SandboxStatus> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await provider.status(sandboxKey(pod));
    if (s.phase === 'Running' && s.containers.every((c) => c.ready)) return s;
    if (Date.now() > deadline) throw new Error(`pod not Ready: ${JSON.stringify(s)}`);
    await sleep(200);
  }
}

function record(pod: V1Pod): SandboxRecord {
  const file = join(stateDir, 'sandboxes', pod.metadata!.uid!, 'sandbox.json');
  return JSON.parse(readFileSync(file, 'utf8')) as SandboxRecord;
}

/** Processes of the test server inside the pod's sandbox (its PID namespace). */
function serverProcesses(pod: V1Pod): number[] {
  const ns = readlinkSync(`/proc/${record(pod).processes.init.pid}/ns/pid`);
  const found: number[] = [];
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (
        argv[0] === '/usr/bin/python3' &&
        argv[2]?.includes(marker) &&
        readlinkSync(`/proc/${p}/ns/pid`) === ns
      )
        found.push(Number(p));
    } catch {
      /* exited */
    }
  }
  return found;
}

/** The sandbox's network and DNS as a container sees them. */
async function sandboxView(pod: V1Pod): Promise<{ eth0: string; service: string; resolv: string }> {
  const pid = String(record(pod).processes.init.pid);
  const inside = async (...argv: string[]) => (await run('nsenter', ['-t', pid, ...argv])).stdout;
  const [link] = JSON.parse(await inside('-n', 'ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0')) as {
    flags: string[];
    addr_info: { local: string }[];
  }[];
  const [route] = JSON.parse(await inside('-n', 'ip', '-j', 'route', 'get', '10.96.0.10')) as {
    dev: string;
    gateway: string;
  }[];
  return {
    eth0: `${link!.flags.includes('UP') ? 'up' : 'down'} ${link!.addr_info.map((a) => a.local).join(',')}`,
    service: `via ${route!.gateway} dev ${route!.dev}`,
    resolv: (await inside('-m', 'cat', '/etc/resolv.conf'))
      .split('\n')
      .find((l) => l.startsWith('nameserver'))!,
  };
}

/** What a deleted sandbox could leave behind. */
async function leftovers(uid: string): Promise<unknown> {
  const leases = existsSync(`${stateDir}/leases`) ? readdirSync(`${stateDir}/leases`) : [];
  const owners = leases.filter((ip) => readFileSync(`${stateDir}/leases/${ip}`, 'utf8') === uid);
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout;
  return {
    dir: existsSync(join(stateDir, 'sandboxes', uid)),
    leases: owners,
    veth: links.includes(vethName(uid)),
    cgroup: podCgroupUids(detectCgroups(), nodeName).has(uid),
  };
}

/** Starts a fresh provider (the restarted operator) and does what the virtual node does with its listing. */
async function restart(pod: V1Pod | V1Pod[]): Promise<{ provider: LocalProvider; adopted: boolean }> {
  const provider = await LocalProvider.start(options);
  const listed = new Set((await provider.list()).map((i) => i.key.uid));
  const pods = Array.isArray(pod) ? pod : [pod];
  // A pod without a sandbox is created (again).
  await Promise.all(pods.filter((p) => !listed.has(p.metadata!.uid!)).map((p) => provider.create(p)));
  return { provider, adopted: pods.every((p) => listed.has(p.metadata!.uid!)) };
}

async function expectHealthyThenDelete(provider: LocalProvider, pod: V1Pod, restarts = 0): Promise<void> {
  const status = await waitReady(provider, pod);
  expect(await sandboxView(pod)).toEqual({
    eth0: `up ${status.podIP}`,
    service: 'via 10.250.0.1 dev eth0',
    resolv: 'nameserver 10.96.0.10',
  });
  const [web] = status.containers;
  expect({
    restarts: web!.restartCount,
    state: web!.state.kind,
    lastExit: web!.lastState?.kind === 'terminated' ? web!.lastState.exitCode : undefined,
  }).toEqual({ restarts, state: 'running', lastExit: restarts > 0 ? 1 : undefined });
  expect(serverProcesses(pod)).toHaveLength(1);
  await provider.delete(sandboxKey(pod), { gracePeriodSeconds: 1 });
  expect(await leftovers(pod.metadata!.uid!)).toEqual({ dir: false, leases: [], veth: false, cgroup: false });
}

afterAll(async () => {
  const provider = await LocalProvider.start(options);
  for (const i of await provider.list()) await provider.delete(i.key, { gracePeriodSeconds: 0 });
  await provider.close();
  removeNodeState(nodeName);
});

describe('local provider after a kill -9 of the operator', () => {
  const steps = [...SETUP_STEPS, 'run-prepared', 'shim-started'];
  for (const step of steps) {
    it(`ends Ready with network, DNS and one run when killed after "${step}"`, async () => {
      const pod = testPod(`crash-${step}`);
      await crashAt(step, pod);
      const { provider } = await restart(pod);
      await expectHealthyThenDelete(provider, pod);
      await provider.close();
    });
  }

  for (const step of ['run-prepared', 'shim-started']) {
    it(`counts one restart, not two, and runs one server when killed after "${step}" of a restart`, async () => {
      const pod = testPod(`crash-restart-${step}`, flakyServer);
      await crashAt(step, pod, 2);
      const { provider, adopted } = await restart(pod);
      expect(adopted).toBe(true);
      await expectHealthyThenDelete(provider, pod, 1);
      await provider.close();
    });
  }

  it('does not adopt a sandbox whose network broke while the operator was away, and creates it again', async () => {
    const pod = testPod('broken-network');
    const first = await LocalProvider.start(options);
    await first.create(pod);
    await waitReady(first, pod);
    await first.close();
    const init = String(record(pod).processes.init.pid);
    await run('nsenter', ['-t', init, '-n', 'ip', 'link', 'set', 'eth0', 'down']);
    const { provider, adopted } = await restart(pod);
    expect(adopted).toBe(false);
    await expectHealthyThenDelete(provider, pod);
    await provider.close();
  });

  it('adopts a healthy sandbox with its running container', async () => {
    const pod = testPod('healthy');
    const first = await LocalProvider.start(options);
    await first.create(pod);
    await waitReady(first, pod);
    await first.close();
    const { provider, adopted } = await restart(pod);
    expect(adopted).toBe(true);
    await expectHealthyThenDelete(provider, pod);
    await provider.close();
  });

  it('leaves no broken sandbox and no second run after a kill in the middle of a burst of 8 creates', async () => {
    const pods = Array.from({ length: 8 }, (_, i) => testPod(`burst-${i}`));
    // 8 pods make about 100 steps (12 each, interleaved): the kill lands when some sandboxes are complete
    // and running and others half-built.
    await crashAt('*', pods, 75);
    const { provider } = await restart(pods);
    for (const pod of pods) await expectHealthyThenDelete(provider, pod);
    await provider.close();
  });
});
