/**
 * The cluster side of a local node, for a local control plane (`make run PROVIDER=local`, the demo, the e2e
 * tests): CoreDNS on the bridge, the kube-dns and `default/kubernetes` EndpointSlices, a forwarder from the
 * bridge to the apiserver on loopback, and the service proxy. Start it after the provider: the provider
 * installs the network guard and the bridge first.
 */
import type { Server } from 'node:net';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { publishClusterServices, startCoreDNS, startForwarder, type RunningCoreDNS } from './cluster-dns.ts';
import type { LocalProvider } from './provider.ts';
import { ServiceProxy } from './service-proxy.ts';

/** Where the apiserver is reachable from sandboxes (the forwarder on the bridge address). */
export const apiserverBridgePort = 6443;

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
  opts: { corednsBinary: string; stateDir: string },
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
      dir: join(opts.stateDir, 'coredns'),
      binary: opts.corednsBinary,
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
