/**
 * A real kube-proxy (nftables mode, bin/kube-proxy from the pinned Kubernetes module) serving ClusterIPs to the
 * local sandboxes: it runs on the sandbox host, in the host's network namespace (or, for a test, in a named one),
 * and keeps the `ip kube-proxy` nftables table in sync with the cluster's Services and EndpointSlices.
 * `spillway run --provider local` starts it with the rest of the local cluster network (cluster-network.ts).
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
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { fstatSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../shared/log.ts';
import { issueCert, type KeyPair } from '../../shared/pki.ts';
import { LOCAL_GUARD_TABLE } from './network.ts';

const run = promisify(execFile);

/** kube-proxy's nftables tables (it creates both families when the host has IPv6). */
export const KUBE_PROXY_TABLES = [
  ['ip', 'kube-proxy'],
  ['ip6', 'kube-proxy'],
] as const;

/** What the supervisor and the start-up write to: a pino logger, or anything with the same two methods. */
export type KubeProxyLogger = Pick<Logger, 'info' | 'warn'>;

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

/** The restart back-off of a {@link Supervisor}. */
export interface BackoffPolicy {
  /** The first delay before a restart. */
  initialMs: number;
  /** The longest delay: doubling stops here. */
  maxMs: number;
  /** A run at least this long resets the delay to `initialMs`: it was an event, not a crash loop. */
  resetAfterMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, resetAfterMs: 60_000 };

/** Time as the supervisor sees it; a fake in unit tests. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    sleep(ms, undefined, { signal }).then(
      () => undefined,
      () => undefined,
    ),
};

/** How one run of a supervised process ended. */
export interface SupervisedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  error?: string;
  ranMs: number;
  /** The delay before the next start. */
  restartInMs: number;
  /** The last lines of its log. */
  logTail: string[];
}

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /** What the logs call it. */
  name: string;
  command: string;
  args: string[];
  /** Its stdout and stderr, appended by every run. */
  logFile: string;
  /** Where the current pid is written (removed once stopped), for a teardown after a crash. */
  pidFile?: string;
  logger?: KubeProxyLogger;
  backoff?: Partial<BackoffPolicy>;
  clock?: Clock;
  onStart?: (pid: number | undefined) => void;
  onExit?: (exit: SupervisedExit) => void;
}

/** The last `n` lines of `file` (from its last 16 KiB). */
export function tailLines(file: string, n: number): string[] {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const length = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString('utf8').split('\n').filter(Boolean).slice(-n);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Runs a process and restarts it whenever it exits, with a back-off (as a kubelet restarts a container): each exit
 * is logged with the last lines of its log; a run of `resetAfterMs` resets the delay. {@link stop} ends both the
 * process and the restarting. The process leads its own process group, so that a terminal's Ctrl-C reaches the
 * operator only, which then stops it in order.
 */
export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #backoff: BackoffPolicy;
  readonly #clock: Clock;
  readonly #abort = new AbortController();
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #loop: Promise<void> | undefined;
  #starts = 0;
  #stopped = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#backoff = { ...defaultBackoff, ...opts.backoff };
    this.#clock = opts.clock ?? realClock;
  }

  /** The current process's pid; undefined between runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How many times the process was started (the first start included). */
  get starts(): number {
    return this.#starts;
  }

  /** Starts the first run; the loop then restarts it until {@link stop}. */
  start(): void {
    if (this.#loop) throw new Error(`${this.#opts.name} is already supervised`);
    this.#loop = this.#supervise();
  }

  async #supervise(): Promise<void> {
    let delay = this.#backoff.initialMs;
    while (!this.#stopped) {
      const startedAt = this.#clock.now();
      const ended = await this.#runOnce();
      if (this.#stopped) return;
      const ranMs = this.#clock.now() - startedAt;
      if (ranMs >= this.#backoff.resetAfterMs) delay = this.#backoff.initialMs;
      const exit: SupervisedExit = {
        ...ended,
        ranMs,
        restartInMs: delay,
        logTail: tailLines(this.#opts.logFile, 10),
      };
      const how = exit.error ?? (exit.signal ? `on ${exit.signal}` : `with code ${exit.code}`);
      this.#opts.logger?.warn(
        { ...exit, logFile: this.#opts.logFile },
        `${this.#opts.name} exited ${how} after ${Math.round(ranMs / 1000)} s; restarting in ${delay / 1000} s`,
      );
      this.#opts.onExit?.(exit);
      await this.#clock.sleep(delay, this.#abort.signal);
      delay = Math.min(delay * 2, this.#backoff.maxMs);
    }
  }

  /** One run: spawns the process and resolves when it has exited (or could not start). */
  #runOnce(): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }> {
    const out = openSync(this.#opts.logFile, 'a');
    const child = spawn(this.#opts.command, this.#opts.args, { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    this.#child = child;
    this.#starts++;
    if (child.pid !== undefined && this.#opts.pidFile) writeFileSync(this.#opts.pidFile, String(child.pid));
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }>(
      (resolve) => {
        child.once('error', (err) =>
          resolve({ code: null, signal: null, error: `could not run ${this.#opts.command}: ${err.message}` }),
        );
        child.once('exit', (code, signal) => resolve({ code, signal }));
      },
    ).then((result) => {
      this.#child = undefined;
      return result;
    });
    this.#exited = ended.then(() => undefined);
    this.#opts.onStart?.(child.pid);
    return ended;
  }

  /** Stops restarting, then stops the process: SIGTERM to its group, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    const pid = this.#child?.pid;
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (pid !== undefined) process.kill(-pid, sig);
      } catch {
        /* already gone */
      }
    };
    signal('SIGTERM');
    const kill = setTimeout(() => signal('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(kill);
    await this.#loop;
    if (this.#opts.pidFile) rmSync(this.#opts.pidFile, { force: true });
  }
}

function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv;
}

/** A free TCP port on 127.0.0.1 (bound, read, released), for kube-proxy's metrics and healthz. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
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
