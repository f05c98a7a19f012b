/**
 * A virtual node with the `local` provider, wired for e2e tests as `make run PROVIDER=local` wires it: the
 * provider (which installs the network guard before any address is used, then the bridge), CoreDNS on the
 * bridge, the kube-dns and `default/kubernetes` EndpointSlices, the apiserver forwarder, the service proxy
 * and the virtual node itself. `stop()` leaves sandboxes running (an operator restart); `destroy()` removes
 * everything the tests made, except the guard.
 */
import { execFileSync } from 'node:child_process';
import { rmdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { LocalProvider } from '../../operator/providers/local/provider.ts';
import { ServiceProxy, PROXY_TABLE } from '../../operator/providers/local/service-proxy.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { defaultClusterDir } from './cluster.ts';
import { publishClusterServices, startCoreDNS, startForwarder, type RunningCoreDNS } from './coredns.ts';

/** Where the apiserver is reachable from sandboxes (the forwarder on the bridge address). */
export const apiserverBridgePort = 6443;

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? ok(addr.port) : fail(new Error('no port'))));
    });
  });
}

/** The cluster-side pieces a local node needs (DNS, forwarder, proxy), shared by operator restarts. */
export interface LocalClusterNetwork {
  coredns: RunningCoreDNS;
  forwarder: Server;
  proxy: ServiceProxy;
  stop(): Promise<void>;
}

/** Starts CoreDNS, the apiserver forwarder and the service proxy for a provider whose network is up. */
export async function startClusterNetwork(
  kc: KubeConfig,
  kubeconfigPath: string,
  provider: LocalProvider,
): Promise<LocalClusterNetwork> {
  const bridgeIP = provider.network.gateway;
  const server = new URL(kc.getCurrentCluster()!.server);
  const forwarder = await startForwarder(
    { host: bridgeIP, port: apiserverBridgePort },
    { host: '127.0.0.1', port: Number(server.port) },
  );
  let coredns: RunningCoreDNS | undefined;
  let proxy: ServiceProxy | undefined;
  try {
    coredns = await startCoreDNS({
      kubeconfigPath,
      address: bridgeIP,
      dir: join(defaultClusterDir, 'coredns'),
    });
    await publishClusterServices(kc, bridgeIP, apiserverBridgePort);
    proxy = new ServiceProxy({ kc });
    await proxy.start();
  } catch (err) {
    // Nothing half-started may outlive a failed set-up.
    await proxy?.stop().catch(() => undefined);
    await coredns?.stop();
    await new Promise((r) => forwarder.close(r));
    throw err;
  }
  return {
    coredns,
    forwarder,
    proxy,
    stop: async () => {
      await proxy.stop();
      await coredns.stop();
      await new Promise((r) => forwarder.close(r));
    },
  };
}

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
