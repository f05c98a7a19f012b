/**
 * Memory benchmark (docs/architecture.md#performance-targets: "operator memory with 5000 pods on a virtual node and 1000 ElasticWorkloads:
 * ≤ 150 MiB RSS"): the operator exactly as a user runs it in one process — `spillway run --provider fake`
 * (webhooks, the ElasticWorkload controller under leader election, one virtual node) — on the real control
 * plane, while the benchmark creates 1000 ElasticWorkloads over small source Deployments (the reconcile
 * benchmark's; kwok runs the source pods, and spillway's webhook places each `burst: always` unit pod on the
 * virtual node) and a Deployment pinned to the virtual node that brings it to 5000 pods.
 *
 * Per variant, on a freshly started operator: its memory idle (5 s after start-up, empty cluster), the peak
 * while the load is created, and settled (`--settle` seconds after every pod is Running, and until RSS is
 * stable: V8 gives memory back only after a quiet spell). Then the operator is stopped and the load deleted, and
 * the next variant starts on the same empty cluster. Variants (`--variants`, default the first three):
 *
 * - `shipped`: the code at `--baseline` (default {@link BASELINE_REF}, before the memory work), no Node flags:
 *   `make run` as it was;
 * - `shipped+flags`: the same code with {@link chartFlags}: the chart's `nodeOptions` plus the heap limit Node
 *   gives itself in the chart's virtual-node container (half its memory limit);
 * - `current`: this working tree with the same flags;
 * - `current-noflags`: this working tree without flags (`make run` now).
 *
 *   node bench/memory.ts [--pods 5000] [--elastic-workloads 1000] [--settle 30] [--variants a,b]
 *                        [--baseline REF] [--node-options=FLAGS] [--heap-snapshots] [--reuse-cluster]
 *
 * `--node-options=...` replaces the flags of the flagged variants (to try others). `--heap-snapshots` makes each
 * operator write a V8 heap snapshot once settled, into bench/results/tmp/memory/ (Chrome DevTools, Memory tab).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AdmissionregistrationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { installCrd } from '../operator/elasticworkload/install.ts';
import type { LocalCluster } from '../test/support/cluster.ts';
import { freePort } from '../test/support/ports.ts';
import { addKwokNodes, benchCluster } from './lib/cluster.ts';
import { describeMemory, HeapSampler, readMemory, type MemoryReading } from './lib/memory-readings.ts';
import { sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart, lineChart, stack } from './lib/plot.ts';
import { createLoad, deleteLoad, NODE_NAME, NodePods } from './lib/memory-load.ts';
import { Child, NODE, ProcSampler } from './lib/process.ts';
import { environment, logFile, printTable, repoRoot, resultsDir, writeResult } from './lib/results.ts';
import { nowMs, ratio } from './lib/stats.ts';

const NAME = 'memory';
const TARGET_MIB = 150;
/** The last commit before the memory work (informer cache transform, chart nodeOptions): "as shipped". */
export const BASELINE_REF = '4808439';

export const VARIANTS = ['shipped', 'shipped+flags', 'current', 'current-noflags'] as const;
export type VariantId = (typeof VARIANTS)[number];
const DEFAULT_VARIANTS: VariantId[] = ['shipped', 'shipped+flags', 'current'];

/** `512Mi`-style quantity → MiB (the units a chart's memory limit uses). */
function quantityMiB(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(q.trim());
  if (!m) throw new Error(`cannot read the memory quantity "${q}"`);
  const unit = { Ki: 1 / 1024, Mi: 1, Gi: 1024, K: 1e3 / 2 ** 20, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 };
  return Number(m[1]) * (m[2] ? unit[m[2] as keyof typeof unit] : 1 / 2 ** 20);
}

/**
 * The Node flags of the flagged variants: what the chart's virtual-node container runs with — values.yaml
 * `nodeOptions` as NODE_OPTIONS, and the old-space limit Node derives from the container's memory limit (half
 * of it, from the cgroup), which outside a container has to be given explicitly.
 */
export function chartFlags(): { nodeOptions: string; heapLimit: string; all: string } {
  const values = parse(readFileSync(join(repoRoot, 'charts/spillway/values.yaml'), 'utf8')) as {
    nodeOptions?: string;
    virtualNode?: { resources?: { limits?: { memory?: string } } };
  };
  const limit = values.virtualNode?.resources?.limits?.memory;
  const heapLimit = limit ? `--max-old-space-size=${Math.floor(quantityMiB(limit) / 2)}` : '';
  const nodeOptions = values.nodeOptions ?? '';
  return { nodeOptions, heapLimit, all: [nodeOptions, heapLimit].filter(Boolean).join(' ') };
}

/** One variant's run. */
export interface VariantResult {
  variant: VariantId;
  code: string;
  nodeOptions: string;
  idle: MemoryReading;
  /** The largest samples from the operator's start to settled (RSS every 200 ms, heap used every 2 s). */
  peak: { rssMiB: number; heapUsedMiB: number | null };
  settled: MemoryReading;
  /** First create → every pod on the virtual node Running (null: not within the timeout). */
  loadSeconds: number | null;
  podsRunning: number;
  /** All Running → settled: at least `--settle`, then until RSS and the heap are stable (at most 3×). */
  settleSeconds: number;
  /** The operator's CPU time from its start to settled. */
  cpuSeconds: number;
  /** RSS over time (seconds since the operator started), for the plot. */
  rssOverTime: [number, number][];
}

/** Where a variant's code lives: this checkout, or `ref` unpacked under `tmp` (node_modules linked). */
function codeRoot(variant: VariantId, ref: string, tmp: string): string {
  if (variant.startsWith('current')) return repoRoot;
  const dir = join(tmp, `code-${ref}`);
  if (!existsSync(join(dir, 'operator/cli.ts'))) {
    mkdirSync(dir, { recursive: true });
    const tar = execFileSync('git', ['-C', repoRoot, 'archive', '--format=tar', ref], { maxBuffer: 1 << 30 });
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
  }
  return dir;
}

interface RunOptions {
  kc: KubeConfig;
  kubeconfig: string;
  pods: number;
  elasticWorkloads: number;
  settleSeconds: number;
  heapSnapshots: boolean;
  tmp: string;
}

async function runVariant(
  o: RunOptions & { variant: VariantId; root: string; code: string; nodeOptions: string },
): Promise<VariantResult> {
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const snapshotFlags = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${o.tmp}`;
  const child = new Child(
    o.variant,
    NODE,
    [
      join(o.root, 'operator/cli.ts'),
      'run',
      '--provider=fake',
      `--kubeconfig=${o.kubeconfig}`,
      `--node-name=${NODE_NAME}`,
      `--kubelet-port=${await freePort()}`,
      `--metrics-port=${metricsPort}`,
    ],
    {
      logFile: logFile(NAME, o.variant),
      env: { NODE_OPTIONS: [o.nodeOptions, o.heapSnapshots ? snapshotFlags : ''].filter(Boolean).join(' ') },
    },
  );
  const log = (line: string) => console.log(`  memory[${o.variant}]: ${line}`);
  const started = nowMs();
  const sampler = new ProcSampler(child.pid, 200);
  const heap = new HeapSampler(metricsUrl);
  try {
    await child.waitForLine(/"msg":"virtual node registered"/);
    await child.waitForLine(/"msg":"started leading"/);
    await child.waitForLine(/"msg":"webhook configurations registered"/);
    await sleep(5000); // caches synced, first node status and Lease written
    sampler.sample();
    const idle = await readMemory(child.pid, metricsUrl);
    log(`idle: ${describeMemory(idle)}`);

    const onNode = new NodePods(o.kc);
    await onNode.watch.start();
    const t0 = nowMs();
    const expected = await createLoad(o.kc, o);
    const deadline = Date.now() + Math.max(300_000, expected * 100);
    for (let lastLog = Date.now(); onNode.running < expected && Date.now() < deadline; await sleep(200)) {
      if (Date.now() - lastLog < 10_000) continue;
      lastLog = Date.now();
      await onNode.check();
      log(
        `${onNode.running}/${expected} Running on the virtual node, RSS ${sampler.samples.at(-1)?.rssMiB} MiB`,
      );
    }
    const loadSeconds = onNode.running >= expected ? (nowMs() - t0) / 1000 : null;
    const podsRunning = onNode.running;
    onNode.watch.stop();
    log(`${podsRunning}/${expected} Running after ${sec(loadSeconds, 1)}; settling`);

    // V8 gives memory back only after a quiet spell (its memory reducer shrinks the committed heap towards what
    // is used): wait at least `settleSeconds`, then until RSS moves by less than 2 % in 10 s with no more than a
    // quarter of the heap uncollected or uncommitted, at most three times as long.
    const settleStart = nowMs();
    let settled = await readMemory(child.pid, metricsUrl);
    for (let waited = 0; ;) {
      const step = waited < o.settleSeconds ? Math.min(10, o.settleSeconds - waited) : 10;
      await sleep(step * 1000);
      waited += step;
      const previous = settled.rssMiB;
      settled = await readMemory(child.pid, metricsUrl);
      log(`settling ${waited} s: ${describeMemory(settled)}`);
      const { heapUsedMiB: used, heapCommittedMiB: committed } = settled;
      const stable =
        Math.abs(settled.rssMiB - previous) < 0.02 * settled.rssMiB &&
        (used === null || committed === null || committed <= 1.25 * used);
      if ((waited >= o.settleSeconds && stable) || waited >= o.settleSeconds * 3) break;
    }
    const settledAt = nowMs();
    sampler.sample();
    if (o.heapSnapshots) await heapSnapshot(child, o.tmp);
    const window = sampler.window(started, settledAt);
    log(`settled; peak RSS ${window.peakRssMiB} MiB`);
    return {
      variant: o.variant,
      code: o.code,
      nodeOptions: o.nodeOptions,
      idle,
      peak: { rssMiB: window.peakRssMiB, heapUsedMiB: heap.peak(settledAt) },
      settled,
      loadSeconds: loadSeconds === null ? null : Number(loadSeconds.toFixed(1)),
      podsRunning,
      settleSeconds: Number(((settledAt - settleStart) / 1000).toFixed(1)),
      cpuSeconds: window.cpuSeconds,
      rssOverTime: sampler
        .series(started)
        .filter(([t], i) => i % 5 === 0 && t * 1000 <= settledAt - started)
        .map(([t, v]) => [Number(t.toFixed(1)), v]),
    };
  } finally {
    heap.stop();
    sampler.stop();
    await child.stop(30_000);
    await deleteLoad(o.kc);
  }
}

/** Makes the child write a heap snapshot into `dir` (it runs with --heapsnapshot-signal) and waits for it. */
async function heapSnapshot(child: Child, dir: string): Promise<void> {
  const snapshots = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
  const before = new Set(snapshots());
  child.proc.kill('SIGUSR2');
  // The file appears when writing starts; it is complete once its size stops changing.
  let last = -1;
  for (const deadline = Date.now() + 180_000; Date.now() < deadline; await sleep(2000)) {
    const file = snapshots().find((f) => !before.has(f));
    const size = file ? statSync(join(dir, file)).size : -1;
    if (size > 0 && size === last) return;
    last = size;
  }
}

export interface MemoryBenchOptions {
  pods?: number;
  elasticWorkloads?: number;
  settleSeconds?: number;
  variants?: VariantId[];
  baseline?: string;
  /** The flags of the flagged variants; default {@link chartFlags}. */
  nodeOptions?: string;
  heapSnapshots?: boolean;
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function memoryBench(opts: MemoryBenchOptions = {}): Promise<BenchOutcome> {
  const pods = opts.pods ?? 5000;
  const elasticWorkloads = opts.elasticWorkloads ?? 1000;
  const baseline = opts.baseline ?? BASELINE_REF;
  const chart = chartFlags();
  const flags = opts.nodeOptions ?? chart.all;
  const tmp = join(resultsDir, 'tmp', NAME);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const results: VariantResult[] = [];
  const started = Date.now();
  try {
    await installCrd(kc);
    await deleteLoad(kc); // what an interrupted run left behind
    await addKwokNodes(
      kc,
      Array.from({ length: Math.ceil(elasticWorkloads / 1000) }, (_, i) => `bench-kwok-pool-${i}`),
      1100,
    );
    for (const variant of opts.variants ?? DEFAULT_VARIANTS) {
      const current = variant.startsWith('current');
      const nodeOptions = variant === 'shipped' || variant === 'current-noflags' ? '' : flags;
      console.log(
        `  memory: ${variant} (${current ? 'this tree' : baseline}; NODE_OPTIONS="${nodeOptions}")`,
      );
      results.push(
        await runVariant({
          variant,
          root: codeRoot(variant, baseline, tmp),
          code: current ? `working tree (${String(env.commit)}${env.dirty ? ', dirty' : ''})` : baseline,
          nodeOptions,
          kc,
          kubeconfig: cluster.kubeconfigPath,
          pods,
          elasticWorkloads,
          settleSeconds: opts.settleSeconds ?? 30,
          heapSnapshots: opts.heapSnapshots ?? false,
          tmp,
        }),
      );
    }
  } finally {
    // An operator that had to be killed leaves its dev-mode webhook configurations (failurePolicy Fail for
    // spillway's pods) pointing at nothing.
    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    await admission.deleteMutatingWebhookConfiguration({ name: 'spillway' }).catch(() => undefined);
    await admission.deleteValidatingWebhookConfiguration({ name: 'spillway' }).catch(() => undefined);
    await kc
      .makeApiClient(CoreV1Api)
      .deleteNode({ name: NODE_NAME })
      .catch(() => undefined);
    if (own && !process.env.KEEP) await cluster.down();
  }
  if (opts.heapSnapshots) console.log(`  memory: heap snapshots in ${tmp}`);

  const shipped = results.find((r) => r.variant === 'shipped');
  const vsShipped = (r: VariantResult, k: 'idle' | 'peak' | 'settled') =>
    ratio(r[k].rssMiB, shipped?.[k].rssMiB);
  const result = {
    benchmark: NAME,
    description:
      `spillway run --provider fake (webhooks, ElasticWorkload controller and one virtual node in one ` +
      `process) while ${elasticWorkloads} ElasticWorkloads (each over a 1-replica source Deployment run by ` +
      `kwok, with one burst: always unit pod that the webhook places on the virtual node) and a Deployment of ` +
      `${Math.max(0, pods - elasticWorkloads)} replicas pinned to the virtual node are created: ${pods} pods ` +
      `on the virtual node. RSS from /proc; V8 heap from the operator's /metrics. Idle: 5 s after start-up on ` +
      `the empty cluster; peak: the largest 200 ms sample from start to settled; settled: after every pod is ` +
      `Running, at least ${opts.settleSeconds ?? 30} s and until RSS is stable.`,
    environment: env,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    caveat:
      'The control plane, kwok, the operator and the benchmark share the same cores. RSS counts the pages of ' +
      'the node binary the process touched (about 60 MiB, "file"), as a container memory limit does. The fake ' +
      "provider keeps a copy of every pod and of its resolved volume files (the Buffers in 'external'); a " +
      'real provider keeps far less.',
    target: {
      what: `operator RSS, ${pods} pods on a virtual node, ${elasticWorkloads} ElasticWorkloads`,
      mib: TARGET_MIB,
    },
    flags: {
      used: flags,
      chartNodeOptions: chart.nodeOptions,
      containerHeapLimit: `${chart.heapLimit} (what Node derives from the chart's virtual-node memory limit)`,
    },
    baselineRef: baseline,
    ratios: Object.fromEntries(
      results.map((r) => [
        r.variant,
        {
          'settled/target': ratio(r.settled.rssMiB, TARGET_MIB),
          'peak/target': ratio(r.peak.rssMiB, TARGET_MIB),
          'idle/shipped': vsShipped(r, 'idle'),
          'peak/shipped': vsShipped(r, 'peak'),
          'settled/shipped': vsShipped(r, 'settled'),
        },
      ]),
    ),
    variants: results,
  };
  const svg = stack([
    barChart({
      title: `Operator RSS: ${pods} pods on the virtual node, ${elasticWorkloads} ElasticWorkloads`,
      yLabel: 'MiB',
      categories: results.map((r) => r.variant),
      series: (['idle', 'peak', 'settled'] as const).map((k) => ({
        name: `RSS ${k}`,
        values: results.map((r) => r[k].rssMiB),
      })),
      refs: [{ y: TARGET_MIB, label: `target ${TARGET_MIB} MiB` }],
    }),
    lineChart({
      title: 'Operator RSS from start-up to settled',
      xLabel: 'seconds since the operator started',
      yLabel: 'RSS (MiB)',
      series: results.map((r) => ({ name: r.variant, points: r.rssOverTime })),
      refs: [{ y: TARGET_MIB, label: `target ${TARGET_MIB} MiB` }],
    }),
  ]);
  const files = writeResult(NAME, result, svg);
  const rows: SummaryRow[] = results.map((r) => ({
    benchmark: NAME,
    metric: `${r.variant}: RSS idle / peak / settled`,
    value: `${r.idle.rssMiB} / ${r.peak.rssMiB} / ${r.settled.rssMiB} MiB`,
    target: `≤ ${TARGET_MIB} MiB`,
    vsAnchor:
      `${ratio(r.settled.rssMiB, TARGET_MIB) ?? '–'}× target` +
      (shipped && r !== shipped ? `, ${vsShipped(r, 'settled') ?? '–'}× shipped` : ''),
  }));
  return { name: NAME, rows, files };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      pods: { type: 'string' },
      'elastic-workloads': { type: 'string' },
      settle: { type: 'string' },
      variants: { type: 'string' },
      baseline: { type: 'string' },
      'node-options': { type: 'string' },
      'heap-snapshots': { type: 'boolean' },
      'reuse-cluster': { type: 'boolean' },
    },
  });
  const variants = values.variants?.split(',') as VariantId[] | undefined;
  for (const v of variants ?? []) {
    if (!VARIANTS.includes(v)) throw new Error(`unknown variant "${v}": use ${VARIANTS.join(', ')}`);
  }
  const outcome = await memoryBench({
    ...(values.pods ? { pods: Number(values.pods) } : {}),
    ...(values['elastic-workloads'] ? { elasticWorkloads: Number(values['elastic-workloads']) } : {}),
    ...(values.settle ? { settleSeconds: Number(values.settle) } : {}),
    ...(variants ? { variants } : {}),
    ...(values.baseline ? { baseline: values.baseline } : {}),
    ...(values['node-options'] !== undefined ? { nodeOptions: values['node-options'] } : {}),
    heapSnapshots: values['heap-snapshots'] ?? false,
    reuseCluster: values['reuse-cluster'] ?? false,
  });
  printTable(
    ['metric', 'value', 'target', 'vs'],
    outcome.rows.map((r) => [r.metric, r.value, r.target, r.vsAnchor]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
