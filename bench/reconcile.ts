/**
 * Reconcile benchmark (issue 3, docs/architecture.md#performance-targets): how fast the ElasticWorkload controller turns ElasticWorkload
 * changes into unit Deployments with the right replicas, on the real control plane, with kwok nodes running
 * the pods (so the controller also sees the Deployment status churn it would see in a cluster).
 *
 * Each ElasticWorkload splits a small source Deployment: `replicas: 2`, `sourceTarget.max: 1`, one unit
 * (`burst`), so the unit Deployment must reach 1 replica. Three phases, each timed per object from the API call
 * that changed the ElasticWorkload to the unit Deployment seen with the right `spec.replicas` through a watch:
 *
 * 1. create: all ElasticWorkloads created at once (32 requests in flight) → unit at 1 replica;
 * 2. bulk scale: every ElasticWorkload scaled to 3 through the scale subresource at once → unit at 2;
 * 3. paced scale: a subset scaled to 4 one at a time at a steady rate → unit at 3 (a change on a quiet
 *    controller: the target in docs/architecture.md#performance-targets "ElasticWorkload change → unit workloads updated, p99 ≤ 1 s").
 *
 * The controller runs in its own process (bench/entries/elasticworkload-controller.ts); its RSS and CPU are
 * sampled throughout.
 *
 *   node bench/reconcile.ts [--count 1000] [--paced 200] [--paced-rate 20] [--reuse-cluster]
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Deployment,
} from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../api/elasticworkload.ts';
import { installCrd } from '../operator/elasticworkload/install.ts';
import { unitDeploymentName } from '../operator/elasticworkload/units.ts';
import type { LocalCluster } from '../test/support/cluster.ts';
import { addKwokNodes, benchCluster } from './lib/cluster.ts';
import { ms, sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart, cdf, lineChart, stack } from './lib/plot.ts';
import { Child, NODE, ProcSampler } from './lib/process.ts';
import { queueStats } from './lib/queue-metrics.ts';
import { benchDir, environment, logFile, printTable, resultsDir, writeResult } from './lib/results.ts';
import { forEachLimit, nowMs, summarize, type Summary } from './lib/stats.ts';
import { ObjectWatch } from './lib/watch.ts';

const NAME = 'reconcile';
const TARGET_P99_MS = 1000;
const NAMESPACE = 'bench-reconcile';
const UNIT = 'burst';
const IN_FLIGHT = 32;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export const ewName = (i: number) => `ew-${String(i).padStart(4, '0')}`;
export const sourceName = (i: number) => `app-${String(i).padStart(4, '0')}`;

/** Source Deployment `i`: one replica of a small pod (also used by bench/memory.ts). */
export function sourceDeployment(i: number, namespace = NAMESPACE): V1Deployment {
  const labels = { app: sourceName(i) };
  return {
    metadata: { name: sourceName(i), namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [
            { name: 'app', image: 'registry.example.com/app:1.0', env: [{ name: 'I', value: `${i}` }] },
          ],
        },
      },
    },
  };
}

/** ElasticWorkload `i` over source `i`: replicas 2, source max 1, one `burst: always` unit (also bench/memory.ts). */
export function elasticWorkload(i: number, namespace = NAMESPACE): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'ElasticWorkload',
    metadata: { name: ewName(i), namespace },
    spec: {
      sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: sourceName(i), min: 0, max: 1 },
      replicas: 2,
      elasticUnit: [{ name: UNIT, labels: { 'spillway.dev/burst': 'always' } }],
    },
  };
}

/** One measured phase. */
export interface PhaseResult {
  phase: string;
  objects: number;
  /** Unit Deployments that reached the expected replicas before the timeout. */
  correct: number;
  /** First change issued → last unit correct (s). */
  totalSeconds: number | null;
  /** Per object: change issued → unit Deployment seen with the expected replicas (ms). */
  latencyMs: Summary;
  controller: { peakRssMiB: number; cpuSeconds: number; avgCores: number };
}

/** Tracks, per unit Deployment name, when it was first seen with each replica count. */
class UnitTracker {
  readonly #firstSeen = new Map<string, Map<number, number>>();

  onEvent = (type: string, d: V1Deployment, at: number) => {
    const name = d.metadata?.name;
    if (!name || type === 'DELETED') return;
    let byReplicas = this.#firstSeen.get(name);
    if (!byReplicas) this.#firstSeen.set(name, (byReplicas = new Map()));
    const r = d.spec?.replicas ?? 1;
    if (!byReplicas.has(r)) byReplicas.set(r, at);
  };

  /** When `unit` was first seen with `replicas` at or after `since`. */
  seen(unit: string, replicas: number): number | undefined {
    return this.#firstSeen.get(unit)?.get(replicas);
  }
}

async function runPhase(o: {
  phase: string;
  indices: number[];
  expectedUnitReplicas: number;
  tracker: UnitTracker;
  sampler: ProcSampler;
  issue: (i: number) => Promise<void>;
  /** Paced: one change every `intervalMs`; otherwise IN_FLIGHT at once. */
  intervalMs?: number;
  timeoutMs: number;
}): Promise<{ result: PhaseResult; latencies: number[] }> {
  const issued = new Map<number, number>();
  const t0 = nowMs();
  if (o.intervalMs) {
    for (const [k, i] of o.indices.entries()) {
      const due = t0 + k * o.intervalMs;
      const wait = due - nowMs();
      if (wait > 0) await sleep(wait);
      issued.set(i, nowMs());
      await o.issue(i);
    }
  } else {
    await forEachLimit(o.indices, IN_FLIGHT, async (i) => {
      issued.set(i, nowMs());
      await o.issue(i);
    });
  }
  const unit = (i: number) => unitDeploymentName(sourceName(i), UNIT);
  const deadline = Date.now() + o.timeoutMs;
  let lastLog = Date.now();
  const done = () =>
    o.indices.filter((i) => o.tracker.seen(unit(i), o.expectedUnitReplicas) !== undefined).length;
  while (done() < o.indices.length && Date.now() < deadline) {
    await sleep(50);
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      console.log(`  reconcile[${o.phase}]: ${done()}/${o.indices.length} units correct`);
    }
  }
  const latencies: number[] = [];
  let last = t0;
  for (const i of o.indices) {
    const at = o.tracker.seen(unit(i), o.expectedUnitReplicas);
    if (at === undefined) continue;
    latencies.push(Math.max(0, at - issued.get(i)!));
    last = Math.max(last, at);
  }
  const correct = latencies.length;
  const end = correct === o.indices.length ? last : nowMs();
  const result: PhaseResult = {
    phase: o.phase,
    objects: o.indices.length,
    correct,
    totalSeconds: correct === o.indices.length ? Number(((last - t0) / 1000).toFixed(3)) : null,
    latencyMs: summarize(latencies),
    controller: o.sampler.window(t0, end),
  };
  console.log(
    `  reconcile[${o.phase}]: ${correct}/${o.indices.length} in ${sec(result.totalSeconds)}, ` +
      `p50 ${ms(result.latencyMs.p50)}, p99 ${ms(result.latencyMs.p99)}, ` +
      `controller peak RSS ${result.controller.peakRssMiB} MiB`,
  );
  return { result, latencies };
}

export interface ReconcileBenchOptions {
  count?: number;
  paced?: number;
  pacedRatePerSecond?: number;
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function reconcileBench(opts: ReconcileBenchOptions = {}): Promise<BenchOutcome> {
  const count = opts.count ?? 1000;
  const paced = Math.min(count, opts.paced ?? 200);
  const pacedRate = opts.pacedRatePerSecond ?? 20;
  const tmp = join(resultsDir, 'tmp', NAME);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const indices = Array.from({ length: count }, (_, i) => i);
  let controller: Child | undefined;
  try {
    await installCrd(kc);
    // Room for every pod: source + unit replicas of each ElasticWorkload, at the largest phase.
    const nodes = Math.ceil((count * 4 + 1) / 1000);
    await addKwokNodes(
      kc,
      Array.from({ length: nodes }, (_, i) => `bench-kwok-pool-${i}`),
      1100,
    );
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });

    controller = new Child(
      'controller',
      NODE,
      [join(benchDir, 'entries/elasticworkload-controller.ts'), cluster.kubeconfigPath],
      {
        logFile: logFile(NAME, 'controller'),
      },
    );
    await controller.waitForLine(/^READY$/);
    const sampler = new ProcSampler(controller.pid, 200);
    const idleRssMiB = sampler.sample()?.rssMiB;

    console.log(`  reconcile: creating ${count} source Deployments`);
    await forEachLimit(indices, IN_FLIGHT, async (i) => {
      await apps.createNamespacedDeployment({ namespace: NAMESPACE, body: sourceDeployment(i) });
    });
    // Let the sources' pods come up before the clock starts: the phases measure the controller, not kcm.
    for (const deadline = Date.now() + 180_000; Date.now() < deadline; await sleep(1000)) {
      const list = await apps.listNamespacedDeployment({ namespace: NAMESPACE });
      if (list.items.filter((d) => (d.status?.readyReplicas ?? 0) >= 1).length >= count) break;
    }
    await sleep(2000);

    const tracker = new UnitTracker();
    const watch = new ObjectWatch<V1Deployment>(
      kc,
      `/apis/apps/v1/namespaces/${NAMESPACE}/deployments`,
      { labelSelector: 'spillway.dev/unit' },
      tracker.onEvent,
    );
    await watch.start();
    const timeoutMs = Math.max(120_000, count * 200);
    const scale = (replicas: number) => async (i: number) => {
      await custom.patchNamespacedCustomObjectScale(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: NAMESPACE,
          name: ewName(i),
          body: { spec: { replicas } },
        },
        mergePatch,
      );
    };

    console.log(`  reconcile: creating ${count} ElasticWorkloads at once`);
    const create = await runPhase({
      phase: 'create',
      indices,
      expectedUnitReplicas: 1,
      tracker,
      sampler,
      timeoutMs,
      issue: async (i) => {
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: NAMESPACE,
          body: elasticWorkload(i),
        });
      },
    });
    await sleep(3000);
    console.log(`  reconcile: scaling ${count} ElasticWorkloads at once`);
    const bulk = await runPhase({
      phase: 'bulk-scale',
      indices,
      expectedUnitReplicas: 2,
      tracker,
      sampler,
      timeoutMs,
      issue: scale(3),
    });
    await sleep(5000);
    console.log(`  reconcile: scaling ${paced} ElasticWorkloads one at a time, ${pacedRate}/s`);
    const pacedPhase = await runPhase({
      phase: 'paced-scale',
      indices: indices.slice(0, paced),
      expectedUnitReplicas: 3,
      tracker,
      sampler,
      timeoutMs,
      intervalMs: 1000 / pacedRate,
      issue: scale(4),
    });
    await sleep(2000);
    const settledRssMiB = sampler.sample()?.rssMiB;
    const t0 = sampler.samples[0]!.atMs;
    const rssSeries = sampler.series(t0);
    sampler.stop();
    watch.stop();

    const queues = await queueStats(controller, join(tmp, 'metrics.json'));
    const phases = [create, bulk, pacedPhase];
    const result = {
      benchmark: NAME,
      description:
        `${count} ElasticWorkloads (replicas 2, source max 1, one unit) over small source Deployments on kwok ` +
        'nodes; per object, the time from the API call that changed the ElasticWorkload to the unit Deployment ' +
        'seen with the right spec.replicas through a watch.',
      environment: env,
      caveat:
        'The control plane, kwok, the controller and the benchmark share the same cores; kube-controller-manager ' +
        'creates and deletes the unit pods meanwhile, as in a real cluster.',
      target: {
        what: 'ElasticWorkload change → unit workloads updated (paced-scale phase)',
        p99Ms: TARGET_P99_MS,
        met: pacedPhase.result.correct === paced ? pacedPhase.result.latencyMs.p99 <= TARGET_P99_MS : false,
      },
      controller: {
        workers: 4,
        idleRssMiB,
        peakRssMiB: Math.max(...sampler.samples.map((s) => s.rssMiB)),
        settledRssMiB,
        cpuSeconds: Number((sampler.samples.at(-1)!.cpuSeconds - sampler.samples[0]!.cpuSeconds).toFixed(2)),
        /** Over the whole run: how many reconciles the changes caused, and how long one took. */
        queues,
      },
      phases: phases.map((p) => p.result),
    };
    const svg = stack([
      lineChart({
        title: `Change → unit Deployment correct, CDF (${count} ElasticWorkloads)`,
        xLabel: 'ms',
        yLabel: 'objects (%)',
        series: phases.map((p) => ({ name: p.result.phase, points: cdf(p.latencies) })),
        refs: [],
      }),
      barChart({
        title: 'Latency per phase',
        yLabel: 'ms',
        categories: phases.map((p) => p.result.phase),
        series: (['p50', 'p99', 'max'] as const).map((k) => ({
          name: k,
          values: phases.map((p) => p.result.latencyMs[k]),
        })),
        refs: [{ y: TARGET_P99_MS, label: 'target p99 1 s' }],
      }),
      lineChart({
        title: 'Controller RSS over the run',
        xLabel: 'seconds since the controller started',
        yLabel: 'RSS (MiB)',
        series: [{ name: 'controller RSS', points: rssSeries }],
      }),
    ]);
    const files = writeResult(NAME, result, svg);
    const rows: SummaryRow[] = phases.map((p) => ({
      benchmark: NAME,
      metric: `${p.result.phase} (${p.result.objects}): p50 / p99, total`,
      value: `${ms(p.result.latencyMs.p50)} / ${ms(p.result.latencyMs.p99)}, ${sec(p.result.totalSeconds)}`,
      ...(p.result.phase === 'paced-scale' ? { target: 'p99 ≤ 1 s' } : {}),
    }));
    const q = queues.elasticworkload;
    if (q) {
      rows.push({
        benchmark: NAME,
        metric: 'controller reconciles (whole run), mean duration',
        value: `${q.reconciles} (${(q.reconciles / count).toFixed(1)} per ElasticWorkload), ${ms(q.meanReconcileMs)}`,
      });
    }
    rows.push({
      benchmark: NAME,
      metric: 'controller RSS idle / peak / settled',
      value: `${idleRssMiB} / ${result.controller.peakRssMiB} / ${settledRssMiB} MiB`,
    });
    return { name: NAME, rows, files };
  } finally {
    await controller?.stop();
    if (own && !process.env.KEEP) await cluster.down();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      count: { type: 'string' },
      paced: { type: 'string' },
      'paced-rate': { type: 'string' },
      'reuse-cluster': { type: 'boolean' },
    },
  });
  const outcome = await reconcileBench({
    ...(values.count ? { count: Number(values.count) } : {}),
    ...(values.paced ? { paced: Number(values.paced) } : {}),
    ...(values['paced-rate'] ? { pacedRatePerSecond: Number(values['paced-rate']) } : {}),
    reuseCluster: values['reuse-cluster'] ?? false,
  });
  printTable(
    ['metric', 'value', 'target'],
    outcome.rows.map((r) => [r.metric, r.value, r.target]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
