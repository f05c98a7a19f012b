/**
 * The addons of a local cluster with real nodes (test/support/real-nodes.ts): the cluster DNS and metrics-server
 * from hack/addons/, with their images from the cluster's registry, and the `default/kubernetes` endpoints at the
 * nodes' gateway (the apiserver listens on loopback, its endpoint reconciler is off).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_REGISTRY } from '../../hack/images/catalog.ts';
import { gatewayPorts, nodeNetwork } from './real-nodes.ts';
import { repoRoot } from './cluster.ts';

/** The addons, applied in this order. */
export const ADDONS = ['coredns', 'metrics-server'] as const;

/** An addon's manifest with its images from `registry` instead of the default `localhost:5000`. */
export function addonManifest(name: (typeof ADDONS)[number], registry: string): string {
  const text = readFileSync(join(repoRoot, 'hack/addons', `${name}.yaml`), 'utf8');
  return text.replaceAll(`image: ${DEFAULT_REGISTRY}/`, `image: ${registry}/`);
}

/** Applies the addons (server-side, so a kube-dns Service made before gets the addon's selector) and waits for them. */
export async function applyAddons(
  kubeconfig: string,
  binDir: string,
  registry: string,
  log: (line: string) => void = () => {},
): Promise<void> {
  const kubectl = (args: string[], input?: string) =>
    new Promise<string>((resolve, reject) => {
      const child = execFile(
        join(binDir, 'kubectl'),
        [`--kubeconfig=${kubeconfig}`, ...args],
        { encoding: 'utf8' },
        (err, stdout, stderr) =>
          err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
      );
      if (input !== undefined) child.stdin!.end(input);
    });
  for (const addon of ADDONS) {
    await kubectl(
      ['apply', '--server-side', '--force-conflicts', '--field-manager=spillway-local-cluster', '-f', '-'],
      addonManifest(addon, registry),
    );
  }
  for (const deployment of ['coredns', 'metrics-server']) {
    await kubectl(['-n', 'kube-system', 'rollout', 'status', `deployment/${deployment}`, '--timeout=180s']);
    log(`addon ${deployment} available`);
  }
  await kubectl(['wait', '--for=condition=Available', 'apiservice/v1beta1.metrics.k8s.io', '--timeout=120s']);
}

/**
 * `default/kubernetes` at the gateway: pods on every node (and the virtual node's sandboxes, through the host)
 * reach the apiserver at `10.96.0.1:443` → the gateway → the apiserver on loopback.
 */
export async function publishKubernetesEndpoints(kc: KubeConfig): Promise<void> {
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const name = 'kubernetes-gateway';
  await discovery.deleteNamespacedEndpointSlice({ name, namespace: 'default' }).catch(() => undefined);
  await discovery.createNamespacedEndpointSlice({
    namespace: 'default',
    body: {
      metadata: {
        name,
        labels: {
          'kubernetes.io/service-name': 'kubernetes',
          'endpointslice.kubernetes.io/managed-by': 'spillway-local-cluster',
        },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: [nodeNetwork.gateway], conditions: { ready: true } }],
      ports: [{ name: 'https', port: gatewayPorts.apiserver, protocol: 'TCP' }],
    },
  });
}
