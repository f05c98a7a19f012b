/**
 * A virtual node with the `local` provider, wired for e2e tests as `make run PROVIDER=local` wires it: the
 * provider (which installs the network guard before any address is used, then the bridge), CoreDNS on the
 * bridge, the kube-dns and `default/kubernetes` EndpointSlices, the apiserver forwarder, the service proxy
 * and the virtual node itself. `stop()` leaves sandboxes running (an operator restart); `destroy()` removes
 * everything the tests made, except the guard.
 */
import { execFileSync } from 'node:child_process';
import { rmdirSync, rmSync } from 'node:fs';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { LocalProvider } from '../../operator/providers/local/provider.ts';
import { PROXY_TABLE } from '../../operator/providers/local/service-proxy.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { waitFor } from '../../operator/shared/wait.ts';
import { freePort } from './ports.ts';

/** A virtual node over a local provider. */
export interface LocalNode {
  name: string;
  provider: LocalProvider;
  node: RunningVirtualNode;
  /** Stops the operator side only: sandboxes keep running (as after a crash or an upgrade). */
  stop(): Promise<void>;
}

/** Starts the local provider (guard, bridge, adoption) and a virtual node over it. */
export async function startLocalNode(kc: KubeConfig, name: string): Promise<LocalNode> {
  const provider = await LocalProvider.start({
    nodeName: name,
    // Short back-off so that restart tests take seconds, not minutes; the kubelet's rule is unchanged.
    supervision: { backoffMs: 1000, maxBackoffMs: 4000 },
  });
  const node = await startVirtualNode({
    kc,
    provider,
    config: { name, internalIP: '127.0.0.1', kubeletPort: await freePort(), podCIDR: '10.250.0.0/24' },
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

/** Removes a node's (empty) cgroup directories and state directory; its sandboxes must be gone. */
export function removeNodeState(node: string): void {
  for (const controller of ['cpu', 'cpuacct', 'memory', 'unified', '']) {
    for (const dir of [
      `/sys/fs/cgroup/${controller}/spillway/${node}`,
      `/sys/fs/cgroup/${controller}/spillway`,
    ]) {
      try {
        rmdirSync(dir);
      } catch {
        /* absent, or still used by another node */
      }
    }
  }
  rmSync(`/run/spillway/${node}`, { recursive: true, force: true });
}

/** Removes the proxy table and the bridge (sandboxes must be gone); the guard stays. */
export function removeLocalNetwork(bridge = 'spillway0'): void {
  for (const args of [
    ['nft', 'delete', 'table', 'ip', PROXY_TABLE],
    ['ip', 'link', 'del', bridge],
  ]) {
    try {
      execFileSync(args[0]!, args.slice(1), { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
}

/**
 * The end of an e2e file that ran `local`: waits (up to a minute) for its sandboxes to go, stops the node, deletes
 * the Node object, then removes the bridge, the proxy table and the node's state.
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
  removeLocalNetwork();
  removeNodeState(nodeName);
}
