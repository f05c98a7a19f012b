/**
 * The ECI restart measurement (issue 13, point 3): N pods Running on a virtual node with the `eci` provider
 * against the fake endpoint (server-side quotas, the shipped poll interval and client limits), then the node is
 * stopped and a new provider and virtual node start over the same instances, as after an operator restart.
 * Measured: the time from the start call until the virtual node is registered with its instances adopted
 * (`startVirtualNode` resolved), the DescribeContainerGroups calls up to then and in the 5 s after, and that no
 * instance was created again. The anchor: one status call per adopted instance made a restart cost N calls,
 * paced by the client's DescribeContainerGroups limit (20/s), i.e. N/20 seconds.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { RateLimit } from '../operator/providers/eci/config.ts';
import { EciProvider } from '../operator/providers/eci/provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../operator/virtualnode/run.ts';
import { fakeEciConfig } from '../test/support/fake-eci/provider-config.ts';
import { FakeEci } from '../test/support/fake-eci/server.ts';
import { createTestNamespace } from '../test/support/namespace.ts';
import { freePort } from '../test/support/ports.ts';
import { deleteAndDrain, pinnedDeployment, PodProgress, waitNodeReady } from './lib/pod-progress.ts';
import { nowMs } from './lib/stats.ts';

/** What a restart over `instances` Running instances cost. */
export interface RestartResult {
  instances: number;
  /** Start call → `startVirtualNode` resolved (Node registered, instances adopted, kubelet API serving). */
  registeredSeconds: number;
  /** DescribeContainerGroups calls at the endpoint up to then, and in the 5 s after. */
  describeCallsToRegistered: number;
  describeCallsNext5s: number;
  /** The DescribeContainerGroups pages one listing of every instance takes (20 groups a page, ECI's maximum). */
  listingPages: number;
  /** CreateContainerGroup calls after the restart (0: every instance adopted). */
  createsAfterRestart: number;
  /** Pods Running 5 s after the restart. */
  runningAfter: number;
}

const AFTER_SECONDS = 5;

/** Runs the measurement on `kc` (a running control plane). */
export async function measureRestart(
  kc: KubeConfig,
  instances: number,
  quotas: Record<string, RateLimit>,
  log: (line: string) => void,
): Promise<RestartResult> {
  const fake = await FakeEci.start();
  for (const [action, q] of Object.entries(quotas)) fake.setQuota(action, q.qps, q.burst);
  const nodeName = 'spillway-bench-eci-restart';
  const { retry: _fastRetry, ...config } = fakeEciConfig(fake, { nodeName, pollIntervalMs: 1000 });
  const core = kc.makeApiClient(CoreV1Api);
  const startNode = async (provider: EciProvider) =>
    startVirtualNode({
      kc,
      provider,
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: await freePort() },
    });
  let provider = new EciProvider({ config });
  let node: RunningVirtualNode | undefined;
  let ns: { name: string; remove: () => Promise<void> } | undefined;
  try {
    node = await startNode(provider);
    await waitNodeReady(kc, nodeName);
    ns = await createTestNamespace(kc, 'bench-eci-restart');
    const progress = new PodProgress(kc, ns.name);
    await progress.start();
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: pinnedDeployment(ns.name, 'eci', nodeName, instances, {
        name: 'app',
        image: 'registry.example.com/app:1.0',
        resources: { requests: { cpu: '250m', memory: '512Mi' } },
      }),
    });
    await progress.waitRunning(instances, Math.max(180_000, instances * 400), (l) => log(`restart: ${l}`));
    progress.stop();
    // A restart long after the burst: no group changed in the last seconds (the first poll's window).
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      if (fake.groups().every((g) => Date.now() - g.changedAt.getTime() > 4000)) break;
      await sleep(500);
    }

    await node.stop();
    node = undefined;
    await provider.close();
    const describes0 = fake.calls('DescribeContainerGroups');
    const creates0 = fake.calls('CreateContainerGroup');
    const t0 = nowMs();
    provider = new EciProvider({ config });
    node = await startNode(provider);
    const registeredSeconds = Number(((nowMs() - t0) / 1000).toFixed(2));
    const describeCallsToRegistered = fake.calls('DescribeContainerGroups') - describes0;
    await sleep(AFTER_SECONDS * 1000);
    const describeCallsNext5s =
      fake.calls('DescribeContainerGroups') - describes0 - describeCallsToRegistered;
    const pods = await core.listNamespacedPod({ namespace: ns.name });
    const result: RestartResult = {
      instances,
      registeredSeconds,
      describeCallsToRegistered,
      describeCallsNext5s,
      listingPages: Math.ceil(instances / 20),
      createsAfterRestart: fake.calls('CreateContainerGroup') - creates0,
      runningAfter: pods.items.filter((p) => p.status?.phase === 'Running').length,
    };
    log(`restart: ${JSON.stringify(result)}`);
    await deleteAndDrain(kc, ns.name, 'eci');
    return result;
  } finally {
    await ns?.remove();
    await node?.stop();
    await provider.close();
    await core.deleteNode({ name: nodeName }).catch(() => undefined);
    await fake.close();
  }
}
