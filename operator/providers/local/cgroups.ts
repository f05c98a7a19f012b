/**
 * CPU and memory limits of local containers through cgroups, where the host allows: cgroup v2 (unified,
 * `memory.max`/`cpu.max`) or v1 (`memory.limit_in_bytes`, `cpu.cfs_quota_us`, `cpuacct.usage`). Each
 * container gets `spillway/<node>/<uid>/<container>` under each controller; its shim joins them before the
 * container's process starts. Where neither works the sandbox runs without limits and says so.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What the host offers. */
export type CgroupMode =
  | { version: 2; root: string }
  | { version: 1; roots: Record<string, string> }
  | { version: 0; reason: string };

/** Finds a usable cgroup hierarchy (root needed: the directories must be writable). */
export function detectCgroups(base = '/sys/fs/cgroup'): CgroupMode {
  try {
    const controllers = readFileSync(join(base, 'cgroup.controllers'), 'utf8');
    if (/\bmemory\b/.test(controllers) && /\bcpu\b/.test(controllers)) return { version: 2, root: base };
  } catch {
    /* not a unified hierarchy */
  }
  const roots: Record<string, string> = {};
  for (const c of ['memory', 'cpu', 'cpuacct']) {
    const dir = join(base, c);
    if (existsSync(join(dir, 'cgroup.procs'))) roots[c] = dir;
  }
  if (roots.memory && roots.cpu) {
    try {
      const probe = join(roots.memory, `spillway-probe-${process.pid}`);
      mkdirSync(probe);
      rmdirSync(probe);
      return { version: 1, roots };
    } catch (err) {
      return { version: 0, reason: `cgroup v1 is not writable here: ${(err as Error).message}` };
    }
  }
  return { version: 0, reason: `no cgroup v2 with cpu+memory and no cgroup v1 memory+cpu under ${base}` };
}

/** Usage read from a container's cgroup. */
export interface CgroupUsage {
  cpuNanoSeconds: number;
  memoryBytes: number;
  workingSetBytes: number;
}

function readNumber(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 0;
  }
}

function statField(file: string, field: string): number {
  try {
    const m = new RegExp(`^${field} (\\d+)$`, 'm').exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** One container's cgroup directories (one per v1 controller, one under v2). */
export class ContainerCgroup {
  readonly #mode: CgroupMode;
  readonly #relative: string;

  constructor(mode: CgroupMode, node: string, uid: string, container: string) {
    this.#mode = mode;
    this.#relative = join('spillway', node, uid, container);
  }

  #dirs(): string[] {
    if (this.#mode.version === 2) return [join(this.#mode.root, this.#relative)];
    if (this.#mode.version === 1) return Object.values(this.#mode.roots).map((r) => join(r, this.#relative));
    return [];
  }

  /** The `cgroup.procs` files the shim writes itself into. */
  procsFiles(): string[] {
    return this.#dirs().map((d) => join(d, 'cgroup.procs'));
  }

  /** Creates the directories and writes the limits; returns what could not be applied (empty when all). */
  create(limits: { milliCPU?: number; memoryBytes?: number }): string[] {
    const problems: string[] = [];
    const mode = this.#mode;
    if (mode.version === 0) return [];
    const write = (file: string, value: string) => {
      try {
        writeFileSync(file, value);
      } catch (err) {
        problems.push(`${file}: ${(err as Error).message}`);
      }
    };
    if (mode.version === 2) {
      // Controllers must be enabled in every ancestor for the leaf to get its interface files.
      let parent = mode.root;
      for (const part of this.#relative.split('/')) {
        write(join(parent, 'cgroup.subtree_control'), '+cpu +memory');
        parent = join(parent, part);
        mkdirSync(parent, { recursive: true });
      }
      const dir = join(mode.root, this.#relative);
      if (limits.memoryBytes) write(join(dir, 'memory.max'), String(limits.memoryBytes));
      if (limits.milliCPU) write(join(dir, 'cpu.max'), `${limits.milliCPU * 100} 100000`);
      return problems;
    }
    for (const dir of this.#dirs()) mkdirSync(dir, { recursive: true });
    const mem = join(mode.roots.memory!, this.#relative);
    const cpu = join(mode.roots.cpu!, this.#relative);
    if (limits.memoryBytes) write(join(mem, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    if (limits.milliCPU) {
      write(join(cpu, 'cpu.cfs_period_us'), '100000');
      write(join(cpu, 'cpu.cfs_quota_us'), String(limits.milliCPU * 100));
    }
    return problems;
  }

  /** CPU and memory used so far (zeros when there is no cgroup). */
  usage(): CgroupUsage {
    const mode = this.#mode;
    if (mode.version === 2) {
      const dir = join(mode.root, this.#relative);
      const memory = readNumber(join(dir, 'memory.current'));
      return {
        cpuNanoSeconds: statField(join(dir, 'cpu.stat'), 'usage_usec') * 1000,
        memoryBytes: memory,
        workingSetBytes: Math.max(0, memory - statField(join(dir, 'memory.stat'), 'inactive_file')),
      };
    }
    if (mode.version === 1) {
      const mem = join(mode.roots.memory!, this.#relative);
      const acct = mode.roots.cpuacct ? join(mode.roots.cpuacct, this.#relative, 'cpuacct.usage') : '';
      const memory = readNumber(join(mem, 'memory.usage_in_bytes'));
      return {
        cpuNanoSeconds: acct ? readNumber(acct) : 0,
        memoryBytes: memory,
        workingSetBytes: Math.max(0, memory - statField(join(mem, 'memory.stat'), 'total_inactive_file')),
      };
    }
    return { cpuNanoSeconds: 0, memoryBytes: 0, workingSetBytes: 0 };
  }

  /** True when the kernel OOM-killed a process of this cgroup. */
  oomKilled(): boolean {
    const mode = this.#mode;
    if (mode.version === 2)
      return statField(join(mode.root, this.#relative, 'memory.events'), 'oom_kill') > 0;
    if (mode.version === 1) {
      return statField(join(mode.roots.memory!, this.#relative, 'memory.oom_control'), 'oom_kill') > 0;
    }
    return false;
  }

  /** True when every directory of this cgroup exists (always with no cgroups on this host). */
  exists(): boolean {
    return this.#dirs().every((d) => existsSync(d));
  }

  /** Removes the container's directories and the pod's when empty; the processes must be gone. */
  remove(): void {
    for (const dir of this.#dirs()) {
      for (const d of [dir, join(dir, '..')]) {
        try {
          rmdirSync(d);
        } catch {
          /* gone already, or the pod directory still has other containers */
        }
      }
    }
  }
}

/** The pod UIDs that have a cgroup directory of `node`. */
export function podCgroupUids(mode: CgroupMode, node: string): Set<string> {
  const roots = mode.version === 2 ? [mode.root] : mode.version === 1 ? Object.values(mode.roots) : [];
  const uids = new Set<string>();
  for (const root of roots) {
    try {
      for (const e of readdirSync(join(root, 'spillway', node), { withFileTypes: true }))
        if (e.isDirectory()) uids.add(e.name);
    } catch {
      /* none */
    }
  }
  return uids;
}

/**
 * Removes every container cgroup of a pod and the pod's own directory, whatever containers it had (a create
 * that died half-way left no record of them); the processes must be gone.
 */
export function removePodCgroups(mode: CgroupMode, node: string, uid: string): void {
  const roots = mode.version === 2 ? [mode.root] : mode.version === 1 ? Object.values(mode.roots) : [];
  for (const root of roots) {
    const pod = join(root, 'spillway', node, uid);
    let children: string[];
    try {
      children = readdirSync(pod, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      continue; // none
    }
    for (const dir of [...children.map((c) => join(pod, c)), pod]) {
      try {
        rmdirSync(dir);
      } catch {
        /* still busy: the next start collects it (podCgroupUids) */
      }
    }
  }
}
