/**
 * The kill-soak's view of the local provider from the host, independent of the operator's own bookkeeping:
 * sandboxes are found as processes in /proc (sandbox-init.sh's PID 1 per pod UID, container-shim.sh runs per
 * container), their network is checked from inside their namespace with `nsenter`, and what a deleted
 * workload may leave behind is looked for where the provider puts it (state directory, leases, veths on the
 * bridge, cgroups). Also the clean-up of everything the soak made, whatever the operator did. Needs root.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SANDBOX_INIT_PATH } from '../../operator/providers/local/runtime.ts';
import type { SoakProvider } from './soak-counts.ts';

/** One live sandbox PID 1 (sandbox-init.sh), with the pod UID its state directory names. */
export interface SandboxInit {
  uid: string;
  pid: number;
  /** pid + start time: a new sandbox for the same UID has another. */
  id: string;
  pidNs: string | undefined;
}

/** What /proc shows of one node's sandboxes at one moment. */
export interface SandboxScan {
  inits: SandboxInit[];
  /** Live container runs (distinct run directories with a shim) per `uid/container`: more than one is a duplicate. */
  shims: Map<string, number>;
}

function argvOf(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

function startTime(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[0] === 'Z' ? undefined : f[19];
  } catch {
    return undefined;
  }
}

/** Whether the process is PID 1 of its innermost PID namespace (the last NSpid value). */
function isNsInit(pid: string): boolean {
  try {
    const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1]?.trim().split(/\s+/).at(-1) === '1';
  } catch {
    return false;
  }
}

function pidNs(pid: string | number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** Scans /proc for the sandboxes under `stateDir` (PID 1 of each, and every container run inside). */
export function scanSandboxes(stateDir: string): SandboxScan {
  const prefix = `${join(stateDir, 'sandboxes')}/`;
  const inits: SandboxInit[] = [];
  const shimNs: { ns: string | undefined; container: string; run: string }[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    const argv = argvOf(p);
    // PID 1 is `bash sandbox-init.sh <dir>`; its `unshare` parent carries the same arguments after its own.
    // Only PID 1 of its namespace: the script's command substitutions fork subshells with the same arguments.
    if (argv[0] === 'bash' && argv[1] === SANDBOX_INIT_PATH && argv[2]?.startsWith(prefix) && isNsInit(p)) {
      const st = startTime(p);
      if (st !== undefined) {
        const uid = argv[2].slice(prefix.length).split('/')[0]!;
        inits.push({ uid, pid: Number(p), id: `${p}@${st}`, pidNs: pidNs(p) });
      }
    } else if (argv[0] === 'bash' && argv[1] === '-c' && argv[3] === 'container-shim') {
      // `bash -c <shim> container-shim /run/.spillway/<container>/<run> …` (its nsenter parent runs `nsenter`).
      // The shim's subshells carry the same arguments: runs are told apart by their run directory.
      const container = argv[4]?.split('/').at(-2) ?? '?';
      if (startTime(p) !== undefined) shimNs.push({ ns: pidNs(p), container, run: argv[4] ?? '?' });
    }
  }
  const byNs = new Map(inits.map((i) => [i.pidNs, i.uid]));
  const runs = new Map<string, Set<string>>();
  for (const s of shimNs) {
    const uid = byNs.get(s.ns);
    if (uid === undefined) continue;
    const key = `${uid}/${s.container}`;
    runs.set(key, (runs.get(key) ?? new Set()).add(s.run));
  }
  return { inits, shims: new Map([...runs].map(([k, r]) => [k, r.size])) };
}

/**
 * Samples the sandboxes every `intervalMs` for the whole soak and remembers every distinct PID 1 per UID:
 * more than one is a sandbox built again for the same pod (after a kill, or a rebuilt half-built sandbox).
 */
export class SandboxSampler {
  readonly seen = new Map<string, Set<string>>();
  /** The most container runs seen live at once per `uid/container`. */
  readonly maxShims = new Map<string, number>();
  readonly #stateDir: string;
  #stopped = false;
  #loop: Promise<void>;

  constructor(stateDir: string, intervalMs = 1000) {
    this.#stateDir = stateDir;
    this.#loop = (async () => {
      while (!this.#stopped) {
        this.sample();
        await sleep(intervalMs);
      }
    })();
  }

  sample(): SandboxScan {
    const scan = scanSandboxes(this.#stateDir);
    for (const i of scan.inits) {
      const ids = this.seen.get(i.uid) ?? new Set<string>();
      ids.add(i.id);
      this.seen.set(i.uid, ids);
    }
    for (const [k, n] of scan.shims) this.maxShims.set(k, Math.max(n, this.maxShims.get(k) ?? 0));
    return scan;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

function sh(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch {
    return undefined;
  }
}

/**
 * Why a running sandbox's network is broken, or undefined when it is whole: `eth0` up with the pod's IP, and a
 * route to the service CIDR (through the bridge's gateway) inside the sandbox's network namespace.
 */
export function sandboxNetworkFault(
  initPid: number,
  podIP: string | undefined,
  serviceIP: string,
): string | undefined {
  const inside = (...args: string[]) => sh('nsenter', ['-t', String(initPid), '-n', 'ip', ...args]);
  const link = inside('-o', 'link', 'show', 'eth0');
  if (link === undefined) return 'no eth0';
  if (!/[<,]UP[,>]/.test(link)) return 'eth0 down';
  const addr = inside('-o', '-4', 'addr', 'show', 'dev', 'eth0') ?? '';
  if (podIP && !addr.includes(` ${podIP}/`)) return `eth0 lacks the pod IP ${podIP}`;
  const route = inside('route', 'get', serviceIP);
  if (route === undefined || !route.includes('dev eth0')) return `no route to ${serviceIP}`;
  return undefined;
}

/** Everything of one node left on the host: after the workload is deleted, all of it should be empty. */
export interface LocalLeftovers {
  sandboxProcesses: number;
  stateDirs: number;
  leases: number;
  veths: number;
  cgroups: number;
}

const CGROUP_ROOTS = ['cpu', 'cpuacct', 'memory', 'pids', 'unified', ''].map((c) =>
  join('/sys/fs/cgroup', c),
);

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The pod cgroup directories of `node` (`spillway/<node>/<uid>` under each controller). */
function podCgroups(node: string): string[] {
  return CGROUP_ROOTS.flatMap((root) =>
    entries(join(root, 'spillway', node)).flatMap((e) => {
      try {
        return readdirSync(join(root, 'spillway', node), { withFileTypes: true }).some(
          (d) => d.name === e && d.isDirectory(),
        )
          ? [join(root, 'spillway', node, e)]
          : [];
      } catch {
        return [];
      }
    }),
  );
}

/** Counts what sandboxes of `node` (state under `stateDir`) left behind. */
export function localLeftovers(node: string, stateDir: string): LocalLeftovers {
  const links = sh('ip', ['-o', 'link', 'show']) ?? '';
  return {
    sandboxProcesses: scanSandboxes(stateDir).inits.length,
    stateDirs: entries(join(stateDir, 'sandboxes')).length,
    leases: entries(join(stateDir, 'leases')).length,
    veths: links.split('\n').filter((l) => /^\d+: sw[0-9a-f]{12}[@:]/.test(l)).length,
    cgroups: podCgroups(node).length,
  };
}

/** The host's nftables tables and blackhole routes, to remove at the end only what the soak added. */
export interface HostNetworkSnapshot {
  tables: string[];
  blackholes: string[];
  bridge: boolean;
}

export function snapshotHostNetwork(bridge = 'spillway0'): HostNetworkSnapshot {
  const lines = (s: string | undefined) =>
    (s ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  return {
    tables: lines(sh('nft', ['list', 'tables'])),
    blackholes: lines(sh('ip', ['route', 'show', 'type', 'blackhole'])),
    bridge: sh('ip', ['link', 'show', bridge]) !== undefined,
  };
}

/**
 * Removes everything of `node` the soak's operator made and the provider did not remove: sandbox processes
 * (SIGKILL; their namespaces go with them), veths, state, cgroups, and the nftables tables, blackhole routes
 * and bridge that were not there before the soak. Returns what it had to remove.
 */
export async function cleanUpLocal(
  node: string,
  stateDir: string,
  before: HostNetworkSnapshot,
): Promise<string[]> {
  const removed: string[] = [];
  const prefix = `${join(stateDir, 'sandboxes')}/`;
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    const argv = argvOf(p);
    const i = argv.indexOf(SANDBOX_INIT_PATH);
    if (i >= 0 && argv[i + 1]?.startsWith(prefix)) {
      try {
        process.kill(Number(p), 'SIGKILL');
        removed.push(`process ${p} (${argv[0]})`);
      } catch {
        /* gone */
      }
    }
  }
  if (removed.length > 0) await sleep(1000); // reaped, so that their cgroups can go
  for (const l of (sh('ip', ['-o', 'link', 'show']) ?? '').split('\n')) {
    const veth = /^\d+: (sw[0-9a-f]{12})[@:]/.exec(l)?.[1];
    if (veth && sh('ip', ['link', 'del', veth]) !== undefined) removed.push(`veth ${veth}`);
  }
  for (const dir of podCgroups(node)) {
    for (const sub of entries(dir)) sh('rmdir', [join(dir, sub)]);
    if (sh('rmdir', [dir]) !== undefined) removed.push(`cgroup ${dir}`);
  }
  for (const root of CGROUP_ROOTS) {
    sh('rmdir', [join(root, 'spillway', node)]);
    sh('rmdir', [join(root, 'spillway')]);
  }
  if (entries(join(stateDir, 'sandboxes')).length > 0) removed.push(`state ${stateDir}`);
  sh('rm', ['-rf', stateDir]);
  const now = snapshotHostNetwork();
  for (const t of now.tables.filter((x) => !before.tables.includes(x))) {
    if (sh('nft', ['delete', ...t.split(/\s+/)]) !== undefined) removed.push(t);
  }
  for (const r of now.blackholes.filter((x) => !before.blackholes.includes(x))) {
    if (sh('ip', ['route', 'del', ...r.split(/\s+/)]) !== undefined) removed.push(`route ${r}`);
  }
  if (!before.bridge && now.bridge && sh('ip', ['link', 'del', 'spillway0']) !== undefined) {
    removed.push('bridge spillway0');
  }
  return removed;
}

/**
 * The soak's view of a local-provider node: instances are sandbox PID 1s found in /proc, sampled every second
 * for the whole soak so that a sandbox built twice for one pod is counted even if the first went again.
 */
export function localSoakProvider(nodeName: string, kubeletPort: number, serviceIP: string): SoakProvider {
  const stateDir = join('/run/spillway', nodeName);
  const before = snapshotHostNetwork();
  const sampler = new SandboxSampler(stateDir);
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
    env: {},
    command: ['sleep', '3600'],
    instances() {
      const out = new Map<string, number>();
      for (const i of sampler.sample().inits) out.set(i.uid, (out.get(i.uid) ?? 0) + 1);
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
      return [...sampler.maxShims.values()].reduce((s, n) => s + Math.max(0, n - 1), 0);
    },
    broken(pods) {
      const inits = sampler.sample().inits;
      return pods.flatMap((p) => {
        if (p.status?.phase !== 'Running' || p.spec?.nodeName !== nodeName) return [];
        const name = p.metadata?.name ?? '?';
        const init = inits.find((i) => i.uid === p.metadata?.uid);
        if (!init) return [{ pod: name, fault: 'Running without a sandbox' }];
        const fault = sandboxNetworkFault(init.pid, p.status.podIP, serviceIP);
        return fault ? [{ pod: name, fault }] : [];
      });
    },
    leftovers: () => ({ ...localLeftovers(nodeName, stateDir) }),
    details: () => ({
      stateDir,
      duplicateRunsSeen: [...sampler.maxShims].filter(([, n]) => n > 1).map(([k, n]) => `${k}: ${n} at once`),
      sandboxesBuiltTwice: [...sampler.seen]
        .filter(([, ids]) => ids.size > 1)
        .map(([uid, ids]) => `${uid}: ${ids.size}`),
    }),
    async close() {
      await sampler.stop();
      return cleanUpLocal(nodeName, stateDir, before);
    },
  };
}
