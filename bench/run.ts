/**
 * `make bench`: every benchmark in sequence — webhook and webhook-patch (no cluster), then burst, reconcile, eci, sandbox and memory
 * on one fresh local control plane (bench/.cluster) — each writing `bench/results/<name>.json` and `<name>.svg`,
 * then one summary table. Benchmarks measure; they do not assert: the exit code says only whether they ran.
 * `sandbox` runs real local sandboxes and needs root; without root it is skipped with a note. `memory` runs last
 * (about 15 minutes: three operators, each through 5000 pods and 1000 ElasticWorkloads).
 *
 *   node bench/run.ts [--only webhook,webhook-patch,burst,reconcile,eci,sandbox,memory] [--quick]
 *
 * `--quick` runs small sizes (200 replicas, 200 ElasticWorkloads, 5 s per rate, 150 ECI pods, 20 sandboxes,
 * 1000 pods and 200 ElasticWorkloads for memory) to check the harness;
 * the published numbers come from the default sizes. `KEEP=1` leaves the cluster running.
 */
import { parseArgs } from 'node:util';
import { burstBench } from './burst.ts';
import { clusterBench } from './cluster.ts';
import { eciBench } from './eci.ts';
import { memoryBench } from './memory.ts';
import { benchCluster } from './lib/cluster.ts';
import type { BenchOutcome } from './lib/outcome.ts';
import { printTable } from './lib/results.ts';
import { reconcileBench } from './reconcile.ts';
import { sandboxBench } from './sandbox.ts';
import { webhookPatchBench } from './webhook-patch.ts';
import { webhookBench } from './webhook.ts';

const ALL = [
  'webhook',
  'webhook-patch',
  'burst',
  'reconcile',
  'eci',
  'sandbox',
  'memory',
  'cluster',
] as const;
type Name = (typeof ALL)[number];

const { values } = parseArgs({
  options: { only: { type: 'string' }, quick: { type: 'boolean' } },
});
const only = (values.only?.split(',') ?? [...ALL]) as Name[];
for (const n of only)
  if (!ALL.includes(n)) throw new Error(`unknown benchmark "${n}": use ${ALL.join(', ')}`);
const quick = values.quick ?? false;

const outcomes: BenchOutcome[] = [];
const failures: string[] = [];
const started = Date.now();

async function step(name: Name, run: () => Promise<BenchOutcome>): Promise<void> {
  if (!only.includes(name)) return;
  console.log(`\n== ${name} ==`);
  try {
    outcomes.push(await run());
  } catch (err) {
    failures.push(name);
    console.error(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}

await step('webhook', () => webhookBench(quick ? { durationSeconds: 5 } : {}));
await step('webhook-patch', () => webhookPatchBench(quick ? { samples: 2 } : {}));
// The local cluster itself (its own folders, real nodes: root only).
if (process.getuid?.() === 0) await step('cluster', () => clusterBench(quick ? { settleSeconds: 5 } : {}));
else if (only.includes('cluster')) console.log('\n== cluster ==\nskipped: real nodes need root');
const noCluster: Name[] = ['webhook', 'webhook-patch', 'cluster'];
const needsRoot = process.getuid?.() !== 0 && only.includes('sandbox');
if (needsRoot) console.log('\n== sandbox ==\nskipped: the local provider needs root');
if (only.some((n) => !noCluster.includes(n))) {
  console.log('\n== control plane ==');
  const shared = await benchCluster();
  try {
    await step('burst', () => burstBench({ cluster: shared, ...(quick ? { replicas: 200 } : {}) }));
    await step('reconcile', () =>
      reconcileBench({ cluster: shared, ...(quick ? { count: 200, paced: 50 } : {}) }),
    );
    await step('eci', () => eciBench({ cluster: shared, ...(quick ? { pods: 150 } : {}) }));
    if (!needsRoot) {
      await step('sandbox', () => sandboxBench({ cluster: shared, ...(quick ? { pods: 20 } : {}) }));
    }
    await step('memory', async () =>
      memoryBench({
        // Restarted: the benchmarks before leave ElasticWorkloads and Deployments behind, which the operator
        // under test would cache and reconcile.
        cluster: only.some((n) => !noCluster.includes(n) && n !== 'memory') ? await benchCluster() : shared,
        ...(quick ? { pods: 1000, elasticWorkloads: 200, settleSeconds: 10 } : {}),
      }),
    );
  } finally {
    if (!process.env.KEEP) await shared.cluster.down();
  }
}

console.log(`\n== summary (${((Date.now() - started) / 1000).toFixed(0)} s) ==`);
printTable(
  ['benchmark', 'metric', 'value', 'target', 'vs anchor'],
  outcomes.flatMap((o) => o.rows.map((r) => [r.benchmark, r.metric, r.value, r.target, r.vsAnchor])),
);
for (const o of outcomes) console.log(`${o.name}: ${o.files.json}, ${o.files.svg}`);
console.log(
  'Measured on a shared machine: the control plane, the system under test and the load generator share its ' +
    'cores. Compare ratios within one run rather than absolute numbers across runs.',
);
if (failures.length > 0) {
  console.error(`failed: ${failures.join(', ')}`);
  process.exit(1);
}
process.exit(0);
