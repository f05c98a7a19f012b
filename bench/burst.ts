/**
 * Burst benchmark (issue 5, docs/architecture.md#performance-targets): one Deployment of 1000 `burst: always`-placed replicas (tolerations
 * and a nodeSelector for the node under test; webhooks not involved) on the real control plane, and the time
 * until all of them are Running — on spillway's virtual node (fake provider, zero start latency, in its own
 * process) and, in the same run and on the same control plane, on the two references:
 *
 * - `kwok`: the cluster's kwok managing a kwok node; pods turn Running as soon as they are bound. Nothing can be
 *   faster on this control plane: it is the simulation limit.
 * - `virtual-kubelet`: virtual-kubelet's Go node library (v1.13.0) with a minimal in-memory provider
 *   (bench/vk-reference), the library spillway's virtual node is modelled on, with the library's default queue
 *   rate limiters (client-go's DefaultControllerRateLimiter on every enqueue: 10/s after a burst of 100);
 * - `virtual-kubelet-unthrottled`: the same with those limiters reduced to per-key backoff on errors (what
 *   spillway's own queue does), i.e. virtual-kubelet tuned for bursts: the stricter comparison.
 *
 * Per system: time to all Running, pods/s, the node process's CPU and peak RSS, and status propagation: the
 * provider's status change (sandbox Running, timed inside the node process) → the Pod seen Running through a
 * watch. Every pod's creation → bound → Running times are kept for the plot.
 *
 *   node bench/burst.ts [--replicas 1000] [--systems spillway,virtual-kubelet,kwok] [--reuse-cluster]
 *
 * Targets: ≤ 15 s to 1000 Running and no slower than virtual-kubelet; propagation p99 ≤ 1 s.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { LocalCluster } from '../test/support/cluster.ts';
import { freePort } from '../test/support/ports.ts';
import { addKwokNodes, benchCluster, componentPid } from './lib/cluster.ts';
import { ms, sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { cdf, lineChart, stack, barChart } from './lib/plot.ts';
import { Child, NODE, ProcSampler } from './lib/process.ts';
import { queueStats, type QueueStats } from './lib/queue-metrics.ts';
import {
  benchDir,
  environment,
  logFile,
  printTable,
  repoRoot,
  resultsDir,
  writeResult,
} from './lib/results.ts';
import { pinnedDeployment } from './lib/pod-progress.ts';
import { nowMs, ratio, summarize, type Summary } from './lib/stats.ts';
import { ObjectWatch } from './lib/watch.ts';

const NAME = 'burst';
const TARGET_SECONDS = 15;
const TARGET_PROPAGATION_P99_MS = 1000;

export const SYSTEMS = ['spillway', 'virtual-kubelet', 'virtual-kubelet-unthrottled', 'kwok'] as const;
export type SystemId = (typeof SYSTEMS)[number];

/** The process running a node under test. */
interface RunningSystem {
  nodeName: string;
  /** The process whose CPU and memory count (for kwok: the cluster's kwok, which also keeps the normal nodes). */
  pid: number | undefined;
  /** When each pod UID turned Running inside the provider (epoch ms), where the system can tell. */
  runningAt(): Promise<Map<string, number> | undefined>;
  /** spillway's workqueue counts, where the system has them. */
  queues?(): Promise<Record<string, QueueStats>>;
  stop(): Promise<void>;
}

/** Per-system result. */
export interface SystemResult {
  system: SystemId;
  node: string;
  replicas: number;
  running: number;
  allRunningSeconds: number | null;
  podsPerSecond: number | null;
  /** Deployment created → each pod seen Running (ms). */
  createToRunningMs: Summary;
  /** Pod seen bound to the node → seen Running (ms): the node's share, as a watcher sees it. */
  boundToRunningMs: Summary;
  /** Provider status change → Pod seen Running through a watch (ms); absent for kwok (no provider). */
  propagationMs?: Summary;
  process: { peakRssMiB: number; cpuSeconds: number; avgCores: number; idleRssMiB?: number | undefined };
  teardownSeconds: number | null;
  /** spillway only: workqueue counts of the node process (sync: Kubernetes → provider; status: provider → Pod). */
  queues?: Record<string, QueueStats>;
  /** Pods Running over time since the Deployment was created, for the plot. */
  runningOverTime: [number, number][];
}

/** Raw distributions kept for the plots only (the JSON has their summaries). */
interface Distributions {
  propagation?: number[];
  boundToRunning: number[];
}
const distributions = new Map<SystemId, Distributions>();

async function startSystem(
  id: SystemId,
  kc: KubeConfig,
  cluster: LocalCluster,
  tmp: string,
): Promise<RunningSystem> {
  const kubeconfig = cluster.kubeconfigPath;
  if (id === 'kwok') {
    const nodeName = 'bench-kwok-burst';
    await addKwokNodes(kc, [nodeName], 2000);
    return {
      nodeName,
      pid: componentPid(cluster, 'kwok'),
      runningAt: async () => undefined,
      stop: async () => {},
    };
  }
  if (id === 'spillway') {
    const nodeName = 'spillway-bench-virtual';
    const child = new Child(
      id,
      NODE,
      [join(benchDir, 'entries/virtual-node.ts'), kubeconfig, nodeName, String(await freePort())],
      { logFile: logFile(NAME, id) },
    );
    await child.waitForLine(/^READY$/);
    return {
      nodeName,
      pid: child.pid,
      runningAt: async () => {
        const file = join(tmp, `${id}-running.json`);
        const from = child.lineCount;
        child.send(`dump ${file}`);
        await child.waitForLine(/^DUMPED$/, 30_000, from);
        return new Map(Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>));
      },
      queues: () => queueStats(child, join(tmp, `${id}-metrics.json`)),
      stop: () => child.stop(),
    };
  }
  const bin = join(process.env.SPILLWAY_BIN ?? join(repoRoot, 'bin'), 'vk-reference');
  if (!existsSync(bin))
    throw new Error(`${bin} is missing: run \`hack/build-tools.sh vkref\` (make bench does)`);
  const nodeName = id === 'virtual-kubelet' ? 'vk-reference' : 'vk-reference-unthrottled';
  const trace = join(tmp, `${id}-running.json`);
  const child = new Child(
    id,
    bin,
    [
      `-kubeconfig=${kubeconfig}`,
      `-node-name=${nodeName}`,
      `-trace-file=${trace}`,
      `-rate-limit=${id === 'virtual-kubelet' ? 'default' : 'failures'}`,
    ],
    { logFile: logFile(NAME, id) },
  );
  await child.waitForLine(/ready/);
  return {
    nodeName,
    pid: child.pid,
    runningAt: async () => {
      const from = child.lineCount;
      child.proc.kill('SIGUSR1');
      await child.waitForLine(/^DUMPED$/, 30_000, from);
      return new Map(Object.entries(JSON.parse(readFileSync(trace, 'utf8')) as Record<string, number>));
    },
    stop: () => child.stop(),
  };
}

const isRunning = (p: V1Pod) =>
  p.status?.phase === 'Running' &&
  (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function waitNodeReady(core: CoreV1Api, name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const node = await core.readNode({ name }).catch(() => undefined);
    if (node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
    if (Date.now() > deadline) throw new Error(`node ${name} not Ready after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Runs the burst on one system and tears it down again. */
async function measure(
  id: SystemId,
  kc: KubeConfig,
  cluster: LocalCluster,
  replicas: number,
  tmp: string,
): Promise<SystemResult> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const namespace = `burst-${id}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const system = await startSystem(id, kc, cluster, tmp);
  try {
    await waitNodeReady(core, system.nodeName);
    const sampler = system.pid ? new ProcSampler(system.pid, 200) : undefined;
    await sleep(1000); // let the node settle (first status, lease) before the clock starts
    const idleRssMiB = sampler?.sample()?.rssMiB;

    const seen = new Map<string, { added: number; bound?: number; running?: number }>();
    let running = 0;
    let lastRunning = 0;
    const runningTimes: number[] = [];
    const watch = new ObjectWatch<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, {}, (type, pod, at) => {
      const uid = pod.metadata?.uid;
      if (!uid || type === 'DELETED') return;
      let rec = seen.get(uid);
      if (!rec) seen.set(uid, (rec = { added: at }));
      if (rec.bound === undefined && pod.spec?.nodeName) rec.bound = at;
      if (rec.running === undefined && isRunning(pod)) {
        rec.running = at;
        running++;
        lastRunning = at;
        runningTimes.push(at);
      }
    });
    await watch.start();

    const t0 = nowMs();
    await apps.createNamespacedDeployment({
      namespace,
      body: pinnedDeployment(namespace, 'burst', system.nodeName, replicas, {
        name: 'app',
        image: 'registry.example.com/burst:1.0',
        env: [{ name: 'MODE', value: 'burst' }],
        resources: { requests: { cpu: '10m', memory: '16Mi' } },
      }),
    });
    const deadline = Date.now() + Math.max(180_000, replicas * 300);
    let lastLog = Date.now();
    while (running < replicas && Date.now() < deadline) {
      await sleep(50);
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        console.log(
          `  burst[${id}]: ${running}/${replicas} Running after ${((nowMs() - t0) / 1000).toFixed(1)} s`,
        );
      }
    }
    const tEnd = running >= replicas ? lastRunning : nowMs();
    const proc = sampler?.window(t0, tEnd);
    const allRunningSeconds = running >= replicas ? (tEnd - t0) / 1000 : null;
    console.log(
      `  burst[${id}]: ${running}/${replicas} Running in ${allRunningSeconds?.toFixed(2) ?? 'TIMEOUT'} s`,
    );

    const providerRunning = await system.runningAt();
    const queues = await system.queues?.();
    const recs = [...seen.entries()];
    const propagation = providerRunning
      ? recs.flatMap(([uid, r]) => {
          const p = providerRunning.get(uid);
          return p !== undefined && r.running !== undefined ? [r.running - p] : [];
        })
      : undefined;
    watch.stop();

    // Teardown: the node under test deletes its pods; the next system starts on an empty control plane.
    const td0 = nowMs();
    await apps.deleteNamespacedDeployment({ namespace, name: 'burst', propagationPolicy: 'Background' });
    let teardownSeconds: number | null = null;
    for (const tdDeadline = Date.now() + 240_000; Date.now() < tdDeadline;) {
      const left = await core.listNamespacedPod({ namespace, limit: 1 });
      if (left.items.length === 0) {
        teardownSeconds = (nowMs() - td0) / 1000;
        break;
      }
      await sleep(500);
    }
    sampler?.stop();

    const boundToRunning = recs.flatMap(([, r]) =>
      r.running && r.bound !== undefined ? [r.running - r.bound] : [],
    );
    distributions.set(id, { ...(propagation ? { propagation } : {}), boundToRunning });
    const step = Math.max(1, Math.floor(runningTimes.length / 300));
    const runningOverTime: [number, number][] = [[0, 0]];
    runningTimes.forEach((t, i) => {
      if (i % step === 0 || i === runningTimes.length - 1) runningOverTime.push([(t - t0) / 1000, i + 1]);
    });
    return {
      system: id,
      node: system.nodeName,
      replicas,
      running,
      allRunningSeconds: allRunningSeconds === null ? null : Number(allRunningSeconds.toFixed(3)),
      podsPerSecond: allRunningSeconds ? Number((replicas / allRunningSeconds).toFixed(1)) : null,
      createToRunningMs: summarize(recs.flatMap(([, r]) => (r.running ? [r.running - t0] : []))),
      boundToRunningMs: summarize(boundToRunning),
      ...(propagation ? { propagationMs: summarize(propagation) } : {}),
      process: {
        peakRssMiB: proc?.peakRssMiB ?? Number.NaN,
        cpuSeconds: proc?.cpuSeconds ?? Number.NaN,
        avgCores: proc?.avgCores ?? Number.NaN,
        idleRssMiB,
      },
      teardownSeconds: teardownSeconds === null ? null : Number(teardownSeconds.toFixed(2)),
      ...(queues ? { queues } : {}),
      runningOverTime,
    };
  } finally {
    await system.stop();
    await core.deleteNode({ name: system.nodeName }).catch(() => undefined);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  }
}

export interface BurstBenchOptions {
  replicas?: number;
  systems?: SystemId[];
  /** A running cluster to use (bench/run.ts); otherwise a fresh one is started and stopped. */
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function burstBench(opts: BurstBenchOptions = {}): Promise<BenchOutcome> {
  const replicas = opts.replicas ?? 1000;
  const systems = opts.systems ?? [...SYSTEMS];
  const tmp = join(resultsDir, 'tmp', NAME);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const results: SystemResult[] = [];
  try {
    for (const id of systems) {
      console.log(`  burst: ${replicas} replicas on ${id}`);
      results.push(await measure(id, kc, cluster, replicas, tmp));
    }
  } finally {
    if (own && !process.env.KEEP) await cluster.down();
  }

  const by = (id: SystemId) => results.find((r) => r.system === id);
  const sp = by('spillway');
  const vk = by('virtual-kubelet');
  const vku = by('virtual-kubelet-unthrottled');
  const kw = by('kwok');
  const ratios = {
    'spillway/virtual-kubelet time to all Running': ratio(
      sp?.allRunningSeconds ?? undefined,
      vk?.allRunningSeconds ?? undefined,
    ),
    'spillway/virtual-kubelet-unthrottled time to all Running': ratio(
      sp?.allRunningSeconds ?? undefined,
      vku?.allRunningSeconds ?? undefined,
    ),
    'spillway/kwok time to all Running': ratio(
      sp?.allRunningSeconds ?? undefined,
      kw?.allRunningSeconds ?? undefined,
    ),
    'spillway/virtual-kubelet propagation p99': ratio(sp?.propagationMs?.p99, vk?.propagationMs?.p99),
    'spillway/virtual-kubelet-unthrottled propagation p99': ratio(
      sp?.propagationMs?.p99,
      vku?.propagationMs?.p99,
    ),
    'spillway/virtual-kubelet-unthrottled CPU seconds': ratio(
      sp?.process.cpuSeconds,
      vku?.process.cpuSeconds,
    ),
    'spillway/virtual-kubelet-unthrottled peak RSS': ratio(sp?.process.peakRssMiB, vku?.process.peakRssMiB),
  };
  const result = {
    benchmark: NAME,
    description:
      `A Deployment of ${replicas} burst-always replicas pinned to the node under test, real control plane ` +
      '(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, all on loopback); time from the ' +
      'Deployment create to every pod seen Running and Ready through a watch.',
    environment: env,
    caveat:
      'The control plane, the node under test and the watcher share the same cores; the control plane ' +
      '(ReplicaSet controller and scheduler at 200 QPS) bounds every system, which the kwok run shows.',
    targets: {
      allRunningSeconds: TARGET_SECONDS,
      noSlowerThan: 'virtual-kubelet',
      propagationP99Ms: TARGET_PROPAGATION_P99_MS,
      met: sp
        ? {
            allRunning: sp.allRunningSeconds !== null && sp.allRunningSeconds <= TARGET_SECONDS,
            vsVirtualKubelet: vk?.allRunningSeconds
              ? (sp.allRunningSeconds ?? Infinity) <= vk.allRunningSeconds
              : null,
            vsVirtualKubeletUnthrottled: vku?.allRunningSeconds
              ? (sp.allRunningSeconds ?? Infinity) <= vku.allRunningSeconds
              : null,
            propagation: sp.propagationMs ? sp.propagationMs.p99 <= TARGET_PROPAGATION_P99_MS : null,
          }
        : null,
    },
    anchors: {
      'ASK (quoted, not measured)': '500 pods Running in 30 s',
      'virtual-kubelet status polling without PodNotifier (quoted)': '5 s',
    },
    ratios,
    systems: results,
  };
  const svg = stack([
    lineChart({
      title: `Pods Running after the Deployment create (${replicas} replicas)`,
      xLabel: 'seconds since create',
      yLabel: 'pods Running',
      series: results.map((r) => ({ name: r.system, points: r.runningOverTime })),
    }),
    barChart({
      title: 'Time to all Running, and status propagation p99',
      yLabel: 'seconds',
      categories: ['all Running', 'propagation p99', 'bound→Running p99'],
      series: results.map((r) => ({
        name: r.system,
        values: [
          r.allRunningSeconds,
          r.propagationMs ? r.propagationMs.p99 / 1000 : null,
          r.boundToRunningMs.p99 / 1000,
        ],
      })),
      refs: [{ y: TARGET_SECONDS, label: 'target 15 s' }],
    }),
    lineChart({
      title: 'Status propagation (provider Running → Pod Running seen by a watch), CDF',
      xLabel: 'ms',
      yLabel: 'pods (%)',
      series: results.flatMap((r) => {
        const d = distributions.get(r.system)?.propagation;
        return d ? [{ name: r.system, points: cdf(d) }] : [];
      }),
      refs: [],
    }),
    lineChart({
      title: 'Pod seen bound → seen Running (the node’s share), CDF',
      xLabel: 'ms',
      yLabel: 'pods (%)',
      series: results.map((r) => ({
        name: r.system,
        points: cdf(distributions.get(r.system)?.boundToRunning ?? []),
      })),
    }),
  ]);
  const files = writeResult(NAME, { ...result }, svg);
  const rows: SummaryRow[] = [];
  for (const r of results) {
    rows.push({
      benchmark: NAME,
      metric: `${r.system}: ${r.replicas} Running`,
      value: `${sec(r.allRunningSeconds)} (${r.podsPerSecond ?? '–'} pods/s)`,
      ...(r.system === 'spillway' ? { target: `≤ ${TARGET_SECONDS} s, ≤ virtual-kubelet` } : {}),
      ...(r.system === 'spillway'
        ? {
            vsAnchor:
              `${ratios['spillway/virtual-kubelet time to all Running'] ?? '–'}× vk, ` +
              `${ratios['spillway/virtual-kubelet-unthrottled time to all Running'] ?? '–'}× vk-unthrottled, ` +
              `${ratios['spillway/kwok time to all Running'] ?? '–'}× kwok`,
          }
        : {}),
    });
    if (r.propagationMs) {
      rows.push({
        benchmark: NAME,
        metric: `${r.system}: status propagation p50 / p99`,
        value: `${ms(r.propagationMs.p50)} / ${ms(r.propagationMs.p99)}`,
        ...(r.system === 'spillway' ? { target: 'p99 ≤ 1 s' } : {}),
      });
    }
    rows.push({
      benchmark: NAME,
      metric: `${r.system}: node process CPU / peak RSS`,
      value: `${r.process.cpuSeconds} s (${r.process.avgCores} cores) / ${r.process.peakRssMiB} MiB`,
    });
  }
  return { name: NAME, rows, files };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      replicas: { type: 'string' },
      systems: { type: 'string' },
      'reuse-cluster': { type: 'boolean' },
    },
  });
  const outcome = await burstBench({
    ...(values.replicas ? { replicas: Number(values.replicas) } : {}),
    ...(values.systems ? { systems: values.systems.split(',') as SystemId[] } : {}),
    reuseCluster: values['reuse-cluster'] ?? false,
  });
  printTable(
    ['metric', 'value', 'target', 'vs anchor'],
    outcome.rows.map((r) => [r.metric, r.value, r.target, r.vsAnchor]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
