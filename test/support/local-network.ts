/**
 * A virtual node with the `local` provider, wired for e2e tests as `make run PROVIDER=local` wires it: the
 * provider (which installs the network guard before any address is used, then the bridge) over the local
 * cluster's containerd (`make cluster-up` runs it when root; test/support/containerd.ts), and the virtual node
 * itself. The cluster services (CoreDNS, kube-proxy) are the test's to start. `stop()` leaves sandboxes
 * running (an operator restart); {@link tearDownLocalNode} removes everything the tests made, except the guard.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { defaultCriEndpoint } from '../../operator/providers/local/factory.ts';
import {
  LocalProvider,
  removeLocalSandboxes,
  type LocalProviderOptions,
} from '../../operator/providers/local/provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { waitFor } from '../../operator/shared/wait.ts';
import { freePort } from './ports.ts';
import { defaultClusterDir } from './cluster.ts';
import { stopKubeProxyIn, testKubeProxyBinary } from './kube-proxy.ts';

/** A virtual node over a local provider. */
export interface LocalNode {
  name: string;
  provider: LocalProvider;
  node: RunningVirtualNode;
  /** Stops the operator side only: sandboxes keep running (as after a crash or an upgrade). */
  stop(): Promise<void>;
}

/** The CRI socket of the test cluster's containerd (SPILLWAY_CLUSTER_DIR's, which the global setup sets). */
export const testCriEndpoint = () => process.env.SPILLWAY_CRI_ENDPOINT || defaultCriEndpoint(process.env);

/** Starts the local provider (guard, bridge, adoption) and a virtual node over it. */
export async function startLocalNode(
  kc: KubeConfig,
  name: string,
  options: Partial<LocalProviderOptions> = {},
): Promise<LocalNode> {
  const provider = await LocalProvider.start({
    nodeName: name,
    criEndpoint: testCriEndpoint(),
    // Short back-off so that restart tests take seconds, not minutes; the kubelet's rule is unchanged.
    supervision: { backoffMs: 1000, maxBackoffMs: 4000 },
    ...options,
  });
  const node = await startVirtualNode({
    kc,
    provider,
    // The kubelet API on the bridge's address, as `spillway run --provider local` puts it: the apiserver proxies
    // to it (never to loopback) and pods on the real nodes (metrics-server) reach it.
    config: {
      name,
      internalIP: provider.network.gateway,
      kubeletPort: await freePort(),
      podCIDR: '10.250.0.0/24',
    },
  });
  // Schedulable, as a user finds a node before using it: Ready, and the node controller's not-ready taint gone
  // (a pod created earlier gets a FailedScheduling Warning first, and tests that expect none would see it).
  await waitFor(`virtual node ${name} Ready and schedulable`, 60_000, async () => {
    const n = await kc.makeApiClient(CoreV1Api).readNode({ name });
    const ready = n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    return ready && !(n.spec?.taints ?? []).some((t) => t.key.startsWith('node.kubernetes.io/'));
  });
  return {
    name,
    provider,
    node,
    stop: async () => {
      await node.stop();
      await provider.close();
    },
  };
}

/** Removes whatever sandboxes of `node` are left in containerd, and the node's state directory. */
export async function removeNodeState(node: string): Promise<void> {
  await removeLocalSandboxes({ nodeName: node, criEndpoint: testCriEndpoint() }).catch(() => undefined);
  rmSync(`/run/spillway/${node}`, { recursive: true, force: true });
}

/**
 * Stops the kube-proxy a test's cluster network left (startClusterNetwork with `stateDir`, by default the test
 * cluster's folder) and removes its rules. The bridge stays: the local cluster's containerd networks its pods on
 * it (test/support/containerd.ts), and `make cluster-down` removes it with the rest of the cluster.
 */
export async function removeLocalNetwork(stateDir = defaultClusterDir): Promise<void> {
  await stopKubeProxyIn(join(stateDir, 'kube-proxy'), testKubeProxyBinary);
}

/**
 * The end of an e2e file that ran `local`: waits (up to a minute) for its sandboxes to go, stops the node, deletes
 * the Node object, then removes what sandboxes are left, the node's state and kube-proxy with its rules.
 */
export async function tearDownLocalNode(
  kc: KubeConfig,
  nodeName: string,
  local: LocalNode | undefined,
): Promise<void> {
  if (local) {
    await waitFor('sandboxes deleted', 60_000, async () => (await local.provider.list()).length === 0).catch(
      () => undefined,
    );
    await local.stop();
  }
  await kc
    .makeApiClient(CoreV1Api)
    .deleteNode({ name: nodeName })
    .catch(() => undefined);
  await removeNodeState(nodeName);
  await removeLocalNetwork();
}
