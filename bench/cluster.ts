/**
 * The local cluster's start-up time and footprint (issue 16, point 2): `cluster-up` cold (a new cluster folder: an
 * empty registry, every image pushed, fresh PKI, etcd and nodes) and warm (the same folder again: the registry
 * keeps its images, the nodes' containerds start empty), each as its three steps (control plane, image push, real
 * nodes with their addons), then the memory of the whole cluster idle: RSS and PSS of every process it runs, by
 * part (control plane, registry, each node's containerd, kubelet and kube-proxy, the pods' shims and containers).
 *
 *   node bench/cluster.ts            (root; nothing else may run real nodes: one cluster with them per machine)
 *
 * Writes bench/results/cluster.{json,svg}.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { barChart, stack } from './lib/plot.ts';
import { environment, printTable, writeResult } from './lib/results.ts';
import type { BenchOutcome } from './lib/outcome.ts';
import { LocalCluster } from '../test/support/cluster.ts';
import { shimPids } from '../test/support/containerd.ts';
import { nodePaths } from '../test/support/real-nodes.ts';
import { seedImages } from '../test/support/registry.ts';

interface Timing {
  controlPlaneS: number;
  pushS: number;
  nodesS: number;
  totalS: number;
}

interface PartMemory {
  part: string;
  processes: number;
  rssMiB: number;
  pssMiB: number;
}

const MiB = 1024 * 1024;

/** `children` of every pid, from /proc (one pass). */
function childrenMap(): Map<number, number[]> {
  const map = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      map.set(ppid, [...(map.get(ppid) ?? []), Number(e)]);
    } catch {
      /* gone */
    }
  }
  return map;
}

/** `pid` and its descendants. */
function tree(pid: number, children: Map<number, number[]>): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

/** RSS and PSS of a process in bytes (0 when it is gone). */
function memoryOf(pid: number): { rss: number; pss: number } {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

function pidOf(dir: string, component: string): number | undefined {
  const file = join(dir, 'pids', `${component}.pid`);
  return existsSync(file) ? Number(readFileSync(file, 'utf8')) : undefined;
}

/** The memory of every process of the cluster in `dir`, by part. */
function clusterMemory(cluster: LocalCluster): PartMemory[] {
  const children = childrenMap();
  const parts: { part: string; pids: number[] }[] = [];
  const component = (name: string, part = name) => {
    const pid = pidOf(cluster.dir, name);
    if (pid !== undefined) parts.push({ part, pids: tree(pid, children) });
  };
  for (const c of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok', 'registry'])
    component(c);
  component('containerd', 'containerd (host, for the virtual node)');
  component('gateway', 'node gateway');
  for (const node of cluster.realNodes) {
    for (const p of ['containerd', 'kubelet', 'kube-proxy']) component(`${node.name}/${p}`);
    // Shims lead their own process groups: the pods (CoreDNS, metrics-server) and their pause containers.
    parts.push({
      part: `${node.name}/pods`,
      pids: shimPids(nodePaths(cluster.dir, node).dir).flatMap((p) => tree(p, children)),
    });
  }
  return parts.map(({ part, pids }) => {
    const m = pids.map(memoryOf);
    return {
      part,
      processes: pids.length,
      rssMiB: Number((m.reduce((a, b) => a + b.rss, 0) / MiB).toFixed(1)),
      pssMiB: Number((m.reduce((a, b) => a + b.pss, 0) / MiB).toFixed(1)),
    };
  });
}

async function timedUp(cluster: LocalCluster): Promise<Timing> {
  const t0 = performance.now();
  await cluster.up();
  const t1 = performance.now();
  await seedImages(cluster.registry, ['pause', 'busybox', 'nginx', 'agnhost', 'coredns', 'metrics-server']);
  const t2 = performance.now();
  await cluster.addRealNodes();
  const t3 = performance.now();
  const s = (ms: number) => Number((ms / 1000).toFixed(1));
  return { controlPlaneS: s(t1 - t0), pushS: s(t2 - t1), nodesS: s(t3 - t2), totalS: s(t3 - t0) };
}

export async function clusterBench(opts: { settleSeconds?: number } = {}): Promise<BenchOutcome> {
  if (process.getuid?.() !== 0) throw new Error('real nodes need root');
  const env = environment();
  const dir = mkdtempSync(join(tmpdir(), 'spillway-bench-cluster-'));
  const cluster = new LocalCluster(dir);
  try {
    console.log(`cold cluster-up in ${dir}`);
    const cold = await timedUp(cluster);
    console.log(`cold: ${JSON.stringify(cold)}`);
    await cluster.down();
    console.log('warm cluster-up (same folder: the registry keeps its images)');
    const warm = await timedUp(cluster);
    console.log(`warm: ${JSON.stringify(warm)}`);
    const settle = opts.settleSeconds ?? 30;
    console.log(`idle for ${settle} s, then memory`);
    await sleep(settle * 1000);
    const memory = clusterMemory(cluster);
    const total = {
      rssMiB: Number(memory.reduce((a, m) => a + m.rssMiB, 0).toFixed(1)),
      pssMiB: Number(memory.reduce((a, m) => a + m.pssMiB, 0).toFixed(1)),
    };
    const nodesPart = memory.filter((m) => /^worker-\d\//.test(m.part) || m.part === 'node gateway');
    const realNodes = {
      rssMiB: Number(nodesPart.reduce((a, m) => a + m.rssMiB, 0).toFixed(1)),
      pssMiB: Number(nodesPart.reduce((a, m) => a + m.pssMiB, 0).toFixed(1)),
    };
    printTable(
      ['part', 'processes', 'RSS MiB', 'PSS MiB'],
      [
        ...memory.map((m) => [m.part, m.processes, m.rssMiB, m.pssMiB]),
        ['total', '', total.rssMiB, total.pssMiB],
      ],
    );
    const result = { name: 'cluster', env, cold, warm, settleSeconds: settle, memory, total, realNodes };
    const steps = ['control plane', 'image push', 'real nodes + addons'];
    const svg = stack([
      barChart({
        title: 'make cluster-up: seconds per step, cold and warm',
        yLabel: 'seconds',
        categories: steps,
        series: [
          { name: `cold (${cold.totalS} s)`, values: [cold.controlPlaneS, cold.pushS, cold.nodesS] },
          { name: `warm (${warm.totalS} s)`, values: [warm.controlPlaneS, warm.pushS, warm.nodesS] },
        ],
      }),
      barChart({
        title: `idle memory by part (total RSS ${total.rssMiB} MiB, PSS ${total.pssMiB} MiB)`,
        yLabel: 'MiB',
        categories: memory.map((m) => m.part.replace(' (host, for the virtual node)', ' (host)')),
        series: [
          { name: 'RSS', values: memory.map((m) => m.rssMiB) },
          { name: 'PSS', values: memory.map((m) => m.pssMiB) },
        ],
      }),
    ]);
    const files = writeResult('cluster', result, svg);
    return {
      name: 'cluster',
      files,
      rows: [
        {
          benchmark: 'cluster',
          metric: 'cluster-up cold (control plane + push + 2 real nodes)',
          value: `${cold.totalS} s`,
        },
        { benchmark: 'cluster', metric: 'cluster-up warm', value: `${warm.totalS} s` },
        { benchmark: 'cluster', metric: 'real nodes + addons (warm)', value: `${warm.nodesS} s` },
        {
          benchmark: 'cluster',
          metric: 'idle RSS / PSS, whole cluster',
          value: `${total.rssMiB} / ${total.pssMiB} MiB`,
        },
        {
          benchmark: 'cluster',
          metric: 'idle RSS / PSS, the 2 real nodes',
          value: `${realNodes.rssMiB} / ${realNodes.pssMiB} MiB`,
        },
      ],
    };
  } finally {
    await cluster.down().catch((err: Error) => console.error(`cluster down: ${err.message}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const outcome = await clusterBench();
  printTable(
    ['metric', 'value'],
    outcome.rows.map((r) => [r.metric, r.value]),
  );
  process.exit(0);
}
