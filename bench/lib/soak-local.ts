/**
 * The kill-soak's view of the local provider from the host, independent of the operator's own bookkeeping: the
 * node's pod sandboxes and containers as containerd lists them through CRI (crictl, filtered by the provider's
 * `spillway.dev/node` label and keyed by `io.kubernetes.pod.uid`), each sandbox's network checked from outside (the
 * address containerd's CNI gave it, and the pod's port answering on it) and from inside (a connection to a
 * ClusterIP through an ExecSync in its container), and what a deleted workload may leave behind looked for where
 * the provider and the runtime put it (sandboxes and containers in containerd, state directories, pod cgroups,
 * host-local IP leases). Also the clean-up of everything the soak made, whatever the operator
 * did. Needs root.
 *
 * crictl is run synchronously: the SoakProvider contract (./soak-counts.ts) reads the host in plain calls, and a
 * listing takes tens of milliseconds.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NODE_LABEL, POD_UID_LABEL } from '../../operator/providers/local/plan.ts';
import { removeLocalSandboxes } from '../../operator/providers/local/provider.ts';
import { ipamDir, CNI_NETWORK } from '../../test/support/containerd.ts';
import { repoRoot } from './results.ts';
import type { SoakProvider } from './soak-counts.ts';

/** The port the soak's pods serve on (busybox `httpd`), which the network check connects to. */
export const SOAK_POD_PORT = 8080;
const BRIDGE = 'spillway0';
/** Where host-local keeps the leases of the CNI network: one file per address, its first line the sandbox id. */
const LEASES = join(ipamDir(BRIDGE), CNI_NETWORK);
const CRICTL = join(repoRoot, 'bin', 'crictl');

/** One pod sandbox of the node as CRI lists it. */
export interface CriSandbox {
  id: string;
  uid: string;
  ready: boolean;
}

/** One container of the node as CRI lists it. */
export interface CriContainer {
  id: string;
  sandboxId: string;
  uid: string;
  name: string;
  running: boolean;
}

/** What containerd holds of one node at one moment. */
export interface CriScan {
  sandboxes: CriSandbox[];
  containers: CriContainer[];
}

function sh(cmd: string, args: string[], timeout = 10_000): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout });
  } catch {
    return undefined;
  }
}

/** crictl against one runtime endpoint; throws with crictl's own words when it fails. */
export class Crictl {
  readonly #endpoint: string;

  constructor(endpoint: string) {
    this.#endpoint = endpoint;
  }

  get #global(): string[] {
    return ['--runtime-endpoint', this.#endpoint, '--timeout', '10s'];
  }

  /** `crictl <command> -o json <args>`: flags before the arguments, or crictl takes them for more ids. */
  json<T>(command: string, ...args: string[]): T {
    // crictl's own deadline is 2 s, which a loaded 2-core host misses now and then.
    const out = execFileSync(CRICTL, [...this.#global, command, '-o', 'json', ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15_000,
    });
    return JSON.parse(out) as T;
  }

  /** The node's sandboxes and containers (every state). */
  scan(node: string): CriScan {
    const label = `${NODE_LABEL}=${node}`;
    const pods = this.json<{
      items?: { id: string; state: string; metadata: { uid: string }; labels?: Record<string, string> }[];
    }>('pods', '--label', label);
    const ctrs = this.json<{
      containers?: {
        id: string;
        podSandboxId: string;
        state: string;
        metadata: { name: string };
        labels?: Record<string, string>;
      }[];
    }>('ps', '-a', '--label', label);
    return {
      sandboxes: (pods.items ?? []).map((s) => ({
        id: s.id,
        uid: s.labels?.[POD_UID_LABEL] ?? s.metadata.uid,
        ready: s.state === 'SANDBOX_READY',
      })),
      containers: (ctrs.containers ?? []).map((c) => ({
        id: c.id,
        sandboxId: c.podSandboxId,
        uid: c.labels?.[POD_UID_LABEL] ?? '?',
        name: c.metadata.name,
        running: c.state === 'CONTAINER_RUNNING',
      })),
    };
  }

  /** The sandbox's pod IP from PodSandboxStatus (empty before its network is up), or why it could not be read. */
  sandboxIP(id: string): { ip?: string; error?: string } {
    try {
      const s = this.json<{ status?: { network?: { ip?: string } } }>('inspectp', id);
      return { ip: s.status?.network?.ip || undefined };
    } catch (err) {
      const e = err as { message?: string; stderr?: string };
      return { error: (e.stderr || e.message || String(err)).trim().split('\n').at(-1)?.slice(0, 200) };
    }
  }

  /** ExecSync of `cmd` in a container; its exit code and output, or why it could not run. */
  exec(containerId: string, cmd: string[], timeoutSeconds = 5): { code: number; output: string } {
    try {
      const output = execFileSync(
        CRICTL,
        [...this.#global, 'exec', '-s', '--timeout', String(timeoutSeconds), containerId, ...cmd],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: (timeoutSeconds + 10) * 1000 },
      );
      return { code: 0, output };
    } catch (err) {
      const e = err as { status?: number | null; stdout?: string; stderr?: string };
      return { code: e.status ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() };
    }
  }
}

/**
 * Lists the node's sandboxes every `intervalMs` for the whole soak and remembers every distinct sandbox id per pod
 * UID (more than one is a sandbox built again for the same pod: after a kill, or a half-built one rebuilt), and the
 * most ready sandboxes and running containers seen at once per UID and per `uid/container`.
 */
export class SandboxSampler {
  readonly seen = new Map<string, Set<string>>();
  /** The most ready sandboxes seen at once per pod UID. */
  readonly maxReady = new Map<string, number>();
  /** The most running containers seen at once per `uid/container`. */
  readonly maxRunning = new Map<string, number>();
  /** Listings that failed (containerd busy or down), so that a gap in the samples shows. */
  failedSamples = 0;
  samples = 0;
  readonly #crictl: Crictl;
  readonly #node: string;
  #last: CriScan = { sandboxes: [], containers: [] };
  #stopped = false;
  #loop: Promise<void>;

  constructor(crictl: Crictl, node: string, intervalMs = 500) {
    this.#crictl = crictl;
    this.#node = node;
    this.#loop = (async () => {
      while (!this.#stopped) {
        this.sample();
        await sleep(intervalMs);
      }
    })();
  }

  /** Every sandbox id seen for the node. */
  get sandboxIds(): Set<string> {
    return new Set([...this.seen.values()].flatMap((ids) => [...ids]));
  }

  sample(): CriScan {
    let scan: CriScan;
    try {
      scan = this.#crictl.scan(this.#node);
    } catch {
      this.failedSamples++;
      return this.#last;
    }
    this.samples++;
    const ready = new Map<string, number>();
    for (const s of scan.sandboxes) {
      this.seen.set(s.uid, (this.seen.get(s.uid) ?? new Set()).add(s.id));
      if (s.ready) ready.set(s.uid, (ready.get(s.uid) ?? 0) + 1);
    }
    for (const [uid, n] of ready) this.maxReady.set(uid, Math.max(n, this.maxReady.get(uid) ?? 0));
    const running = new Map<string, number>();
    for (const c of scan.containers.filter((x) => x.running)) {
      const key = `${c.uid}/${c.name}`;
      running.set(key, (running.get(key) ?? 0) + 1);
    }
    for (const [k, n] of running) this.maxRunning.set(k, Math.max(n, this.maxRunning.get(k) ?? 0));
    this.#last = scan;
    return scan;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

/**
 * Why a Running pod's sandbox is not whole, or undefined when it is: one ready sandbox whose PodSandboxStatus has
 * the pod's IP, the pod's container running in it, its port answering on that IP from the host (through the
 * bridge), and a connection from inside the container to a ClusterIP (through kube-proxy's rules and the bridge's
 * gateway).
 */
export function sandboxFault(
  crictl: Crictl,
  scan: CriScan,
  uid: string,
  podIP: string | undefined,
  service: { ip: string; port: number },
): string | undefined {
  const ready = scan.sandboxes.filter((s) => s.uid === uid && s.ready);
  if (ready.length === 0) return 'Running without a ready sandbox';
  if (ready.length > 1) return `${ready.length} ready sandboxes`;
  const sandbox = ready[0]!;
  const { ip, error } = crictl.sandboxIP(sandbox.id);
  if (error) return `PodSandboxStatus of ${sandbox.id.slice(0, 12)} failed: ${error}`;
  if (!ip) return `sandbox ${sandbox.id.slice(0, 12)} has no IP (the pod's: ${podIP ?? 'none'})`;
  if (ip !== podIP) return `sandbox IP ${ip} is not the pod's IP ${podIP ?? '(none)'}`;
  const container = scan.containers.find((c) => c.sandboxId === sandbox.id && c.running);
  if (!container) return `no running container in sandbox ${sandbox.id.slice(0, 12)}`;
  const answer = sh('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--max-time',
    '3',
    `http://${ip}:${SOAK_POD_PORT}/`,
  ]);
  if (!answer || answer === '000') return `nothing answers on ${ip}:${SOAK_POD_PORT} from the host`;
  // busybox's nc has no -z: an empty line sent and the connection closed; it exits 1 when it cannot connect.
  const inside = crictl.exec(container.id, ['sh', '-c', `echo | nc -w 3 ${service.ip} ${service.port}`]);
  if (inside.code !== 0) {
    return `no connection to ${service.ip}:${service.port} from inside (exit ${inside.code}${inside.output ? `: ${inside.output.slice(0, 120)}` : ''})`;
  }
  return undefined;
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The pod cgroups of `node` (`spillway/<node>/pod<uid>` under any hierarchy), one per pod UID. */
function podCgroups(node: string): Map<string, string[]> {
  const roots = ['/sys/fs/cgroup', ...entries('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c))];
  const byUid = new Map<string, string[]>();
  for (const root of roots) {
    for (const e of entries(join(root, 'spillway', node)).filter((x) => x.startsWith('pod'))) {
      byUid.set(e, [...(byUid.get(e) ?? []), join(root, 'spillway', node, e)]);
    }
  }
  return byUid;
}

/** host-local's leases: address → the sandbox id on its first line. */
function leases(): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of entries(LEASES).filter((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x))) {
    try {
      out.set(f, readFileSync(join(LEASES, f), 'utf8').split('\n')[0]!.trim());
    } catch {
      /* released meanwhile */
    }
  }
  return out;
}

/** The host's nftables tables and blackhole routes, to remove at the end only what the soak added. */
export interface HostSnapshot {
  tables: string[];
  blackholes: string[];
}

export function snapshotHost(): HostSnapshot {
  const lines = (s: string | undefined) =>
    (s ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  return {
    tables: lines(sh('nft', ['list', 'tables'])),
    blackholes: lines(sh('ip', ['route', 'show', 'type', 'blackhole'])),
  };
}

/**
 * Everything of one node left on the host. Leases are host-wide (every cluster's containerd puts its pods on the
 * same bridge), so a lease counts when its sandbox id is one of this node's sandboxes. (A veth goes with its
 * sandbox's network namespace, which RemovePodSandbox removes: a leftover sandbox shows it.)
 */
export function localLeftovers(
  crictl: Crictl,
  node: string,
  stateDir: string,
  sampler: SandboxSampler,
): { counts: Record<string, number>; what: string[] } {
  const scan = crictl.scan(node);
  const ids = new Set([...sampler.sandboxIds, ...scan.sandboxes.map((s) => s.id)]);
  const stateDirs = entries(join(stateDir, 'pods'));
  const cgroups = podCgroups(node);
  const leased = [...leases()].filter(([, id]) => ids.has(id));
  return {
    counts: {
      sandboxes: scan.sandboxes.length,
      containers: scan.containers.length,
      stateDirs: stateDirs.length,
      cgroups: cgroups.size,
      leases: leased.length,
    },
    what: [
      ...scan.sandboxes.map(
        (s) => `sandbox ${s.id.slice(0, 12)} of ${s.uid} (${s.ready ? 'ready' : 'not ready'})`,
      ),
      ...scan.containers.map((c) => `container ${c.id.slice(0, 12)} ${c.uid}/${c.name}`),
      ...stateDirs.map((d) => `state ${d}`),
      ...[...cgroups].map(([uid, dirs]) => {
        const procs = dirs.reduce(
          (n, d) => n + (sh('cat', [join(d, 'cgroup.procs')]) ?? '').split('\n').filter(Boolean).length,
          0,
        );
        const uidOf = uid.replace(/^pod/, '');
        return `cgroup ${uid} in ${dirs.length} hierarchies (${procs} processes; sandboxes seen: ${[...(sampler.seen.get(uidOf) ?? [])].map((i) => i.slice(0, 12)).join(', ') || 'none'})`;
      }),
      ...leased.map(([ip, id]) => `lease ${ip} of ${id.slice(0, 12)}`),
    ],
  };
}

/**
 * Removes everything of `node` the soak's operator made and the provider did not remove: its sandboxes through
 * CRI (StopPodSandbox releases the network and lease, RemovePodSandbox the containers), pod cgroups, state, leases
 * of its sandboxes still on disk, and the nftables tables and blackhole routes that were not there before the soak.
 * Returns what it had to remove.
 */
export async function cleanUpLocal(
  criEndpoint: string,
  node: string,
  stateDir: string,
  sampler: SandboxSampler,
  before: HostSnapshot,
): Promise<string[]> {
  const removed: string[] = [];
  // Listed first: removeLocalSandboxes removes the node's whole cgroup subtree, what it found there unsaid.
  const cgroups = podCgroups(node);
  const n = await removeLocalSandboxes({ nodeName: node, criEndpoint, stateDir }).catch((err: unknown) => {
    removed.push(`(removing sandboxes failed: ${err instanceof Error ? err.message : String(err)})`);
    return 0;
  });
  if (n > 0) removed.push(`${n} sandboxes`);
  for (const [uid, dirs] of cgroups) {
    // cgroupfs directories go with rmdir only, deepest first (their files cannot be unlinked).
    for (const d of dirs) for (const sub of [...entries(d).map((e) => join(d, e)), d]) sh('rmdir', [sub]);
    removed.push(`cgroup ${uid}`);
  }
  const ids = sampler.sandboxIds;
  for (const [ip, id] of leases()) {
    if (ids.has(id)) {
      rmSync(join(LEASES, ip), { force: true });
      removed.push(`lease ${ip}`);
    }
  }
  if (entries(join(stateDir, 'pods')).length > 0) removed.push(`state ${stateDir}`);
  rmSync(stateDir, { recursive: true, force: true });
  const now = snapshotHost();
  for (const t of now.tables.filter((x) => !before.tables.includes(x))) {
    if (sh('nft', ['delete', ...t.split(/\s+/)]) !== undefined) removed.push(t);
  }
  for (const r of now.blackholes.filter((x) => !before.blackholes.includes(x))) {
    if (sh('ip', ['route', 'del', ...r.split(/\s+/)]) !== undefined) removed.push(`route ${r}`);
  }
  return removed;
}

/**
 * The soak's view of a local-provider node over the cluster's containerd: instances are the node's ready pod
 * sandboxes, listed through CRI every half second for the whole soak so that a sandbox built twice for one pod is
 * counted even if the first went again. The pods run busybox `httpd` from the cluster registry so that their
 * network can be checked by connecting to them.
 */
export function localSoakProvider(
  nodeName: string,
  kubeletPort: number,
  criEndpoint: string,
  service: { ip: string; port: number },
): SoakProvider {
  const stateDir = join('/run/spillway', nodeName);
  const crictl = new Crictl(criEndpoint);
  const before = snapshotHost();
  const sampler = new SandboxSampler(crictl, nodeName);
  let lastLeftovers: string[] = [];
  return {
    name: 'local',
    nodeName,
    args: [
      '--provider',
      'local',
      '--node-name',
      nodeName,
      '--kubelet-port',
      String(kubeletPort),
      '--metrics-port',
      '0',
    ],
    env: { SPILLWAY_CRI_ENDPOINT: criEndpoint },
    command: ['httpd', '-f', '-p', String(SOAK_POD_PORT), '-h', '/tmp'],
    instances() {
      const out = new Map<string, number>();
      for (const s of sampler.sample().sandboxes.filter((x) => x.ready))
        out.set(s.uid, (out.get(s.uid) ?? 0) + 1);
      return out;
    },
    creates() {
      const perUid = [...sampler.seen.values()];
      return {
        instancesCreated: perUid.reduce((s, ids) => s + ids.size, 0),
        extraInstances: perUid.reduce((s, ids) => s + ids.size - 1, 0),
        createCalls: null,
      };
    },
    duplicateRuns() {
      sampler.sample();
      return [...sampler.maxRunning.values()].reduce((s, n) => s + Math.max(0, n - 1), 0);
    },
    broken(pods) {
      const scan = sampler.sample();
      return pods.flatMap((p) => {
        if (p.status?.phase !== 'Running' || p.spec?.nodeName !== nodeName) return [];
        const fault = sandboxFault(crictl, scan, p.metadata?.uid ?? '', p.status.podIP, service);
        return fault ? [{ pod: p.metadata?.name ?? '?', fault }] : [];
      });
    },
    leftovers() {
      const found = localLeftovers(crictl, nodeName, stateDir, sampler);
      lastLeftovers = found.what;
      return found.counts;
    },
    details() {
      const scan = sampler.sample();
      return {
        criEndpoint,
        stateDir,
        leftoversFound: lastLeftovers,
        samples: sampler.samples,
        failedSamples: sampler.failedSamples,
        notReadySandboxesAtEnd: scan.sandboxes
          .filter((s) => !s.ready)
          .map((s) => `${s.uid}: ${s.id.slice(0, 12)}`),
        readySandboxesAtOnce: [...sampler.maxReady]
          .filter(([, n]) => n > 1)
          .map(([uid, n]) => `${uid}: ${n}`),
        duplicateRunsSeen: [...sampler.maxRunning]
          .filter(([, n]) => n > 1)
          .map(([k, n]) => `${k}: ${n} at once`),
        sandboxesBuiltTwice: [...sampler.seen]
          .filter(([, ids]) => ids.size > 1)
          .map(([uid, ids]) => `${uid}: ${ids.size} (${[...ids].map((i) => i.slice(0, 12)).join(', ')})`),
      };
    },
    async close() {
      await sampler.stop();
      return cleanUpLocal(criEndpoint, nodeName, stateDir, sampler, before);
    },
  };
}
