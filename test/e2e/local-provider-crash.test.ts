/**
 * e2e (issue 13, points 1 and 2; issue 15, point 7): the operator is SIGKILLed right after each step of a local
 * pod's creation and of its container's start; a fresh provider on the same host then adopts what it finds in
 * containerd. Every pod must end Ready with its network and DNS (adopted, or torn down and created again as the
 * virtual node does for a pod without a sandbox), with exactly one container for its name and no restart counted,
 * and must leave nothing behind once deleted. Needs root and the test cluster's containerd; the control plane is
 * not used.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { CriClient } from '../../operator/providers/local/cri/client.ts';
import { NODE_LABEL, POD_UID_LABEL } from '../../operator/providers/local/plan.ts';
import {
  CREATE_STEPS,
  LocalProvider,
  type LocalProviderOptions,
} from '../../operator/providers/local/provider.ts';
import { sandboxKey, type SandboxStatus } from '../../operator/providers/types.ts';
import { defaultClusterDir, LocalCluster } from '../support/cluster.ts';
import type { CrashChildInput } from '../support/local-crash-child.ts';
import { removeNodeState, testCriEndpoint } from '../support/local-network.ts';

const nodeName = 'spillway-crash-e2e';
const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
const options: LocalProviderOptions = {
  nodeName,
  criEndpoint: testCriEndpoint(),
  supervision: { backoffMs: 1000, maxBackoffMs: 4000 },
};
const stateDir = `/run/spillway/${nodeName}`;
const cri = new CriClient({ endpoint: options.criEndpoint });

/**
 * agnhost's netexec binds 8080: a second run beside the first would fail with "address already in use". With
 * `flaky`, its first run in the pod exits 1 (a marker on an emptyDir survives the restart), so it restarts once.
 */
function testPod(name: string, flaky = false): V1Pod {
  const serve = '/agnhost netexec --http-port=8080';
  const script = flaky
    ? `if [ ! -e /state/ran-once ]; then touch /state/ran-once; exit 1; fi; exec ${serve}`
    : `exec ${serve}`;
  return {
    metadata: { name, namespace: 'crash', uid: randomUUID() },
    spec: {
      terminationGracePeriodSeconds: 1,
      volumes: [{ name: 'state', emptyDir: {} }],
      containers: [
        {
          name: 'web',
          image: imageRef('agnhost', cluster.registry),
          command: ['sh', '-c', script],
          volumeMounts: [{ name: 'state', mountPath: '/state' }],
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
    const s = await provider.status(sandboxKey(pod)).catch(() => undefined);
    if (s?.phase === 'Running' && s.containers.every((c) => c.ready)) return s;
    if (Date.now() > deadline) throw new Error(`pod not Ready: ${JSON.stringify(s)}`);
    await sleep(200);
  }
}

/** The pod's containers in containerd that are not exited: exactly one means one run. */
async function liveContainers(pod: V1Pod): Promise<number> {
  const all = await cri.listContainers({ labels: { [POD_UID_LABEL]: pod.metadata!.uid! } });
  return all.filter((c) => c.state !== 'CONTAINER_EXITED').length;
}

/** The pod's DNS as its container sees it. */
async function nameserver(provider: LocalProvider, pod: V1Pod): Promise<string> {
  const out = new PassThrough();
  await provider.exec(sandboxKey(pod), 'web', ['cat', '/etc/resolv.conf'], { stdout: out, tty: false });
  out.end();
  return (await text(out)).split('\n').find((l) => l.startsWith('nameserver')) ?? '';
}

/** What a deleted pod could leave behind. */
async function leftovers(uid: string): Promise<unknown> {
  const pods = existsSync(`${stateDir}/pods`) ? readdirSync(`${stateDir}/pods`) : [];
  return {
    sandboxes: (await cri.listPodSandbox({ [POD_UID_LABEL]: uid })).length,
    dir: pods.some((d) => d.endsWith(`_${uid}`)),
    cgroup: existsSync(`/sys/fs/cgroup/memory/spillway/${nodeName}/pod${uid}`),
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
  expect(status.podIP).toMatch(/^10\.250\.0\.\d+$/);
  expect(await nameserver(provider, pod)).toBe('nameserver 10.96.0.10');
  const [web] = status.containers;
  expect({
    restarts: web!.restartCount,
    state: web!.state.kind,
    lastExit: web!.lastState?.kind === 'terminated' ? web!.lastState.exitCode : undefined,
  }).toEqual({ restarts, state: 'running', lastExit: restarts > 0 ? 1 : undefined });
  expect(await liveContainers(pod)).toBe(1);
  await provider.delete(sandboxKey(pod), { gracePeriodSeconds: 1 });
  expect(await leftovers(pod.metadata!.uid!)).toEqual({ sandboxes: 0, dir: false, cgroup: false });
}

afterAll(async () => {
  const provider = await LocalProvider.start(options);
  for (const i of await provider.list()) await provider.delete(i.key, { gracePeriodSeconds: 0 });
  await provider.close();
  expect(await cri.listPodSandbox({ [NODE_LABEL]: nodeName })).toEqual([]);
  cri.close();
  await removeNodeState(nodeName);
});

describe('local provider after a kill -9 of the operator', () => {
  const steps = [...CREATE_STEPS, 'container-created', 'container-started'];
  for (const step of steps) {
    it(`ends Ready with network, DNS and one container when killed after "${step}"`, async () => {
      const pod = testPod(`crash-${step}`);
      await crashAt(step, pod);
      const { provider, adopted } = await restart(pod);
      // A create killed before its record is not adopted: its sandbox goes and the pod is created again.
      expect(adopted).toBe(step !== 'state-dir' && step !== 'sandbox');
      await expectHealthyThenDelete(provider, pod);
      await provider.close();
    });
  }

  for (const step of ['container-created', 'container-started']) {
    it(`counts one restart, not two, and runs one container when killed after "${step}" of a restart`, async () => {
      const pod = testPod(`crash-restart-${step}`, true);
      await crashAt(step, pod, 2);
      const { provider, adopted } = await restart(pod);
      expect(adopted).toBe(true);
      await expectHealthyThenDelete(provider, pod, 1);
      await provider.close();
    });
  }

  it('adopts a healthy sandbox with its running container', async () => {
    const pod = testPod('healthy');
    const first = await LocalProvider.start(options);
    await first.create(pod);
    const before = await waitReady(first, pod);
    await first.close();
    const { provider, adopted } = await restart(pod);
    expect(adopted).toBe(true);
    expect((await waitReady(provider, pod)).containers[0]!.containerID).toBe(
      before.containers[0]!.containerID,
    );
    await expectHealthyThenDelete(provider, pod);
    await provider.close();
  });

  it('leaves no half-built sandbox and no second container after a kill in the middle of a burst of 8 creates', async () => {
    const pods = Array.from({ length: 8 }, (_, i) => testPod(`burst-${i}`));
    // 8 pods make 40 steps (5 each, interleaved): the kill lands when some pods are complete and running and
    // others half-built.
    await crashAt('*', pods, 25);
    const { provider } = await restart(pods);
    try {
      for (const pod of pods) await expectHealthyThenDelete(provider, pod);
    } finally {
      await provider.close(); // never two operators on one node, also when an expectation failed
    }
  });
});
