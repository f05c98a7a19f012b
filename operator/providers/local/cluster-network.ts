/**
 * The cluster side of a local node, for a local control plane (`make run PROVIDER=local`, the demo, the e2e
 * tests): CoreDNS on the bridge, the kube-dns and `default/kubernetes` EndpointSlices, a forwarder from the
 * bridge to the apiserver on loopback, and kube-proxy (kube-proxy.ts). Start it after the provider: the provider
 * installs the network guard and the bridge first.
 *
 * Not part of the provider: the provider never calls the Kubernetes API, and neither starts nor knows this. It
 * lives beside it because it serves only the local provider's bridge; `spillway run --provider local` starts it
 * with the run's own client (docs/architecture.md, Provider contract).
 */
import type { Server } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../shared/log.ts';
import { startForwarder } from '../../shared/forward.ts';
import { publishClusterServices, startCoreDNS, type RunningCoreDNS } from './cluster-dns.ts';
import type { SandboxProvider } from '../types.ts';
import { LocalProvider } from './provider.ts';
import { defaultKubeProxyBinary } from './kube-proxy-config.ts';
import { startKubeProxy, type RunningKubeProxy } from './kube-proxy.ts';

/** Where the apiserver is reachable from sandboxes (the forwarder on the bridge address). */
export const apiserverBridgePort = 6443;

/** The cluster-side pieces a local node needs (DNS, forwarder, proxy), shared by operator restarts. */
export interface LocalClusterNetwork {
  /** Ours, unless the cluster has a DNS addon of its own ({@link clusterHasDNS}). */
  coredns?: RunningCoreDNS;
  forwarder?: Server;
  proxy: RunningKubeProxy;
  stop(): Promise<void>;
}

/**
 * Whether the cluster runs its own DNS: a `kube-system/kube-dns` Service with a selector (CoreDNS pods, as
 * kubeadm, kind and the local cluster with real nodes install it). Then the cluster also publishes
 * `default/kubernetes` where pods reach it, and a local node brings only kube-proxy for its bridge.
 */
export async function clusterHasDNS(kc: KubeConfig): Promise<boolean> {
  const svc = await kc
    .makeApiClient(CoreV1Api)
    .readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' })
    .catch(() => undefined);
  return Object.keys(svc?.spec?.selector ?? {}).length > 0;
}

/**
 * Starts kube-proxy for a provider whose network is up and whose Node is registered, and, on a control plane
 * without a DNS addon (`make cluster-up` without real nodes), CoreDNS on the bridge and the apiserver forwarder.
 */
export async function startClusterNetwork(
  kc: KubeConfig,
  kubeconfigPath: string,
  provider: SandboxProvider,
  opts: { corednsBinary: string; stateDir: string; nodeName: string; logger?: Logger },
): Promise<LocalClusterNetwork> {
  if (!(provider instanceof LocalProvider)) {
    throw new Error(
      `the local cluster network serves the local provider's bridge, not the ${provider.name} provider`,
    );
  }
  const bridgeIP = provider.network.gateway;
  const ownDNS = !(await clusterHasDNS(kc));
  const server = new URL(kc.getCurrentCluster()!.server);
  const forwarder = ownDNS
    ? // The apiserver listens on loopback only; sandboxes reach the host through the bridge.
      await startForwarder(
        { host: bridgeIP, port: apiserverBridgePort },
        { host: '127.0.0.1', port: Number(server.port) },
      )
    : undefined;
  let coredns: RunningCoreDNS | undefined;
  let proxy: RunningKubeProxy | undefined;
  try {
    if (ownDNS) {
      coredns = await startCoreDNS({
        kubeconfigPath,
        address: bridgeIP,
        dir: join(opts.stateDir, 'coredns'),
        binary: opts.corednsBinary,
      });
      await publishClusterServices(kc, bridgeIP, apiserverBridgePort);
    } else {
      opts.logger?.info(
        'the cluster has a DNS addon (kube-system/kube-dns): using it and its apiserver endpoints',
      );
    }
    // kube-proxy for the bridge: the Node (opts.nodeName) is registered by now, and the guard is in place.
    proxy = await startKubeProxy({
      binary: defaultKubeProxyBinary(opts.corednsBinary),
      kubeconfigPath,
      stateDir: join(opts.stateDir, 'kube-proxy'),
      nodeName: opts.nodeName,
      clusterCIDR: provider.network.podCIDR,
      nodePortAddresses: [`${bridgeIP}/32`],
      logger: opts.logger,
    });
  } catch (err) {
    // Nothing half-started may outlive a failed set-up.
    await proxy?.stop().catch(() => undefined);
    await coredns?.stop();
    if (forwarder) await new Promise((r) => forwarder.close(r));
    throw err;
  }
  return {
    coredns,
    forwarder,
    proxy,
    stop: async () => {
      await proxy.stop();
      await coredns?.stop();
      if (forwarder) await new Promise((r) => forwarder.close(r));
    },
  };
}
