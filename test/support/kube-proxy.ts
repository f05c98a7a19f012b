/**
 * A real kube-proxy (nftables mode, bin/kube-proxy from the pinned Kubernetes module) serving ClusterIPs to the
 * local sandboxes: it runs on the sandbox host, in the host's network namespace (or, for a test, in a named one),
 * and keeps the `ip kube-proxy` nftables table in sync with the cluster's Services and EndpointSlices.
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
 *   EndpointSlices, Nodes, write Events), a client certificate issued from the cluster's CA.
 *
 * kube-proxy reads the Node named `hostnameOverride` for its node IPs: when the Node is missing it waits 30 s,
 * then goes on with 127.0.0.1; once running it exits when that Node's addresses change or the Node is deleted.
 * So start it after the (virtual) node is registered, and stop it before the Node is deleted.
 *
 * What the bridge must give it: IP forwarding on the bridge (`net.ipv4.conf.<bridge>.forwarding=1`; without it
 * nothing answers through a ClusterIP, although the DNAT is bridged), br_netfilter with
 * `net.bridge.bridge-nf-call-iptables=1` (replies between pods on the bridge must pass conntrack to be
 * un-NATed), and hairpin mode on the pods' bridge ports (the CNI bridge plugin's `hairpinMode: true`) for a pod
 * reaching itself through its Service. One kube-proxy per network namespace: its table, and its drop of traffic
 * to unallocated addresses of the service CIDR, are for one cluster's Services.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { issueCert, type KeyPair } from '../../operator/shared/pki.ts';
import { networkGuardInstalled } from './guard.ts';
import { freePort } from './ports.ts';

const run = promisify(execFile);

/** kube-proxy's nftables tables (it creates both families when the host has IPv6). */
export const KUBE_PROXY_TABLES = [
  ['ip', 'kube-proxy'],
  ['ip6', 'kube-proxy'],
] as const;

/** Options of {@link startKubeProxy}. */
export interface KubeProxyOptions {
  /** The local control plane's folder: its CA (`pki/ca.crt`, `pki/ca.key`) and admin `kubeconfig` (server URL). */
  clusterDir: string;
  /** Where bin/kube-proxy is. */
  binDir: string;
  /** Where kube-proxy's config, kubeconfig and client key go (created, mode 0700). */
  stateDir: string;
  /**
   * The Node kube-proxy serves: the virtual node's name, registered before this starts (a missing Node costs a
   * 30 s wait). Endpoints whose `nodeName` is this one are "local": hairpin and `trafficPolicy: Local` use it.
   */
  hostnameOverride: string;
  /** All local pods (e.g. `10.250.0.0/16`): traffic from it is local, and not masqueraded to other pods. */
  clusterCIDR: string;
  /** CIDRs NodePorts are served on, e.g. the bridge's `10.250.0.1/32`. Never the host's real interfaces. */
  nodePortAddresses: string[];
  /** kube-proxy's log (appended). Default `<stateDir>/kube-proxy.log`. */
  logFile?: string;
  /** The apiserver URL as kube-proxy reaches it; default the server of the cluster's admin kubeconfig. */
  server?: string;
  /** A named network namespace (`ip netns`) to run in instead of the host's: tests use their own. */
  netns?: string;
  /**
   * Masquerade all Service traffic (source becomes the bridge address), as the hand-written proxy did. Needed for
   * hairpin when the endpoints' `nodeName` is not `hostnameOverride`: kube-proxy masquerades a pod reaching
   * itself only for endpoints on its own node. Default false (backends see the client pod's address).
   */
  masqueradeAll?: boolean;
  /** klog verbosity. Default 1. */
  verbosity?: number;
}

/** A running kube-proxy. */
export interface RunningKubeProxy {
  pid: number;
  logFile: string;
  /** Ports of /metrics and /healthz, on 127.0.0.1 (in its network namespace). */
  metricsPort: number;
  healthzPort: number;
  /**
   * Stops kube-proxy (SIGTERM, SIGKILL after 10 s) and removes its nftables tables (`kube-proxy --cleanup`).
   * With `keepRules`, the rules stay and go on serving ClusterIPs until a new kube-proxy takes them over (as a
   * kube-proxy restart on a node).
   */
  stop(options?: { keepRules?: boolean }): Promise<void>;
}

/** The KubeProxyConfiguration (v1alpha1) for `opts`, as YAML (JSON is YAML). */
export function kubeProxyConfig(opts: {
  kubeconfig: string;
  hostnameOverride: string;
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
    hostnameOverride: opts.hostnameOverride,
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

/** A kubeconfig for `server` with a client certificate (PEM) and the CA that signed the server's. */
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

function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * True once kube-proxy reports (on /healthz) an IPv4 ruleset written after `since`: not merely a table left by a
 * previous kube-proxy, which a restart keeps.
 */
async function programmedSince(
  netns: string | undefined,
  healthzPort: number,
  since: Date,
): Promise<boolean> {
  const fetchHealthz = `fetch('http://127.0.0.1:${healthzPort}/healthz').then((r) => r.text()).then((t) => process.stdout.write(t))`;
  const [cmd, ...args] = inNetns(netns, [process.execPath, '-e', fetchHealthz]);
  try {
    const { stdout } = await run(cmd!, args);
    const health = JSON.parse(stdout) as { status?: { IPv4?: { lastUpdated?: string } } };
    return new Date(health.status?.IPv4?.lastUpdated ?? 0) >= since;
  } catch {
    return false; // not serving yet
  }
}

/**
 * Starts kube-proxy and resolves once it has programmed its first ruleset. Needs root, and the network guard
 * already installed (test/support/guard.ts): kube-proxy makes ClusterIPs reachable.
 */
export async function startKubeProxy(opts: KubeProxyOptions): Promise<RunningKubeProxy> {
  const bin = join(opts.binDir, 'kube-proxy');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`bash hack/build-tools.sh kubernetes\` first`);
  }
  if (!opts.netns && !networkGuardInstalled()) {
    throw new Error(
      'the network guard is not installed: install it first (test/support/guard.ts installNetworkGuard, as LocalCluster.up does), since kube-proxy makes ClusterIPs reachable from this host',
    );
  }
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  const ca: KeyPair = {
    certPem: readFileSync(join(opts.clusterDir, 'pki', 'ca.crt'), 'utf8'),
    keyPem: readFileSync(join(opts.clusterDir, 'pki', 'ca.key'), 'utf8'),
  };
  const client = await issueCert(ca, {
    subject: 'CN=system:kube-proxy',
    usage: 'client',
    validForMs: 365 * 24 * 3600_000,
  });
  let server = opts.server;
  if (!server) {
    const admin = new KubeConfig();
    admin.loadFromFile(join(opts.clusterDir, 'kubeconfig'));
    server = admin.getCurrentCluster()?.server;
    if (!server) throw new Error(`${join(opts.clusterDir, 'kubeconfig')} names no apiserver`);
  }
  const kubeconfig = join(opts.stateDir, 'kubeconfig');
  writeFileSync(kubeconfig, clientKubeconfig(server, ca.certPem, client, 'system:kube-proxy'), {
    mode: 0o600,
  });
  const metricsPort = await freePort();
  const healthzPort = await freePort();
  const configFile = join(opts.stateDir, 'config.yaml');
  writeFileSync(
    configFile,
    kubeProxyConfig({
      kubeconfig,
      hostnameOverride: opts.hostnameOverride,
      clusterCIDR: opts.clusterCIDR,
      nodePortAddresses: opts.nodePortAddresses,
      metricsPort,
      healthzPort,
      masqueradeAll: opts.masqueradeAll ?? false,
      verbosity: opts.verbosity ?? 1,
    }),
  );
  const logFile = opts.logFile ?? join(opts.stateDir, 'kube-proxy.log');
  const startedAt = new Date();
  const out = openSync(logFile, 'a');
  const [cmd, ...args] = inNetns(opts.netns, [bin, `--config=${configFile}`]);
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', out, out] });
  closeSync(out);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${bin}`);
  writeFileSync(join(opts.stateDir, 'kube-proxy.pid'), String(pid));

  const stop = async ({ keepRules = false } = {}) => {
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig); // kube-proxy leads its own process group
      } catch {
        /* already gone */
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (isAlive(pid)) {
      if (Date.now() > deadline) signal('SIGKILL');
      await sleep(50);
    }
    rmSync(join(opts.stateDir, 'kube-proxy.pid'), { force: true });
    if (!keepRules) await cleanupKubeProxy(opts.binDir, opts.netns);
  };

  const deadline = Date.now() + 60_000;
  while (!(await programmedSince(opts.netns, healthzPort, startedAt))) {
    if (!isAlive(pid)) {
      await cleanupKubeProxy(opts.binDir, opts.netns);
      throw new Error(`kube-proxy exited during start-up; see ${logFile}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`kube-proxy wrote no rules within 60 s; see ${logFile}`);
    }
    await sleep(200);
  }
  // With the real pid (not `ip netns exec`'s, which execs into kube-proxy and keeps the pid).
  return { pid, logFile, metricsPort, healthzPort, stop };
}

/**
 * Removes what kube-proxy leaves behind (its nftables tables, and any iptables/IPVS rules of other modes):
 * `kube-proxy --cleanup`, then a check that the nftables tables are gone.
 */
export async function cleanupKubeProxy(binDir: string, netns?: string): Promise<void> {
  const [cmd, ...args] = inNetns(netns, [join(binDir, 'kube-proxy'), '--cleanup']);
  await run(cmd!, args).catch(() => undefined);
  for (const [family, table] of KUBE_PROXY_TABLES) {
    const [c, ...a] = inNetns(netns, ['nft', 'delete', 'table', family, table]);
    await run(c!, a).catch(() => undefined);
  }
}

/**
 * Stops a kube-proxy that {@link startKubeProxy} started with `stateDir` (by the pid it recorded there) and
 * removes its rules: for a teardown after a test or an operator that died without stopping it.
 */
export async function stopKubeProxyIn(stateDir: string, binDir: string, netns?: string): Promise<void> {
  const pidFile = join(stateDir, 'kube-proxy.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  // Only if that pid is still a kube-proxy (not a recycled pid).
  const isKubeProxy = () => {
    try {
      return isAlive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kube-proxy');
    } catch {
      return false;
    }
  };
  if (isKubeProxy()) {
    process.kill(pid, 'SIGTERM');
    for (const deadline = Date.now() + 10_000; isKubeProxy(); await sleep(50)) {
      if (Date.now() > deadline) process.kill(pid, 'SIGKILL');
    }
  }
  rmSync(pidFile, { force: true });
  await cleanupKubeProxy(binDir, netns);
}
