/**
 * A real kube-proxy (nftables mode, bin/kube-proxy from the pinned Kubernetes module) serving ClusterIPs to the
 * local sandboxes: it runs on the sandbox host, in the host's network namespace (or, for a test, in a named one),
 * and keeps the `ip kube-proxy` nftables table in sync with the cluster's Services and EndpointSlices.
 * `spillway run --provider local` starts it with the rest of the local cluster network (cluster-network.ts).
 *
 * What it runs with (configuration, identity, binary) is in kube-proxy-config.ts; the restart loop in
 * supervisor.ts. This file starts it, waits for its first ruleset, and cleans up after it.
 *
 * kube-proxy reads the Node named `nodeName` for its node IPs once, at start: when the Node is missing it waits
 * 30 s, then goes on without them. Later changes of the Node's addresses, and its deletion, v1.36.3 only logs (the
 * exit upstream means to take there is commented out, `FIXME: exit` in pkg/proxy/node.go), and with
 * detectLocalMode ClusterCIDR it does not watch the Node's podCIDR. So start it after the (virtual) node is
 * registered. It runs under a {@link Supervisor} that restarts it with a back-off whenever it exits (a crash, an
 * OOM kill, or a later kube-proxy that does exit on a Node change), as a kubelet restarts a kube-proxy pod.
 *
 * What the bridge must give it: IP forwarding on the bridge (`net.ipv4.conf.<bridge>.forwarding=1`; without it
 * nothing answers through a ClusterIP, although the DNAT is bridged), br_netfilter with
 * `net.bridge.bridge-nf-call-iptables=1` (replies between pods on the bridge must pass conntrack to be
 * un-NATed), and hairpin mode on the pods' bridge ports (the CNI bridge plugin's `hairpinMode: true`) for a pod
 * reaching itself through its Service. One kube-proxy per network namespace: its table, and its drop of traffic
 * to unallocated addresses of the service CIDR, are for one cluster's Services.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from '../../shared/ports.ts';
import { defaultKubeProxyBinary, kubeProxyConfig, kubeProxyCredentials } from './kube-proxy-config.ts';
import { LOCAL_GUARD_TABLE } from './network.ts';
import { Supervisor, tailLines, type BackoffPolicy, type SupervisorLogger } from './supervisor.ts';

const run = promisify(execFile);

/** kube-proxy's nftables tables (it creates both families when the host has IPv6). */
export const KUBE_PROXY_TABLES = [
  ['ip', 'kube-proxy'],
  ['ip6', 'kube-proxy'],
] as const;

/** What the supervisor and the start-up write to: a pino logger, or anything with the same two methods. */
export type KubeProxyLogger = SupervisorLogger;

/** Options of {@link startKubeProxy}. */
export interface StartKubeProxyOptions {
  /** The kube-proxy binary. Default {@link defaultKubeProxyBinary}(). */
  binary?: string;
  /**
   * The run's kubeconfig: the apiserver and the CA kube-proxy trusts, and kube-proxy's credentials when no CA key
   * is at hand (see {@link kubeProxyCredentials}).
   */
  kubeconfigPath: string;
  /** Where the cluster CA's `ca.crt` and `ca.key` are. Default `<folder of kubeconfigPath>/pki` (a local cluster). */
  caDir?: string;
  /** The apiserver URL as kube-proxy reaches it (with an issued certificate only); default the kubeconfig's. */
  server?: string;
  /** Where kube-proxy's config, kubeconfig, client key, pid file and log go (created, mode 0700). */
  stateDir: string;
  /**
   * The Node kube-proxy serves: the virtual node's name, registered before this starts (a missing Node costs a
   * 30 s wait). Endpoints whose `nodeName` is this one are "local": hairpin and `trafficPolicy: Local` use it.
   */
  nodeName: string;
  /** All local pods (e.g. `10.250.0.0/16`): traffic from it is local, and not masqueraded to other pods. */
  clusterCIDR: string;
  /** CIDRs NodePorts are served on, e.g. the bridge's `10.250.0.1/32`. Never the host's real interfaces. */
  nodePortAddresses: string[];
  /** A named network namespace (`ip netns`) to run in instead of the host's: tests use their own. */
  netns?: string;
  /**
   * Masquerade all Service traffic (source becomes the bridge address), as the hand-written proxy did. Needed for
   * hairpin when the endpoints' `nodeName` is not `nodeName`: kube-proxy masquerades a pod reaching itself only
   * for endpoints on its own node. Default false (backends see the client pod's address).
   */
  masqueradeAll?: boolean;
  /** klog verbosity. Default 1. */
  verbosity?: number;
  logger?: KubeProxyLogger;
  /** Restart back-off; default 1 s doubling to 30 s, reset after a run of 60 s. */
  backoff?: Partial<BackoffPolicy>;
}

/** A running (supervised) kube-proxy. */
export interface RunningKubeProxy {
  /** The pid of the current kube-proxy process (undefined while it waits to be restarted). */
  readonly pid: number | undefined;
  /** How often it has been restarted since {@link startKubeProxy}. */
  readonly restarts: number;
  /** kube-proxy's log (appended to by every run). */
  logFile: string;
  /** Ports of /metrics and /healthz, on 127.0.0.1 (in its network namespace). */
  metricsPort: number;
  healthzPort: number;
  /**
   * Stops supervising and stops kube-proxy (SIGTERM, SIGKILL after 10 s), then removes its nftables tables
   * (`kube-proxy --cleanup`). With `keepRules`, the rules stay and go on serving ClusterIPs until a new kube-proxy
   * takes them over (as a kube-proxy restart on a node, or an operator restart).
   */
  stop(options?: { keepRules?: boolean }): Promise<void>;
}

function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv;
}

/**
 * True once kube-proxy reports (on /healthz) an IPv4 ruleset written after `since`: not merely a table left by a
 * previous kube-proxy, which a restart keeps. Asked from inside its network namespace.
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

async function guardInPlace(): Promise<boolean> {
  try {
    await run('nft', ['list', 'table', 'inet', LOCAL_GUARD_TABLE]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts kube-proxy under a {@link Supervisor} and resolves once it has programmed its first ruleset. Needs root,
 * and (in the host's namespace) the local provider's network guard already installed: kube-proxy makes ClusterIPs
 * reachable. A kube-proxy left running by an operator that died is stopped first; its rules stay until this one
 * takes them over.
 */
export async function startKubeProxy(opts: StartKubeProxyOptions): Promise<RunningKubeProxy> {
  const binary = opts.binary ?? defaultKubeProxyBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`bash hack/build-tools.sh kubernetes\` first`);
  }
  if (!opts.netns && !(await guardInPlace())) {
    throw new Error(
      `the network guard (nftables table inet ${LOCAL_GUARD_TABLE}) is not installed: start the local provider first (it installs the guard), since kube-proxy makes ClusterIPs reachable from this host`,
    );
  }
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  await stopKubeProxyIn(opts.stateDir, binary, opts.netns, { keepRules: true });
  const { kubeconfig, identity } = await kubeProxyCredentials(opts);
  if (identity !== 'system:kube-proxy') {
    opts.logger?.info(
      { kubeconfig },
      `no cluster CA key in ${opts.caDir ?? join(dirname(opts.kubeconfigPath), 'pki')}: kube-proxy runs with the run's own kubeconfig, not as system:kube-proxy`,
    );
  }
  const metricsPort = await freePort();
  const healthzPort = await freePort();
  const configFile = join(opts.stateDir, 'config.yaml');
  writeFileSync(
    configFile,
    kubeProxyConfig({
      kubeconfig,
      nodeName: opts.nodeName,
      clusterCIDR: opts.clusterCIDR,
      nodePortAddresses: opts.nodePortAddresses,
      metricsPort,
      healthzPort,
      masqueradeAll: opts.masqueradeAll ?? false,
      verbosity: opts.verbosity ?? 1,
    }),
  );
  const logFile = join(opts.stateDir, 'kube-proxy.log');
  const [command, ...args] = inNetns(opts.netns, [binary, `--config=${configFile}`]);
  const startedAt = new Date();
  // `ip netns exec` execs into kube-proxy: the pid stays kube-proxy's.
  const supervisor = new Supervisor({
    name: 'kube-proxy',
    command: command!,
    args,
    logFile,
    pidFile: join(opts.stateDir, 'kube-proxy.pid'),
    logger: opts.logger,
    backoff: opts.backoff,
  });
  supervisor.start();

  const stop = async ({ keepRules = false } = {}) => {
    await supervisor.stop();
    if (!keepRules) await cleanupKubeProxy(binary, opts.netns);
  };

  // Up to 60 s (a missing Node alone costs 30 s); an exit before the first ruleset may be the Node appearing,
  // but three are a kube-proxy that cannot start.
  const deadline = Date.now() + 60_000;
  while (!(await programmedSince(opts.netns, healthzPort, startedAt))) {
    const exits = supervisor.starts - (supervisor.pid === undefined ? 0 : 1);
    if (exits >= 3 || Date.now() > deadline) {
      await stop();
      const why = exits >= 3 ? `exited ${exits} times` : 'wrote no rules within 60 s';
      throw new Error(
        `kube-proxy ${why} during start-up; the end of ${logFile}:\n${tailLines(logFile, 10).join('\n')}`,
      );
    }
    await sleep(200);
  }
  opts.logger?.info(
    { node: opts.nodeName, identity, healthzPort, metricsPort, logFile },
    `kube-proxy (nftables) serves ClusterIPs for node ${opts.nodeName}`,
  );
  return {
    get pid() {
      return supervisor.pid;
    },
    get restarts() {
      return Math.max(0, supervisor.starts - 1);
    },
    logFile,
    metricsPort,
    healthzPort,
    stop,
  };
}

/**
 * Removes what kube-proxy leaves behind (its nftables tables, and any iptables/IPVS rules of other modes):
 * `kube-proxy --cleanup`, then a check that the nftables tables are gone.
 */
export async function cleanupKubeProxy(binary: string, netns?: string): Promise<void> {
  const [cmd, ...args] = inNetns(netns, [binary, '--cleanup']);
  await run(cmd!, args).catch(() => undefined);
  for (const [family, table] of KUBE_PROXY_TABLES) {
    const [c, ...a] = inNetns(netns, ['nft', 'delete', 'table', family, table]);
    await run(c!, a).catch(() => undefined);
  }
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
 * Stops a kube-proxy that {@link startKubeProxy} started with `stateDir` (by the pid it recorded there) and,
 * unless `keepRules`, removes its rules: for a teardown after a test, or an operator that died without stopping
 * it.
 */
export async function stopKubeProxyIn(
  stateDir: string,
  binary: string,
  netns?: string,
  { keepRules = false } = {},
): Promise<void> {
  const pidFile = join(stateDir, 'kube-proxy.pid');
  if (existsSync(pidFile)) {
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
  }
  if (!keepRules) await cleanupKubeProxy(binary, netns);
}
