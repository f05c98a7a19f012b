/**
 * Cluster DNS and the apiserver for local sandboxes (issue 6, part 3): CoreDNS (bin/coredns) serving
 * `cluster.local` from the apiserver, listening on the sandbox bridge's address only (never forwarding
 * anywhere: names outside the cluster do not resolve), the `kube-system/kube-dns` Service (ClusterIP
 * 10.96.0.10) with an EndpointSlice to that address, and an EndpointSlice for `default/kubernetes` pointing at
 * a TCP forwarder on the bridge address that leads to the apiserver on 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';
import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { waitFor } from '../../shared/wait.ts';

/** The kube-dns ClusterIP every ClusterFirst sandbox uses as its nameserver. */
export const clusterDNSIP = '10.96.0.10';
const managedBy = 'spillway-local-cluster';

/** A running CoreDNS. */
export interface RunningCoreDNS {
  address: string;
  stop(): Promise<void>;
}

/** Starts CoreDNS on `address:53` (the bridge address) and waits until it answers for the cluster domain. */
export async function startCoreDNS(opts: {
  kubeconfigPath: string;
  address: string;
  dir: string;
  /** The coredns binary (hack/build-tools.sh builds it into bin/). */
  binary: string;
}): Promise<RunningCoreDNS> {
  mkdirSync(opts.dir, { recursive: true });
  const corefile = join(opts.dir, 'Corefile');
  writeFileSync(
    corefile,
    [
      '.:53 {',
      `  bind ${opts.address}`,
      '  errors',
      '  kubernetes cluster.local in-addr.arpa ip6.arpa {',
      `    kubeconfig ${opts.kubeconfigPath}`,
      '    pods insecure',
      '    ttl 5',
      '    fallthrough in-addr.arpa ip6.arpa',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const out = openSync(join(opts.dir, 'coredns.log'), 'a');
  const child: ChildProcess = spawn(opts.binary, ['-conf', corefile], {
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([opts.address]);
  try {
    await waitFor('CoreDNS to answer', 30_000, async () => {
      if (spawnError)
        throw new Error(`cannot run ${opts.binary}: ${spawnError.message} (make tools builds it)`);
      if (child.exitCode !== null) throw new Error(`coredns exited; see ${join(opts.dir, 'coredns.log')}`);
      return (await resolver.resolve4('kubernetes.default.svc.cluster.local')).length > 0;
    });
  } catch (err) {
    // A CoreDNS that never answered must not outlive the failed start, still bound to the bridge address.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    throw err;
  }
  return {
    address: opts.address,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function slice(
  name: string,
  namespace: string,
  service: string,
  address: string,
  ports: V1EndpointSlice['ports'],
): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace,
      labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': managedBy },
    },
    addressType: 'IPv4',
    endpoints: [{ addresses: [address], conditions: { ready: true, serving: true, terminating: false } }],
    ports,
  };
}

/**
 * Creates (or replaces) the kube-dns Service and the EndpointSlices of kube-dns and `default/kubernetes`,
 * pointing at `bridgeIP` (DNS on 53, the apiserver forwarder on `apiserverPort`).
 */
export async function publishClusterServices(
  kc: KubeConfig,
  bridgeIP: string,
  apiserverPort = 6443,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const exists = await core
    .readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' })
    .catch(() => undefined);
  if (!exists) {
    await core.createNamespacedService({
      namespace: 'kube-system',
      body: {
        metadata: { name: 'kube-dns', labels: { 'k8s-app': 'kube-dns' } },
        spec: {
          clusterIP: clusterDNSIP,
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
            { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
          ],
        },
      },
    });
  }
  const put = async (s: V1EndpointSlice) => {
    const { name, namespace } = s.metadata as { name: string; namespace: string };
    await discovery.deleteNamespacedEndpointSlice({ name, namespace }).catch(() => undefined);
    await discovery.createNamespacedEndpointSlice({ namespace, body: s });
  };
  await put(
    slice('kube-dns-spillway', 'kube-system', 'kube-dns', bridgeIP, [
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: 'dns-tcp', port: 53, protocol: 'TCP' },
    ]),
  );
  await put(
    slice('kubernetes-spillway', 'default', 'kubernetes', bridgeIP, [
      { name: 'https', port: apiserverPort, protocol: 'TCP' },
    ]),
  );
}
