/**
 * The local control plane: real etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
 * (two fake "normal" nodes), an OCI registry (test/support/registry.ts) and, when run as root, containerd with
 * runc and CNI (test/support/containerd.ts), all built from the Go module proxy by hack/build-tools.sh and run on
 * loopback.
 *
 * One implementation serves `make cluster-up` / `make cluster-down` (hack/cluster.ts) and vitest's global
 * setup. All state lives in one folder (PKI, etcd data, logs, pid files, kubeconfig, state.json), so a
 * cluster started by `make cluster-up` is found and reused by the tests.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Node } from '@kubernetes/client-node';
import { applyAddons, publishKubernetesEndpoints } from './addons.ts';
import { imageRef } from '../../hack/images/catalog.ts';
import { createCA, createSigningKey, issueCert, type KeyPair } from '../../operator/shared/pki.ts';
import { waitFor } from '../../operator/shared/wait.ts';
import {
  containerdCommand,
  containerdEnv,
  containerdPaths,
  criAnswers,
  criEndpoint,
  prepareContainerd,
  releaseContainerd,
  removeAllPods,
  type ContainerdOptions,
  type RuntimeHandler,
} from './containerd.ts';
import { installNetworkGuard } from './guard.ts';
import {
  defaultRealNodes,
  ensureCgroupRoot,
  gatewayPorts,
  nodeCommands,
  nodeContainerdOptions,
  nodeHealthURL,
  nodeNetwork,
  nodeParts,
  nodePaths,
  netnsPath,
  readPair,
  realPodCIDR,
  REAL_NODE_LABEL,
  setUpNodeNetwork,
  tearDownNodeNetwork,
  writeNodeFiles,
  type NodePart,
  type RealNode,
} from './real-nodes.ts';
import { freePort } from './ports.ts';
import { registryAnswers, registryCommand, registryEnv } from './registry.ts';

export const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
export const defaultClusterDir = process.env.SPILLWAY_CLUSTER_DIR ?? join(repoRoot, '.cluster');
export const defaultBinDir = process.env.SPILLWAY_BIN ?? join(repoRoot, 'bin');

/** The service CIDR of the local cluster; the network guard blackholes it on the host. */
export const serviceCIDR = '10.96.0.0/16';
/** Pod IPs kwok hands out to pods on the fake normal nodes (never reachable: the guard blackholes it). */
export const kwokPodCIDR = '10.244.0.0/16';
const kwokNodeIP = '10.244.255.1';
/** Addresses the fake provider reports for its pods (never reachable either). */
export const fakePodCIDR = '10.253.0.0/16';
/** Pod addresses of real sandboxes (containerd's CNI network); reachable only through the sandbox bridge. */
export const localPodCIDR = '10.250.0.0/16';
/** This host's share of {@link localPodCIDR}: the CNI network of the cluster's containerd. */
export const localNodeCIDR = '10.250.0.0/24';
/** The registry port of the default cluster folder: the catalog's DEFAULT_REGISTRY (hack/images/catalog.ts). */
const defaultRegistryPort = 5000;

export const components = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kwok',
  'registry',
  'containerd',
] as const;
/** A cluster process: a control-plane component, a real node's part (`worker-1/kubelet`), or the nodes' gateway. */
export type Component = (typeof components)[number] | `${string}/${NodePart}` | 'gateway';

/** containerd needs root (mounts, namespaces, the bridge); without it the cluster runs no real containers. */
const runsContainerd = () => process.getuid?.() === 0;

/** The control-plane components this process can run, in start order. */
function activeComponents(): Component[] {
  return components.filter((c) => c !== 'containerd' || runsContainerd());
}

/** The processes of the real nodes, in start order: the gateway, then each node's containerd, kubelet, kube-proxy. */
function realNodeComponents(nodes: RealNode[]): Component[] {
  return nodes.length === 0
    ? []
    : ['gateway', ...nodes.flatMap((n) => nodeParts.map((part) => `${n.name}/${part}` as const))];
}

interface ClusterState {
  ports: Record<Exclude<(typeof components)[number], 'containerd'>, number> & {
    etcdPeer: number;
    criStream: number;
  };
  commands: Partial<Record<Component, string[]>>;
  containerd: ContainerdOptions;
  /** The real nodes (test/support/real-nodes.ts) added by {@link LocalCluster.addRealNodes}; none by default. */
  realNodes?: RealNode[];
}

/** Which cluster folder's real nodes this machine runs (their links and addresses are fixed). */
const realNodesOwnerFile = '/run/spillway/real-nodes.owner';

/** Every address range of the cluster: the network guard blackholes them all (test/support/guard.ts). */
const guardedCIDRs = [serviceCIDR, kwokPodCIDR, fakePodCIDR, localPodCIDR, realPodCIDR, nodeNetwork.guarded];

/** The fake normal nodes every local cluster has. */
export const normalNodes = ['kwok-node-0', 'kwok-node-1'];

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child that nobody has reaped yet is a zombie: it is gone for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A handle on the local control plane in one folder. */
export class LocalCluster {
  readonly dir: string;
  readonly binDir: string;

  readonly #runtimeHandlers: Record<string, RuntimeHandler>;

  /**
   * @param runtimeHandlers RuntimeClass handlers containerd offers besides `runc` (its default), e.g. kata or
   *   gVisor on hosts that have them; read when the cluster starts.
   */
  constructor(
    dir = defaultClusterDir,
    binDir = defaultBinDir,
    options: { runtimeHandlers?: Record<string, RuntimeHandler> } = {},
  ) {
    this.dir = dir;
    this.binDir = binDir;
    this.#runtimeHandlers = options.runtimeHandlers ?? {};
  }

  get kubeconfigPath(): string {
    return join(this.dir, 'kubeconfig');
  }

  #path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** The registry's host for image references, `localhost:PORT` (see hack/images/catalog.ts `imageRef`). */
  get registry(): string {
    return `localhost:${this.#state().ports.registry}`;
  }

  /** containerd's CRI endpoint, `unix://<dir>/containerd/containerd.sock` (only when run as root). */
  get criEndpoint(): string {
    return criEndpoint(this.dir);
  }

  /** CRI's streaming server (exec, attach, port-forward), `127.0.0.1:PORT`. */
  get criStreamingAddress(): string {
    return `127.0.0.1:${this.#state().ports.criStream}`;
  }

  #state(): ClusterState {
    return JSON.parse(readFileSync(this.#path('state.json'), 'utf8')) as ClusterState;
  }

  #pid(component: Component): number | undefined {
    const file = this.#path('pids', `${component}.pid`);
    return existsSync(file) ? Number(readFileSync(file, 'utf8')) : undefined;
  }

  /** A KubeConfig for the cluster's admin (system:masters). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  /** True when every component's process is alive and the apiserver answers /readyz. */
  async isRunning(): Promise<boolean> {
    if (!existsSync(this.#path('state.json'))) return false;
    const nodes = this.#state().realNodes ?? [];
    if (
      ![...activeComponents(), ...realNodeComponents(nodes)].every((c) => {
        const pid = this.#pid(c);
        return pid !== undefined && isAlive(pid);
      })
    )
      return false;
    return this.#probe('kube-apiserver').catch(() => false);
  }

  /**
   * Starts the control plane, or reuses it when it is already running in this folder.
   * @returns whether it was started (true) or reused (false)
   */
  async up(log: (line: string) => void = () => {}): Promise<boolean> {
    if (await this.isRunning()) {
      log(`cluster already running in ${this.dir}`);
      return false;
    }
    // What a previous cluster in this folder left; its processes are stopped even when its sandbox sweep fails.
    await this.down(log).catch((err: Error) => log(`stopping the previous cluster: ${err.message}`));
    const binaries = [
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'etcd',
      'kwok',
      'registry',
    ];
    if (runsContainerd())
      binaries.push('containerd', 'containerd-shim-runc-v2', 'runc', 'crictl', 'cni/bridge');
    for (const c of binaries) {
      if (!existsSync(join(this.binDir, c))) {
        throw new Error(`${join(this.binDir, c)} is missing: run \`make tools\` (hack/build-tools.sh) first`);
      }
    }
    // Before any pod address is used: containerd's CNI network hands out addresses of localPodCIDR.
    installNetworkGuard(guardedCIDRs, log);
    // A fresh cluster, except for the registry's storage: what `make images` pushed stays across down and up.
    if (existsSync(this.dir)) {
      for (const entry of readdirSync(this.dir)) {
        if (entry !== 'registry') rmSync(this.#path(entry), { recursive: true, force: true });
      }
    }
    for (const d of ['pki', 'logs', 'pids', 'etcd'])
      mkdirSync(this.#path(d), { recursive: true, mode: 0o700 });
    const t0 = performance.now();
    try {
      await this.#writePKI();
      let state = await this.#plan();
      writeFileSync(this.#path('state.json'), JSON.stringify(state, null, 2));
      for (const c of activeComponents()) {
        for (let attempt = 1; ; attempt++) {
          const logFile = this.#path('logs', `${c}.log`);
          const offset = existsSync(logFile) ? statSync(logFile).size : 0;
          try {
            await this.start(c);
            break;
          } catch (err) {
            // A free port picked at planning time can be taken by another process before the component binds it.
            const taken =
              existsSync(logFile) &&
              readFileSync(logFile, 'utf8').slice(offset).includes('address already in use');
            if (!taken || attempt >= 3) throw err;
            log(`${c}: its port was taken meanwhile; picking another`);
            state = await this.#plan({
              ...state.ports,
              [c]: undefined,
              ...(c === 'etcd' ? { etcdPeer: undefined } : {}),
              ...(c === 'containerd' ? { criStream: undefined } : {}),
            });
            writeFileSync(this.#path('state.json'), JSON.stringify(state, null, 2));
          }
        }
        log(`${c} ready (${Math.round(performance.now() - t0)} ms)`);
        if (c === 'kube-apiserver') await this.#writeSchedulerConfig();
      }
      await this.#registerNormalNodes();
      await this.#waitForDefaultServiceAccount();
    } catch (err) {
      // Nothing half-started may outlive a failed start.
      await this.down();
      throw err;
    }
    log(`cluster ready in ${Math.round(performance.now() - t0)} ms`);
    return true;
  }

  /** Stops every process this folder's cluster started (by pid) and waits until they are gone. */
  async down(log: (line: string) => void = () => {}): Promise<void> {
    // While the apiserver still answers: which local virtual nodes it had, to end the CoreDNS their operators left.
    // A failure there still stops everything else, then is reported.
    let leftoversFailed: unknown;
    if (existsSync(this.kubeconfigPath)) {
      try {
        const { localVirtualNodes, stopLeftoverClusterDns } = await import('./local-leftovers.ts');
        const nodes = await Promise.resolve()
          .then(() => localVirtualNodes(this.kubeConfig()))
          .catch(() => []);
        for (const node of await stopLeftoverClusterDns(nodes))
          log(`stopped the CoreDNS left behind by virtual node ${node}`);
      } catch (err) {
        leftoversFailed = err;
      }
    }
    await this.#removeRealNodes(log);
    // Pods first, through CRI while containerd runs: their netns, IP leases and mounts go with them.
    const containerd = this.#pid('containerd');
    if (containerd !== undefined && isAlive(containerd)) {
      await removeAllPods(this.dir, this.binDir).catch((err: Error) =>
        log(`containerd: could not remove its pods through CRI (${err.message.trim()}); killing them`),
      );
    }
    for (const c of [...components].reverse()) await this.stop(c);
    if (existsSync(join(this.dir, 'containerd'))) await releaseContainerd(this.dir);
    if (leftoversFailed !== undefined) throw leftoversFailed;
  }

  /** Stops one component (SIGTERM, then SIGKILL after 10 s) and waits until its process is gone. */
  async stop(component: Component): Promise<void> {
    const pid = this.#pid(component);
    if (pid === undefined) return;
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig); // the component leads its own process group
      } catch {
        try {
          process.kill(pid, sig);
        } catch {
          /* already gone */
        }
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (isAlive(pid)) {
      if (Date.now() > deadline) signal('SIGKILL');
      await sleep(50);
    }
    rmSync(this.#path('pids', `${component}.pid`), { force: true });
  }

  /** Starts one component with the arguments recorded at `up` and waits until it is ready. */
  async start(component: Component): Promise<void> {
    const state = this.#state();
    const command = state.commands[component];
    if (!command) throw new Error(`${component} is not a process of the cluster in ${this.dir}`);
    const [bin, ...args] = command;
    const node = (state.realNodes ?? []).find((n) => component.startsWith(`${n.name}/`));
    // Idempotent: a restart re-enters the mount namespace that holds the running pods' mounts.
    if (component === 'containerd') await prepareContainerd(state.containerd);
    if (node && component.endsWith('/containerd')) await prepareContainerd(this.#nodeContainerd(node));
    if (node && component.endsWith('/kubelet')) ensureCgroupRoot(node);
    const env =
      component === 'registry'
        ? registryEnv
        : component === 'containerd' || component.endsWith('/containerd')
          ? containerdEnv(this.binDir)
          : process.env;
    mkdirSync(dirname(this.#path('logs', `${component}.log`)), { recursive: true });
    mkdirSync(dirname(this.#path('pids', `${component}.pid`)), { recursive: true });
    const out = openSync(this.#path('logs', `${component}.log`), 'a');
    const child = spawn(bin!, args, { detached: true, stdio: ['ignore', out, out], cwd: this.dir, env });
    closeSync(out);
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${component}`);
    writeFileSync(this.#path('pids', `${component}.pid`), String(child.pid));
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (!isAlive(child.pid)) {
        throw new Error(`${component} exited during start-up; see ${this.#path('logs', `${component}.log`)}`);
      }
      if (await this.#probe(component).catch(() => false)) return;
      if (Date.now() > deadline) {
        throw new Error(`${component} not ready after 120 s; see ${this.#path('logs', `${component}.log`)}`);
      }
      await sleep(100);
    }
  }

  async #probe(component: Component): Promise<boolean> {
    if (component === 'containerd') return criAnswers(this.dir, this.binDir);
    if (component === 'gateway') return tcpAnswers(nodeNetwork.gateway, gatewayPorts.apiserver);
    const node = (this.#state().realNodes ?? []).find((n) => component.startsWith(`${n.name}/`));
    if (node) {
      const part = component.slice(node.name.length + 1) as NodePart;
      if (part === 'containerd') return criAnswers(nodePaths(this.dir, node).dir, this.binDir);
      const body = await httpGet(nodeHealthURL(node, part));
      // The kubelet answers `ok`; kube-proxy a JSON status.
      return part === 'kubelet' ? body === 'ok' : body.includes('"healthy":true');
    }
    const { ports } = this.#state();
    const port = ports[component as keyof typeof ports];
    if (component === 'registry') return registryAnswers(`localhost:${port}`);
    if (component === 'etcd') return (await httpGet(`http://127.0.0.1:${port}/health`)).includes('"true"');
    if (component === 'kwok') return (await httpGet(`http://127.0.0.1:${port}/healthz`)) === 'ok';
    const tls =
      component === 'kube-apiserver'
        ? {
            ca: readFileSync(this.#path('pki', 'ca.crt')),
            cert: readFileSync(this.#path('pki', 'admin.crt')),
            key: readFileSync(this.#path('pki', 'admin.key')),
          }
        : // controller-manager and scheduler serve /healthz on a self-signed loopback certificate.
          { rejectUnauthorized: false };
    const path = component === 'kube-apiserver' ? '/readyz' : '/healthz';
    return (await httpsGet(`https://127.0.0.1:${port}${path}`, tls)) === 'ok';
  }

  async #writePKI(): Promise<void> {
    const year = 365 * 24 * 3600_000;
    const write = (name: string, pair: KeyPair) => {
      writeFileSync(this.#path('pki', `${name}.crt`), pair.certPem);
      writeFileSync(this.#path('pki', `${name}.key`), pair.keyPem, { mode: 0o600 });
    };
    const ca = await createCA('spillway-local-ca', 10 * year);
    write('ca', ca);
    write(
      'apiserver',
      await issueCert(ca, {
        subject: 'CN=kube-apiserver',
        dnsNames: [
          'localhost',
          'kubernetes',
          'kubernetes.default',
          'kubernetes.default.svc',
          'kubernetes.default.svc.cluster.local',
        ],
        // The gateway's address: real nodes reach the apiserver there (test/support/real-nodes.ts).
        ipAddresses: ['127.0.0.1', '10.96.0.1', nodeNetwork.gateway],
        usage: 'server',
        validForMs: year,
      }),
    );
    write(
      'admin',
      await issueCert(ca, {
        subject: 'CN=kubernetes-admin, O=system:masters',
        usage: 'client',
        validForMs: year,
      }),
    );
    // The apiserver's identity towards kubelets (logs, exec): virtual nodes authorise it like a kubelet does.
    write(
      'apiserver-kubelet-client',
      await issueCert(ca, {
        subject: 'CN=kube-apiserver-kubelet-client, O=system:masters',
        usage: 'client',
        validForMs: year,
      }),
    );
    // The aggregation layer (metrics-server's metrics.k8s.io): the apiserver proxies to it as front-proxy-client.
    const frontProxyCA = await createCA('spillway-local-front-proxy-ca', 10 * year);
    write('front-proxy-ca', frontProxyCA);
    write(
      'front-proxy-client',
      await issueCert(frontProxyCA, { subject: 'CN=front-proxy-client', usage: 'client', validForMs: year }),
    );
    const sa = await createSigningKey();
    writeFileSync(this.#path('pki', 'sa.key'), sa.privatePem, { mode: 0o600 });
    writeFileSync(this.#path('pki', 'sa.pub'), sa.publicPem);
  }

  /** Ports and command lines; `keep` holds ports already chosen (a retry replaces only the taken one). */
  async #plan(
    keep: Partial<Record<keyof ClusterState['ports'], number | undefined>> = {},
  ): Promise<ClusterState> {
    const port = async (k: keyof ClusterState['ports']) => keep[k] ?? (await freePort());
    // `make cluster-up`'s registry is the catalog's localhost:5000; any other folder's (tests, a second
    // cluster) takes a free port.
    const registryPort =
      keep.registry ??
      (this.dir === join(repoRoot, '.cluster') && (await portIsFree(defaultRegistryPort))
        ? defaultRegistryPort
        : await freePort());
    const ports = {
      etcd: await port('etcd'),
      etcdPeer: await port('etcdPeer'),
      'kube-apiserver': await port('kube-apiserver'),
      'kube-controller-manager': await port('kube-controller-manager'),
      'kube-scheduler': await port('kube-scheduler'),
      kwok: await port('kwok'),
      registry: registryPort,
      criStream: await port('criStream'),
    };
    const registry = `localhost:${ports.registry}`;
    const containerd: ContainerdOptions = {
      dir: this.dir,
      binDir: this.binDir,
      pauseImage: imageRef('pause', registry),
      registries: [registry],
      streamPort: ports.criStream,
      nodeCIDR: localNodeCIDR,
      runtimeHandlers: this.#runtimeHandlers,
    };
    const pki = (f: string) => this.#path('pki', f);
    const bin = (b: string) => join(this.binDir, b);
    const kubeconfig = this.kubeconfigPath;
    const ca = readFileSync(pki('ca.crt'));
    writeFileSync(
      kubeconfig,
      adminKubeconfig(
        `https://127.0.0.1:${ports['kube-apiserver']}`,
        ca,
        readFileSync(pki('admin.crt')),
        readFileSync(pki('admin.key')),
      ),
      { mode: 0o600 },
    );
    const clientFlags = [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
    ];
    return {
      ports,
      containerd,
      commands: {
        registry: registryCommand({ dir: this.dir, binDir: this.binDir, port: ports.registry }),
        containerd: containerdCommand(this.dir, this.binDir),
        etcd: [
          bin('etcd'),
          '--name=spillway',
          `--data-dir=${this.#path('etcd')}`,
          `--listen-client-urls=http://127.0.0.1:${ports.etcd}`,
          `--advertise-client-urls=http://127.0.0.1:${ports.etcd}`,
          `--listen-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
          `--initial-cluster=spillway=http://127.0.0.1:${ports.etcdPeer}`,
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        'kube-apiserver': [
          bin('kube-apiserver'),
          `--etcd-servers=http://127.0.0.1:${ports.etcd}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          `--secure-port=${ports['kube-apiserver']}`,
          '--endpoint-reconciler-type=none',
          `--service-cluster-ip-range=${serviceCIDR}`,
          '--authorization-mode=Node,RBAC',
          // As every real cluster: a node identity (system:node:<name>, a virtual node's) may only touch its own
          // Node, Lease and the pods bound to it, and mint tokens only bound to those pods.
          '--enable-admission-plugins=NodeRestriction',
          '--allow-privileged=true',
          `--client-ca-file=${pki('ca.crt')}`,
          `--tls-cert-file=${pki('apiserver.crt')}`,
          `--tls-private-key-file=${pki('apiserver.key')}`,
          `--kubelet-client-certificate=${pki('apiserver-kubelet-client.crt')}`,
          // Reach kubelets by address, never by a host name that would need a DNS lookup off this machine.
          '--kubelet-preferred-address-types=InternalIP',
          `--kubelet-client-key=${pki('apiserver-kubelet-client.key')}`,
          '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
          `--service-account-key-file=${pki('sa.pub')}`,
          `--service-account-signing-key-file=${pki('sa.key')}`,
          `--requestheader-client-ca-file=${pki('front-proxy-ca.crt')}`,
          '--requestheader-allowed-names=front-proxy-client',
          '--requestheader-extra-headers-prefix=X-Remote-Extra-',
          '--requestheader-group-headers=X-Remote-Group',
          '--requestheader-username-headers=X-Remote-User',
          `--proxy-client-cert-file=${pki('front-proxy-client.crt')}`,
          `--proxy-client-key-file=${pki('front-proxy-client.key')}`,
          // Aggregated APIs by their endpoints' pod addresses: the host has no kube-proxy of its own for ClusterIPs.
          '--enable-aggregator-routing=true',
          '--max-requests-inflight=1000',
          '--max-mutating-requests-inflight=500',
          '--profiling=false',
          '--v=1',
        ],
        'kube-controller-manager': [
          bin('kube-controller-manager'),
          ...clientFlags,
          '--bind-address=127.0.0.1',
          `--secure-port=${ports['kube-controller-manager']}`,
          `--cert-dir=${this.#path('pki', 'kcm')}`,
          '--leader-elect=false',
          '--controllers=*',
          '--use-service-account-credentials=true',
          `--root-ca-file=${pki('ca.crt')}`,
          `--service-account-private-key-file=${pki('sa.key')}`,
          `--cluster-signing-cert-file=${pki('ca.crt')}`,
          `--cluster-signing-key-file=${pki('ca.key')}`,
          // The defaults (20 qps) make a 1000-replica burst wait on the controller-manager's client.
          '--kube-api-qps=200',
          '--kube-api-burst=400',
          '--concurrent-replicaset-syncs=10',
          '--profiling=false',
          '--v=1',
        ],
        'kube-scheduler': [
          bin('kube-scheduler'),
          `--config=${this.#path('scheduler.yaml')}`,
          `--authentication-kubeconfig=${kubeconfig}`,
          `--authorization-kubeconfig=${kubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${ports['kube-scheduler']}`,
          `--cert-dir=${this.#path('pki', 'scheduler')}`,
          '--v=1',
        ],
        kwok: [
          bin('kwok'),
          `--kubeconfig=${kubeconfig}`,
          `--config=${join(repoRoot, 'test/support/kwok/stages.yaml')}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          `--cidr=${kwokPodCIDR}`,
          `--node-ip=${kwokNodeIP}`,
          '--node-lease-duration-seconds=40',
          `--server-address=127.0.0.1:${ports.kwok}`,
        ],
      },
    };
  }

  async #writeSchedulerConfig(): Promise<void> {
    writeFileSync(
      this.#path('scheduler.yaml'),
      [
        'apiVersion: kubescheduler.config.k8s.io/v1',
        'kind: KubeSchedulerConfiguration',
        'clientConnection:',
        `  kubeconfig: ${this.kubeconfigPath}`,
        '  qps: 200',
        '  burst: 400',
        'leaderElection:',
        '  leaderElect: false',
        '',
      ].join('\n'),
    );
  }

  /**
   * Adds the real kubelet nodes (test/support/real-nodes.ts) to a running cluster, with their addons: the cluster
   * DNS (CoreDNS as a Deployment in kube-system) and metrics-server (metrics.k8s.io), both from the registry's
   * images. The kwok nodes are cordoned, so that ordinary pods land on nodes that run them; {@link useKwokNodes}
   * undoes that. Idempotent: nodes already running are kept. Needs root.
   */
  async addRealNodes(log: (line: string) => void = () => {}, nodes = defaultRealNodes): Promise<void> {
    if (!runsContainerd()) throw new Error('real nodes need root (network and mount namespaces, cgroups)');
    let state = this.#state();
    const t0 = performance.now();
    // The node bridge, addresses and namespaces are fixed: one cluster with real nodes per machine.
    const owner = existsSync(realNodesOwnerFile) ? readFileSync(realNodesOwnerFile, 'utf8').trim() : '';
    if (
      owner &&
      owner !== this.dir &&
      existsSync(join(owner, 'state.json')) &&
      existsSync(netnsPath(nodes[0]!))
    )
      throw new Error(
        `the real nodes of the cluster in ${owner} are running: stop it first (SPILLWAY_CLUSTER_DIR=${owner} node hack/cluster.ts down)`,
      );
    mkdirSync(dirname(realNodesOwnerFile), { recursive: true });
    writeFileSync(realNodesOwnerFile, this.dir);
    if (!state.realNodes) {
      installNetworkGuard(guardedCIDRs, log);
      await setUpNodeNetwork(nodes);
      const pkiDir = this.#path('pki');
      const ca = readPair(pkiDir, 'ca');
      const commands: ClusterState['commands'] = {
        gateway: [
          process.execPath,
          join(repoRoot, 'test/support/node-gateway.ts'),
          `${nodeNetwork.gateway}:${gatewayPorts.apiserver}=127.0.0.1:${state.ports['kube-apiserver']}`,
          `${nodeNetwork.gateway}:${gatewayPorts.registry}=127.0.0.1:${state.ports.registry}`,
        ],
      };
      for (const node of nodes) {
        await writeNodeFiles(this.dir, node, {
          ca,
          caFile: join(pkiDir, 'ca.crt'),
          criSocket: containerdPaths(nodePaths(this.dir, node).dir).socket,
          // kube-proxy takes one CIDR per family: 10.248.0.0/14 holds the real nodes' pods (10.248/16) and the
          // virtual node's sandboxes (10.250/16), so that traffic between them is never masqueraded.
          clusterCIDRs: ['10.248.0.0/14'],
        });
        for (const [part, argv] of Object.entries(nodeCommands(this.dir, this.binDir, node)))
          commands[`${node.name}/${part as NodePart}`] = argv;
      }
      state = { ...state, commands: { ...state.commands, ...commands }, realNodes: nodes };
      writeFileSync(this.#path('state.json'), JSON.stringify(state, null, 2));
    }
    for (const c of realNodeComponents(state.realNodes!)) {
      const pid = this.#pid(c);
      if (pid !== undefined && isAlive(pid)) continue;
      await this.start(c);
      log(`${c} ready (${Math.round(performance.now() - t0)} ms)`);
    }
    const kc = this.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    await waitFor('real nodes Ready', 120_000, async () => {
      const list = await core.listNode({ labelSelector: `${REAL_NODE_LABEL}=real` });
      return (
        list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          .length === state.realNodes!.length
      );
    });
    for (const node of state.realNodes!) {
      // spec.podCIDR is set once, by whoever allocates CIDRs: here, the cluster (no --allocate-node-cidrs).
      const current = await core.readNode({ name: node.name });
      if (!current.spec?.podCIDR) {
        await core.patchNode(
          { name: node.name, body: { spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      }
    }
    await publishKubernetesEndpoints(kc);
    await applyAddons(this.kubeconfigPath, this.binDir, this.registry, log);
    await this.useKwokNodes(false);
    log(
      `real nodes ready in ${Math.round(performance.now() - t0)} ms: ${state.realNodes!.map((n) => n.name).join(', ')}`,
    );
  }

  /** The real nodes of this cluster (none until {@link addRealNodes}). */
  get realNodes(): RealNode[] {
    return existsSync(this.#path('state.json')) ? (this.#state().realNodes ?? []) : [];
  }

  /**
   * Cordons (false) or uncordons (true) the kwok nodes, and the real nodes the other way: integration tests
   * schedule onto kwok nodes, e2e tests onto real ones.
   */
  async useKwokNodes(kwok: boolean): Promise<void> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    const set = async (name: string, unschedulable: boolean) =>
      core.patchNode(
        { name, body: { spec: { unschedulable } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    for (const name of normalNodes) await set(name, !kwok).catch(() => undefined);
    for (const node of this.realNodes) await set(node.name, kwok);
  }

  #nodeContainerd(node: RealNode): ContainerdOptions {
    const { containerd } = this.#state();
    return nodeContainerdOptions(this.dir, this.binDir, node, {
      pauseImage: containerd.pauseImage,
      registry: containerd.registries[0]!,
    });
  }

  /** Stops the real nodes (their pods through CRI first), frees their cgroups and removes their network. */
  async #removeRealNodes(log: (line: string) => void): Promise<void> {
    if (!existsSync(this.#path('state.json'))) return;
    const nodes = this.#state().realNodes ?? [];
    if (nodes.length === 0) return;
    for (const node of nodes) {
      const dir = nodePaths(this.dir, node).dir;
      // The kubelet first, so that it does not restart what CRI removes.
      await this.stop(`${node.name}/kubelet`);
      await this.stop(`${node.name}/kube-proxy`);
      const pid = this.#pid(`${node.name}/containerd`);
      if (pid !== undefined && isAlive(pid)) {
        await removeAllPods(dir, this.binDir).catch((err: Error) =>
          log(`${node.name}: could not remove its pods through CRI (${err.message.trim()}); killing them`),
        );
      }
      await this.stop(`${node.name}/containerd`);
      if (existsSync(join(dir, 'containerd'))) await releaseContainerd(dir);
      removeCgroupTree(`spillway-${node.name}`);
    }
    await this.stop('gateway');
    await tearDownNodeNetwork(nodes);
    if (existsSync(realNodesOwnerFile) && readFileSync(realNodesOwnerFile, 'utf8').trim() === this.dir)
      rmSync(realNodesOwnerFile, { force: true });
  }

  async #registerNormalNodes(): Promise<void> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    for (const name of normalNodes) {
      const resources = { cpu: '4', memory: '8Gi', pods: '110' };
      const node: V1Node = {
        metadata: {
          name,
          annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
          labels: {
            type: 'normal',
            'kubernetes.io/hostname': name,
            'kubernetes.io/os': 'linux',
            'kubernetes.io/arch': 'amd64',
            'node.kubernetes.io/instance-type': 'kwok',
          },
        },
        status: { capacity: resources, allocatable: resources },
      };
      await core.createNode({ body: node });
    }
    await waitFor('kwok nodes Ready', 60_000, async () => {
      const nodes = await core.listNode({ labelSelector: 'type=normal' });
      return (
        nodes.items.filter((n) =>
          n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        ).length === normalNodes.length
      );
    });
  }

  async #waitForDefaultServiceAccount(): Promise<void> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    await waitFor('default ServiceAccount', 60_000, async () => {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return true;
    });
  }
}

/** True when a TCP connection to host:port succeeds. */
function tcpAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 1000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Removes a cgroup folder (and the empty ones under it) from every cgroup v1 hierarchy; a kubelet's leftovers. */
function removeCgroupTree(name: string): void {
  const root = '/sys/fs/cgroup';
  if (!existsSync(root)) return;
  const remove = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) remove(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      /* still has a process, or already gone */
    }
  };
  for (const hierarchy of readdirSync(root)) {
    const dir = join(root, hierarchy, name);
    if (existsSync(dir)) remove(dir);
  }
}

/** True when nothing listens on 127.0.0.1:`port`. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Re-exported for tests: polls until a check holds (operator/shared/wait.ts). */
export { waitFor };

function adminKubeconfig(server: string, ca: Buffer, cert: Buffer, key: Buffer): string {
  const b64 = (b: Buffer) => b.toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: spillway-local`,
    `  cluster: {server: "${server}", certificate-authority-data: ${b64(ca)}}`,
    'users:',
    '- name: admin',
    `  user: {client-certificate-data: ${b64(cert)}, client-key-data: ${b64(key)}}`,
    'contexts:',
    '- name: spillway-local',
    '  context: {cluster: spillway-local, user: admin}',
    'current-context: spillway-local',
    '',
  ].join('\n');
}

function httpGet(url: string): Promise<string> {
  return new Promise((ok, fail) => {
    const req = httpRequest(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => ok(body.trim()));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

function httpsGet(url: string, tls: object): Promise<string> {
  return new Promise((ok, fail) => {
    const req = httpsRequest(url, { ...tls, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => ok(res.statusCode === 200 ? body.trim() : `HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

/** What an integration test gets: the cluster started (or reused) by vitest's global setup. */
export interface TestCluster {
  kubeconfigPath: string;
  kc: KubeConfig;
  stop(component: Component): Promise<void>;
  start(component: Component): Promise<void>;
}

/** The control plane of this test run (see test/support/global-setup.ts). */
export async function testCluster(): Promise<TestCluster> {
  const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
  if (!existsSync(cluster.kubeconfigPath)) {
    throw new Error(
      'no local control plane: integration tests run under vitest --project integration (global setup starts it)',
    );
  }
  return {
    kubeconfigPath: cluster.kubeconfigPath,
    kc: cluster.kubeConfig(),
    stop: (c) => cluster.stop(c),
    start: (c) => cluster.start(c),
  };
}
