/**
 * What kube-proxy runs with: its binary, its KubeProxyConfiguration, and its credentials (a `system:kube-proxy`
 * client certificate issued from the cluster's CA, or the run's kubeconfig). kube-proxy.ts starts it with these.
 *
 * What the configuration is for (docs/architecture.md#network-guard: the guard comes first, before this starts):
 * - `clusterCIDR` (detectLocalMode ClusterCIDR): traffic from a local pod is not masqueraded when it goes to
 *   another pod, and kube-proxy does not wait for a Node's podCIDR (it would with NodeCIDR);
 * - `nodePortAddresses`: NodePorts only on the given addresses (the bridge's), never on the host's real
 *   interfaces; nftables mode never serves NodePorts on 127.0.0.1;
 * - conntrack settings all 0: kube-proxy then leaves the host's conntrack sysctls as they are. Its defaults would
 *   set nf_conntrack_max to 131072 (here: lowering the host's 262144) and the TCP established and close-wait
 *   timeouts host-wide; in a network namespace other than the host's, nf_conntrack_max is not writable and
 *   kube-proxy exits ("could not set conntrack parameters");
 * - oomScoreAdj 0: its default, -999, needs CAP_SYS_RESOURCE, which this machine's root lacks (a logged error);
 * - metrics and healthz on 127.0.0.1, on free ports;
 * - its own identity, `system:kube-proxy` (bound by the bootstrap RBAC to `system:node-proxier`: read Services,
 *   EndpointSlices, Nodes, write Events), a client certificate issued from the cluster's CA when its key is at
 *   hand (see {@link kubeProxyCredentials}).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { issueCert, type KeyPair } from '../../shared/pki.ts';

/**
 * The kube-proxy binary: `kube-proxy` beside `corednsBinary` (the `--coredns` option: both come from
 * hack/build-tools.sh into one bin/), else the first on PATH, else the repository's bin/kube-proxy.
 */
export function defaultKubeProxyBinary(corednsBinary?: string, env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [
    ...(corednsBinary ? [join(dirname(corednsBinary), 'kube-proxy')] : []),
    ...(env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .map((dir) => join(dir, 'kube-proxy')),
  ];
  return (
    candidates.find((c) => existsSync(c)) ??
    fileURLToPath(new URL('../../../bin/kube-proxy', import.meta.url))
  );
}

/** The KubeProxyConfiguration (v1alpha1) for `opts`, as YAML (JSON is YAML). */
export function kubeProxyConfig(opts: {
  kubeconfig: string;
  nodeName: string;
  clusterCIDR: string;
  nodePortAddresses: string[];
  metricsPort: number;
  healthzPort: number;
  masqueradeAll: boolean;
  verbosity: number;
}): string {
  const config = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'nftables',
    clientConnection: { kubeconfig: opts.kubeconfig, qps: 50, burst: 100 },
    hostnameOverride: opts.nodeName,
    clusterCIDR: opts.clusterCIDR,
    detectLocalMode: 'ClusterCIDR',
    metricsBindAddress: `127.0.0.1:${opts.metricsPort}`,
    healthzBindAddress: `127.0.0.1:${opts.healthzPort}`,
    nodePortAddresses: opts.nodePortAddresses,
    nftables: { masqueradeAll: opts.masqueradeAll },
    // 0 = leave the sysctl alone: kube-proxy would otherwise raise nf_conntrack_max (and the hash size) and set
    // the TCP timeouts host-wide.
    conntrack: {
      maxPerCore: 0,
      min: 0,
      tcpEstablishedTimeout: '0s',
      tcpCloseWaitTimeout: '0s',
      tcpBeLiberal: false,
      udpTimeout: '0s',
      udpStreamTimeout: '0s',
    },
    // kube-proxy's default (-999) needs CAP_SYS_RESOURCE to lower its OOM score; keep the inherited one.
    oomScoreAdj: 0,
    logging: { verbosity: opts.verbosity },
  };
  return JSON.stringify(config, null, 2) + '\n';
}

/** A kubeconfig for `server` with a client certificate (PEM) and the CA (PEM) that signed the server's. */
export function clientKubeconfig(server: string, caPem: string, client: KeyPair, user: string): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
      users: [
        {
          name: user,
          user: { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) },
        },
      ],
      contexts: [{ name: 'local', context: { cluster: 'local', user } }],
      'current-context': 'local',
    },
    null,
    2,
  );
}

/**
 * The kubeconfig kube-proxy runs with, and whose identity it is.
 *
 * Least privilege where it is cheap: a local control plane keeps its CA key beside its kubeconfig (`pki/ca.key`),
 * so the operator issues kube-proxy a client certificate for `system:kube-proxy` (the bootstrap RBAC gives it
 * `system:node-proxier`, reading Services, EndpointSlices and Nodes) instead of lending it the run's identity,
 * which may be cluster-admin. Without a CA key (a cluster whose CA is elsewhere) there is nothing to issue with,
 * and asking the cluster to sign a CSR would need an approver: kube-proxy then uses the run's kubeconfig as it
 * is, which is logged.
 */
export async function kubeProxyCredentials(opts: {
  kubeconfigPath: string;
  caDir?: string;
  server?: string;
  stateDir: string;
}): Promise<{ kubeconfig: string; identity: 'system:kube-proxy' | 'the run' }> {
  const caDir = opts.caDir ?? join(dirname(opts.kubeconfigPath), 'pki');
  const caKey = join(caDir, 'ca.key');
  if (!existsSync(caKey)) return { kubeconfig: opts.kubeconfigPath, identity: 'the run' };
  const ca: KeyPair = {
    certPem: readFileSync(join(caDir, 'ca.crt'), 'utf8'),
    keyPem: readFileSync(caKey, 'utf8'),
  };
  const client = await issueCert(ca, {
    subject: 'CN=system:kube-proxy',
    usage: 'client',
    validForMs: 365 * 24 * 3600_000,
  });
  let server = opts.server;
  if (!server) {
    const runKc = new KubeConfig();
    runKc.loadFromFile(opts.kubeconfigPath);
    server = runKc.getCurrentCluster()?.server;
    if (!server) throw new Error(`${opts.kubeconfigPath} names no apiserver in its current context`);
  }
  const kubeconfig = join(opts.stateDir, 'kubeconfig');
  writeFileSync(kubeconfig, clientKubeconfig(server, ca.certPem, client, 'system:kube-proxy'), {
    mode: 0o600,
  });
  return { kubeconfig, identity: 'system:kube-proxy' };
}
