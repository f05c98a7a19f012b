/**
 * The local cluster's container runtime: containerd v2 with runc and the CNI plugins (all built from the Go module
 * proxy by hack/build-tools.sh), everything it owns under `<dir>/containerd`: root, state, CRI socket, shim sockets,
 * runc state, netns pins, CNI config and IP leases. Nothing under the host's /var/lib/containerd or /run/containerd.
 *
 * containerd runs in its own mount namespace, pinned by a file (`<dir>/containerd/ns/mnt`) so that a restarted
 * containerd re-enters the same namespace and finds the rootfs and netns mounts of the pods that kept running
 * (shims are their own process groups and outlive a `kill -9` of containerd). The namespace is a slave of the
 * host's: mounts the host makes under shared mounts reach containerd, containerd's own mounts never reach the
 * host. Files containerd writes on the host's filesystems (CRI container logs) are the same files either way.
 *
 * Networking follows docs/architecture.md#network-guard: the caller installs the guard first; the bridge and
 * its gateway address are ours (as the local provider's bridge code does), with forwarding on the bridge only,
 * and the CNI bridge plugin is not a gateway, since as one it would turn on forwarding host-wide.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { intToIp, parseCIDR } from '../../operator/providers/local/network.ts';

const run = promisify(execFile);

/** The CNI network's name, also the name of its conflist. */
export const CNI_NETWORK = 'spillway';

/** A CRI runtime handler (a Kubernetes RuntimeClass `handler`) beside the default `runc`. */
export interface RuntimeHandler {
  /** containerd shim type, e.g. `io.containerd.runc.v2`, `io.containerd.kata.v2`, `io.containerd.runsc.v1`. */
  runtimeType: string;
  /** Options of the shim (`[...runtimes.<name>.options]`), e.g. `{ BinaryName: '/usr/bin/runsc' }`. */
  options?: Record<string, string | boolean | number>;
}

export interface ContainerdOptions {
  /** The cluster folder: containerd's files go under `<dir>/containerd`. */
  dir: string;
  /** Where containerd, containerd-shim-runc-v2, runc, crictl and cni/ are. */
  binDir: string;
  /** The sandbox (pause) image, e.g. `imageRef('pause', registry)`. */
  pauseImage: string;
  /** The registries (`localhost:PORT`) containerd may pull from; every other host resolves to nothing. */
  registries: string[];
  /** Port of CRI's streaming server (exec, attach, port-forward) on 127.0.0.1. */
  streamPort: number;
  /** This node's pod addresses; the first goes on the bridge. Default 10.250.0.0/24. */
  nodeCIDR?: string;
  /** Bridge of the pod network. Default `spillway0` (the guard's, test/support/guard.ts). */
  bridge?: string;
  /** RuntimeClass handlers besides `runc` (the default), by handler name. */
  runtimeHandlers?: Record<string, RuntimeHandler>;
  /**
   * A network namespace (`/run/netns/<name>`) for containerd and its pods' bridge: a real node's
   * (test/support/real-nodes.ts). Default: the host's.
   */
  netns?: string;
  /** Where a registry of {@link registries} is served when not at its own name, e.g. `http://10.249.0.1:5000`. */
  registryServers?: Record<string, string>;
}

/** Where containerd's files are for a cluster folder. */
export function containerdPaths(dir: string) {
  const base = join(dir, 'containerd');
  const shortSockets = join(base, 's');
  return {
    base,
    root: join(base, 'root'),
    state: join(base, 'state'),
    /** The CRI (and containerd) gRPC socket. */
    socket: join(base, 'containerd.sock'),
    config: join(base, 'config.toml'),
    /** The mount namespace pin (a bind mount of /proc/<pid>/ns/mnt) and the private mount holding it. */
    nsDir: join(base, 'ns'),
    nsPin: join(base, 'ns', 'mnt'),
    cniConfDir: join(base, 'net.d'),
    certsDir: join(base, 'certs.d'),
    runcRoot: join(base, 'runc'),
    // Shim sockets: a unix socket path has ~108 bytes and containerd allows at most 42 for this folder.
    shimSockets:
      shortSockets.length <= 42
        ? shortSockets
        : `/run/spillway-shims-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`,
  };
}

/**
 * Where host-local keeps the address leases of pods on `bridge`: one folder per bridge for the whole host, not per
 * cluster folder, because every cluster's containerd puts its pods on the same bridge and node CIDR, and two
 * clusters running at once (a test's own cluster beside the suite's) must not hand out one address twice.
 */
export const ipamDir = (bridge: string) => `/run/spillway/ipam/${bridge}`;

/** The runtime endpoint crictl and the CRI client take: `unix://<socket>`. */
export const criEndpoint = (dir: string) => `unix://${containerdPaths(dir).socket}`;

function toml(value: string | boolean | number | string[]): string {
  if (Array.isArray(value)) return `[${value.map((v) => toml(v)).join(', ')}]`;
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** containerd's config (version 3): every path under the cluster folder, CRI with runc on cgroupfs and CNI. */
export function containerdConfig(options: ContainerdOptions): string {
  const p = containerdPaths(options.dir);
  const handlers: Record<string, RuntimeHandler> = {
    runc: {
      runtimeType: 'io.containerd.runc.v2',
      // cgroupfs: this machine has no systemd to delegate cgroups to (cgroup v1, hybrid layout).
      options: { BinaryName: join(options.binDir, 'runc'), Root: p.runcRoot, SystemdCgroup: false },
    },
    ...options.runtimeHandlers,
  };
  const runtime = "plugins.'io.containerd.cri.v1.runtime'";
  const lines = [
    'version = 3',
    `root = ${toml(p.root)}`,
    `state = ${toml(p.state)}`,
    'imports = []',
    // Plugins that would read or write host paths (/opt/containerd, /var/run/nri) and that nothing here uses.
    `disabled_plugins = ${toml([
      'io.containerd.internal.v1.opt',
      'io.containerd.image-verifier.v1.bindir',
      'io.containerd.nri.v1.nri',
      'io.containerd.tracing.processor.v1.otlp',
      'io.containerd.internal.v1.tracing',
    ])}`,
    '[grpc]',
    `  address = ${toml(p.socket)}`,
    '[ttrpc]',
    `  address = ${toml(`${p.socket}.ttrpc`)}`,
    "[plugins.'io.containerd.shim.v1.manager']",
    `  socket_dir = ${toml(p.shimSockets)}`,
    "[plugins.'io.containerd.cri.v1.images']",
    "  snapshotter = 'overlayfs'",
    "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    `  sandbox = ${toml(options.pauseImage)}`,
    "[plugins.'io.containerd.cri.v1.images'.registry]",
    `  config_path = ${toml(p.certsDir)}`,
    `[${runtime}]`,
    // runc may only raise a container's oom_score_adj with CAP_SYS_RESOURCE, which this machine does not grant.
    '  restrict_oom_score_adj = true',
    '  netns_mounts_under_state_dir = true',
    '  cdi_spec_dirs = []',
    `[${runtime}.containerd]`,
    "  default_runtime_name = 'runc'",
    ...Object.entries(handlers).flatMap(([name, h]) => [
      `[${runtime}.containerd.runtimes.${JSON.stringify(name)}]`,
      `  runtime_type = ${toml(h.runtimeType)}`,
      ...(h.options
        ? [
            `[${runtime}.containerd.runtimes.${JSON.stringify(name)}.options]`,
            ...Object.entries(h.options).map(([k, v]) => `  ${k} = ${toml(v)}`),
          ]
        : []),
    ]),
    `[${runtime}.cni]`,
    `  bin_dirs = ${toml([join(options.binDir, 'cni')])}`,
    `  conf_dir = ${toml(p.cniConfDir)}`,
    '  max_conf_num = 1',
    "[plugins.'io.containerd.grpc.v1.cri']",
    "  stream_server_address = '127.0.0.1'",
    `  stream_server_port = ${toml(String(options.streamPort))}`,
    '',
  ];
  return lines.join('\n');
}

/** The CNI conflist: a bridge with host-local leases over the node CIDR, loopback, and portmap on nftables. */
export function cniConflist(options: ContainerdOptions): string {
  const nodeCIDR = options.nodeCIDR ?? '10.250.0.0/24';
  const { base } = parseCIDR(nodeCIDR);
  const gateway = intToIp(base + 1);
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: CNI_NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: options.bridge ?? 'spillway0',
          isGateway: false,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            // A node in its own network namespace has its own bridge and addresses: its leases are its own.
            dataDir: options.netns
              ? join(containerdPaths(options.dir).base, 'ipam')
              : ipamDir(options.bridge ?? 'spillway0'),
            ranges: [[{ subnet: nodeCIDR, gateway }]],
            routes: [{ dst: '0.0.0.0/0', gw: gateway }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true }, backend: 'nftables', snat: false },
        { type: 'loopback' },
      ],
    },
    null,
    2,
  );
}

/**
 * Lets containerd pull from `host` (`localhost:PORT`, plain HTTP), served at `server` (default `http://<host>`);
 * read on each pull, no restart needed.
 */
export function allowRegistry(dir: string, host: string, server = `http://${host}`): void {
  const hostDir = join(containerdPaths(dir).certsDir, host);
  mkdirSync(hostDir, { recursive: true });
  writeFileSync(
    join(hostDir, 'hosts.toml'),
    [`server = "${server}"`, `[host."${server}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
  );
}

/**
 * Writes containerd's config, the CNI conflist and the registry hosts, makes the bridge, and pins the mount
 * namespace. Idempotent: a restart rewrites the same files and reuses the pinned namespace. Install the network
 * guard before calling this.
 */
export async function prepareContainerd(options: ContainerdOptions): Promise<void> {
  const p = containerdPaths(options.dir);
  for (const d of [p.root, p.state, p.cniConfDir, p.runcRoot, p.nsDir]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
  }
  writeFileSync(p.config, containerdConfig(options));
  writeFileSync(join(p.cniConfDir, `10-${CNI_NETWORK}.conflist`), cniConflist(options));
  // Any registry not listed resolves to a closed loopback port: containerd never pulls from the internet.
  const fallback = join(p.certsDir, '_default');
  mkdirSync(fallback, { recursive: true });
  writeFileSync(join(fallback, 'hosts.toml'), 'server = "http://127.0.0.1:9"\n');
  for (const r of options.registries) allowRegistry(options.dir, r, options.registryServers?.[r]);
  await ensureBridge(options.bridge ?? 'spillway0', options.nodeCIDR ?? '10.250.0.0/24', options.netns);
  await ensureMountNamespace(options.dir);
}

/**
 * The command that runs containerd in its pinned mount namespace (after {@link prepareContainerd}), and in
 * `netns` when given.
 */
export function containerdCommand(dir: string, binDir: string, netns?: string): string[] {
  const p = containerdPaths(dir);
  return [
    'nsenter',
    ...(netns ? [`--net=${netns}`] : []),
    `--mount=${p.nsPin}`,
    '--',
    join(binDir, 'containerd'),
    '--config',
    p.config,
    '--log-level',
    'warn',
  ];
}

/** The environment containerd runs with: its shim found on PATH, OpenTelemetry exporting nothing. */
export function containerdEnv(binDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    OTEL_SDK_DISABLED: 'true',
    OTEL_TRACES_EXPORTER: 'none',
  };
}

/**
 * The bridge with the node CIDR's first address, forwarding on it alone (as operator/providers/local/network.ts);
 * in `netns` when given (a real node, which routes for its pods: test/support/real-nodes.ts turns forwarding on).
 */
async function ensureBridge(bridge: string, nodeCIDR: string, netns?: string): Promise<void> {
  const { base, bits } = parseCIDR(nodeCIDR);
  const ip = (args: string[]) => run('ip', [...(netns ? ['-n', basename(netns)] : []), ...args]);
  await ip(['link', 'add', bridge, 'type', 'bridge']).catch((err: { stderr?: string }) => {
    if (!String(err.stderr).includes('File exists')) throw err;
  });
  await ip(['addr', 'replace', `${intToIp(base + 1)}/${bits}`, 'dev', bridge]);
  await ip(['link', 'set', bridge, 'up']);
  if (!netns) writeFileSync(`/proc/sys/net/ipv4/conf/${bridge}/forwarding`, '1');
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
}

/**
 * A mount namespace for containerd, pinned at `<dir>/containerd/ns/mnt`. The pin's folder is a private bind
 * mount first: the kernel refuses to pin a mount namespace on a shared mount (systemd hosts make `/` shared).
 */
async function ensureMountNamespace(dir: string): Promise<void> {
  const p = containerdPaths(dir);
  if (isMountPoint(p.nsPin)) return;
  if (!isMountPoint(p.nsDir)) {
    await run('mount', ['--bind', p.nsDir, p.nsDir]);
    await run('mount', ['--make-private', p.nsDir]);
  }
  writeFileSync(p.nsPin, '');
  await run('unshare', [`--mount=${p.nsPin}`, '--propagation', 'slave', 'true']);
  // The new namespace starts as a copy of the host's mounts, including other tools' namespace pins (`ip netns`
  // files, other containerds' pins). A copy would keep those namespaces alive after their owners delete them
  // (on a host with private mounts, as here, the owner's unmount does not reach our copy): drop them all.
  // findmnt exits 1 when it finds none.
  const { stdout } = await run('nsenter', [
    `--mount=${p.nsPin}`,
    '--',
    'findmnt',
    '-rn',
    '-t',
    'nsfs',
    '-o',
    'TARGET',
  ]).catch((err: { code?: number; stdout?: string }) => {
    if (err.code === 1) return { stdout: '' };
    throw err;
  });
  for (const target of stdout.split('\n').filter(Boolean).reverse()) {
    // findmnt escapes blanks and the like as \x20.
    const path = target.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    await run('nsenter', [`--mount=${p.nsPin}`, '--', 'umount', '-l', path]).catch(() => {});
  }
}

/** The pids of shims serving this folder's containerd (found by their `-address <socket>`). */
export function shimPids(dir: string): number[] {
  const socket = containerdPaths(dir).socket;
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv[0]?.endsWith('containerd-shim-runc-v2')) continue;
    const i = argv.indexOf('-address');
    if (i >= 0 && argv[i + 1] === socket) pids.push(Number(p));
  }
  return pids;
}

/** crictl against this folder's containerd. */
export function crictl(
  dir: string,
  binDir: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const endpoint = criEndpoint(dir);
  return run(
    join(binDir, 'crictl'),
    ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '--timeout', '30s', ...args],
    { encoding: 'utf8' },
  );
}

/** True when containerd's CRI service answers. */
export async function criAnswers(dir: string, binDir: string): Promise<boolean> {
  if (!existsSync(containerdPaths(dir).socket)) return false;
  const { stdout } = await crictl(dir, binDir, ['version']);
  return stdout.includes('RuntimeApiVersion');
}

/**
 * Removes every pod sandbox and container through CRI (their netns, IP leases and rootfs mounts with them).
 * Call while containerd still runs, before {@link releaseContainerd}.
 */
export async function removeAllPods(dir: string, binDir: string): Promise<void> {
  await crictl(dir, binDir, ['rmp', '--all', '--force']);
}

/**
 * After containerd has stopped: kills the shims it left (with their containers), unpins the mount
 * namespace, so that the kernel drops every mount in it with the last process, and removes the shim socket
 * folder when it lies outside the cluster folder.
 */
export async function releaseContainerd(dir: string): Promise<void> {
  const p = containerdPaths(dir);
  const shims = shimPids(dir);
  for (const pid of shims) {
    try {
      // The shim leads its own process group (containerd starts it with Setpgid) holding its containers' runc.
      process.kill(-pid, 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  for (const deadline = Date.now() + 10_000; shimPids(dir).length > 0 && Date.now() < deadline;)
    await sleep(50);
  // Containers whose shim died first are orphans in the namespace's cgroups: runc's state knows them.
  killOrphanContainers(p.runcRoot);
  for (const m of [p.nsPin, p.nsDir]) {
    if (isMountPoint(m)) execFileSync('umount', ['-l', m]);
  }
  if (!p.shimSockets.startsWith(p.base)) rmSync(p.shimSockets, { recursive: true, force: true });
}

/** SIGKILLs the init process of every container runc still records under `runcRoot`. */
function killOrphanContainers(runcRoot: string): void {
  if (!existsSync(runcRoot)) return;
  for (const ns of readdirSync(runcRoot)) {
    for (const id of readdirSync(join(runcRoot, ns), { withFileTypes: true })) {
      if (!id.isDirectory()) continue;
      try {
        const state = JSON.parse(readFileSync(join(runcRoot, ns, id.name, 'state.json'), 'utf8')) as {
          init_process_pid?: number;
          init_process_start?: number;
        };
        const pid = state.init_process_pid;
        if (!pid) continue;
        // The same pid and start time: the container's init, not a process that reused its pid.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const started = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
        if (started === state.init_process_start) process.kill(pid, 'SIGKILL');
      } catch {
        /* no state, or gone */
      }
    }
  }
}

/** A containerd started by {@link startContainerd}. */
export interface RunningContainerd {
  /** The CRI endpoint, `unix://<dir>/containerd/containerd.sock`. */
  endpoint: string;
  /** CRI's streaming server, `127.0.0.1:PORT`. */
  streamingAddress: string;
  pid: number;
  /** Removes every pod through CRI, stops containerd and its shims, and releases its mount namespace. */
  stop(): Promise<void>;
}

/**
 * Starts containerd on its own (the local cluster starts its one through LocalCluster), leading its own process
 * group, and waits until CRI answers. Install the network guard first.
 */
export async function startContainerd(options: ContainerdOptions): Promise<RunningContainerd> {
  await prepareContainerd(options);
  const [bin, ...args] = containerdCommand(options.dir, options.binDir);
  const logFile = join(containerdPaths(options.dir).base, 'containerd.log');
  const out = openSync(logFile, 'a');
  const child = spawn(bin!, args, {
    detached: true,
    stdio: ['ignore', out, out],
    env: containerdEnv(options.binDir),
  });
  closeSync(out);
  child.unref();
  const pid = child.pid!;
  let exited = false;
  child.once('exit', () => (exited = true));
  for (const deadline = Date.now() + 60_000; ; await sleep(50)) {
    if (exited) throw new Error(`containerd exited during start-up; see ${logFile}`);
    if (await criAnswers(options.dir, options.binDir).catch(() => false)) break;
    if (Date.now() > deadline) throw new Error(`containerd's CRI not answering after 60 s; see ${logFile}`);
  }
  return {
    endpoint: criEndpoint(options.dir),
    streamingAddress: `127.0.0.1:${options.streamPort}`,
    pid,
    stop: async () => {
      await removeAllPods(options.dir, options.binDir).catch(() => {});
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      for (const deadline = Date.now() + 10_000; !exited; await sleep(50)) {
        if (Date.now() > deadline) process.kill(-pid, 'SIGKILL');
      }
      await releaseContainerd(options.dir);
    },
  };
}
