/**
 * Webhook patch benchmark (issue 12): one review of a very large pod — 5,000 tolerations and 1,000 required node
 * selector terms, `burst: always` (the worst case: two tolerations appended and one requirement added to every
 * term) — answered by the `/mutate-pods` handler: time and the heap it allocates. Each sample runs in a fresh
 * process (bench/entries/webhook-review.ts), so that heap figures do not mix with earlier samples. No cluster.
 *
 *   node bench/webhook-patch.ts [--tolerations 5000] [--terms 1000] [--samples 5] [--root <checkout>]
 *
 * `--root` measures another checkout's webhooks/ with the same harness (e.g. a `git worktree` of an older
 * commit). Target: under 20 ms and under 50 MiB of extra heap per review.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ms, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart } from './lib/plot.ts';
import { NODE } from './lib/process.ts';
import { benchDir, environment, printTable, writeResult } from './lib/results.ts';
import { summarize } from './lib/stats.ts';

const NAME = 'webhook-patch';
const TARGET_MS = 20;
const TARGET_HEAP_MIB = 50;

/** Options of {@link webhookPatchBench}. */
export interface WebhookPatchBenchOptions {
  tolerations?: number;
  terms?: number;
  /** Fresh processes, each answering the review `repeats` times (the first answer is the cold one). */
  samples?: number;
  repeats?: number;
  /** The checkout whose webhooks/ are measured; default this one. */
  root?: string;
}

interface Sample {
  ms: number[];
  heapMiB: number;
  rssGrowthMiB: number;
  patchOps: number;
  responseKiB: number;
  gcs: number;
}

function sample(o: Required<Omit<WebhookPatchBenchOptions, 'root'>> & { root?: string }): Sample {
  const args = [
    '--expose-gc',
    // A young generation large enough that the review's allocations are not collected mid-way: heapUsed after
    // minus before is then what the review allocated.
    '--min-semi-space-size=64',
    '--max-semi-space-size=64',
    join(benchDir, 'entries/webhook-review.ts'),
    String(o.tolerations),
    String(o.terms),
    String(o.repeats),
    ...(o.root ? [o.root] : []),
  ];
  const out = execFileSync(NODE, args, { maxBuffer: 1 << 20, timeout: 600_000 })
    .toString()
    .trim();
  return JSON.parse(out.split('\n').at(-1)!) as Sample;
}

/** Runs the benchmark and writes `bench/results/webhook-patch.json` and `.svg`. */
export async function webhookPatchBench(opts: WebhookPatchBenchOptions = {}): Promise<BenchOutcome> {
  const o = {
    tolerations: opts.tolerations ?? 5000,
    terms: opts.terms ?? 1000,
    samples: opts.samples ?? 5,
    repeats: opts.repeats ?? 5,
    ...(opts.root ? { root: opts.root } : {}),
  };
  const env = environment();
  const samples: Sample[] = [];
  for (let i = 0; i < o.samples; i++) {
    const s = sample(o);
    samples.push(s);
    console.log(
      `  ${NAME}: sample ${i + 1}: ${s.ms.join(' / ')} ms, heap +${s.heapMiB} MiB, ` +
        `RSS +${s.rssGrowthMiB} MiB, ${s.patchOps} operations, ${s.gcs} GCs`,
    );
  }
  const cold = summarize(samples.map((s) => s.ms[0]!));
  const warm = summarize(samples.flatMap((s) => s.ms.slice(1)));
  const heap = summarize(
    samples.map((s) => s.heapMiB),
    1,
  );
  const rss = summarize(
    samples.map((s) => s.rssGrowthMiB),
    1,
  );
  const worstMs = Math.max(cold.max, warm.max);
  const result = {
    benchmark: NAME,
    description:
      `One AdmissionReview of a burst=always pod with ${o.tolerations} tolerations and ${o.terms} required ` +
      'node selector terms: parse, /mutate-pods handler, response with its base64 JSON Patch; in-process, ' +
      'each sample in a fresh process (first answer cold, then warm repeats).',
    environment: { ...env, measuredRoot: o.root ?? 'this checkout' },
    size: { tolerations: o.tolerations, terms: o.terms },
    target: {
      ms: TARGET_MS,
      heapMiB: TARGET_HEAP_MIB,
      met: worstMs < TARGET_MS && heap.max < TARGET_HEAP_MIB,
    },
    patchOperations: samples[0]?.patchOps,
    responseKiB: samples[0]?.responseKiB,
    coldMs: cold,
    warmMs: warm,
    heapMiB: heap,
    rssGrowthMiB: rss,
    samples,
  };
  const svg = barChart({
    title: `One review: ${o.tolerations} tolerations, ${o.terms} affinity terms`,
    yLabel: 'ms / MiB',
    categories: ['cold answer (ms)', 'warm answer (ms)', 'heap allocated (MiB)'],
    series: [
      { name: 'median', values: [cold.p50, warm.p50, heap.p50] },
      { name: 'max', values: [cold.max, warm.max, heap.max] },
    ],
    refs: [{ y: TARGET_MS, label: `target ${TARGET_MS} ms` }],
  });
  const files = writeResult(NAME, result, svg);
  const rows: SummaryRow[] = [
    {
      benchmark: NAME,
      metric: `one review (${o.tolerations} tolerations, ${o.terms} terms): cold / warm median / max`,
      value: `${ms(cold.p50, 1)} / ${ms(warm.p50, 1)} / ${ms(worstMs, 1)}`,
      target: `< ${TARGET_MS} ms`,
    },
    {
      benchmark: NAME,
      metric: 'heap allocated by one review (max)',
      value: `${heap.max} MiB`,
      target: `< ${TARGET_HEAP_MIB} MiB`,
    },
  ];
  return { name: NAME, rows, files };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      tolerations: { type: 'string' },
      terms: { type: 'string' },
      samples: { type: 'string' },
      root: { type: 'string' },
    },
  });
  const outcome = await webhookPatchBench({
    ...(values.tolerations ? { tolerations: Number(values.tolerations) } : {}),
    ...(values.terms ? { terms: Number(values.terms) } : {}),
    ...(values.samples ? { samples: Number(values.samples) } : {}),
    ...(values.root ? { root: values.root } : {}),
  });
  printTable(
    ['metric', 'value', 'target'],
    outcome.rows.map((r) => [r.metric, r.value, r.target]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
