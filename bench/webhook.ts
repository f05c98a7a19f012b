/**
 * Webhook benchmark (issue 4, docs/architecture.md#performance-targets): realistic pod AdmissionReviews POSTed over HTTPS on loopback at
 * fixed rates by vegeta (an open-model load generator: requests go out on schedule whether or not earlier ones
 * were answered, so a slow server shows up as latency rather than as a politely lower rate). The webhook server
 * runs alone in a child process so that its RSS and CPU can be read.
 *
 * Each pod goes to both webhooks the apiserver calls on a pod CREATE (mutate-pods, then validate-pods), with
 * `spillway.dev/burst: overflow` and `always` pods alternating.
 *
 *   node bench/webhook.ts [--rates 200,1000,2000] [--duration 10]
 *
 * Target: p99 ≤ 5 ms at 1000/s. Anchor (quoted, not measured): Kyverno 35–43 ms average.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ms, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { deploymentPod, podCreateReview } from './lib/admission-fixtures.ts';
import { barChart, cdf, lineChart, stack } from './lib/plot.ts';
import { Child, NODE, ProcSampler } from './lib/process.ts';
import {
  benchDir,
  environment,
  logFile,
  printTable,
  repoRoot,
  resultsDir,
  writeResult,
} from './lib/results.ts';
import { nowMs, summarize } from './lib/stats.ts';

const NAME = 'webhook';
const TARGET_P99_MS = 5;
const KYVERNO_AVG_MS = [35, 43];

/** vegeta's `report -type=json` (latencies in ns). */
interface VegetaReport {
  latencies: Record<'total' | 'mean' | '50th' | '90th' | '95th' | '99th' | 'max' | 'min', number>;
  requests: number;
  rate: number;
  throughput: number;
  success: number;
  status_codes: Record<string, number>;
  errors: string[] | null;
}

export interface WebhookBenchOptions {
  rates?: number[];
  durationSeconds?: number;
  warmupSeconds?: number;
}

function vegetaBin(): string {
  const bin = join(process.env.SPILLWAY_BIN ?? join(repoRoot, 'bin'), 'vegeta');
  try {
    execFileSync(bin, ['-version'], { stdio: 'ignore' });
  } catch {
    throw new Error(`${bin} is missing: run \`hack/build-tools.sh vegeta\` (make bench does)`);
  }
  return bin;
}

/** vegeta targets (JSON lines): every pod once to each webhook path, burst modes alternating. */
function writeTargets(file: string, port: number, pods = 8): void {
  const lines: string[] = [];
  for (let i = 0; i < pods; i++) {
    const burst = i % 2 === 0 ? 'overflow' : 'always';
    const ns = `team-${i}`;
    for (const path of ['/mutate-pods', '/validate-pods']) {
      const body = JSON.stringify(podCreateReview(deploymentPod(i, burst, ns), ns));
      lines.push(
        JSON.stringify({
          method: 'POST',
          url: `https://127.0.0.1:${port}${path}`,
          body: Buffer.from(body).toString('base64'),
          header: { 'Content-Type': ['application/json'] },
        }),
      );
    }
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** Runs one attack; asynchronous so that the RSS/CPU sampler keeps ticking meanwhile. */
async function attack(
  vegeta: string,
  o: { targets: string; ca: string; rate: number; seconds: number; out: string },
): Promise<void> {
  await promisify(execFile)(
    vegeta,
    [
      'attack',
      '-format=json',
      `-targets=${o.targets}`,
      `-root-certs=${o.ca}`,
      `-rate=${o.rate}/1s`,
      `-duration=${o.seconds}s`,
      '-timeout=10s',
      // Like the apiserver: HTTP/1.1 keep-alive connections (the server offers http/1.1 only).
      '-http2=false',
      '-keepalive=true',
      `-output=${o.out}`,
    ],
    { maxBuffer: 1 << 20 },
  );
}

function report(vegeta: string, file: string): VegetaReport {
  return JSON.parse(execFileSync(vegeta, ['report', '-type=json', file]).toString()) as VegetaReport;
}

/** Per-request latencies (ms) from vegeta's CSV encoding: timestamp,code,latency_ns,... */
function latencies(vegeta: string, file: string): number[] {
  const csv = execFileSync(vegeta, ['encode', '-to=csv', file], { maxBuffer: 1 << 30 }).toString();
  return csv
    .split('\n')
    .filter(Boolean)
    .map((line) => Number(line.split(',')[2]) / 1e6);
}

const nsToMs = (ns: number) => Number((ns / 1e6).toFixed(3));

export async function webhookBench(opts: WebhookBenchOptions = {}): Promise<BenchOutcome> {
  const rates = opts.rates ?? [200, 1000, 2000];
  const seconds = opts.durationSeconds ?? 10;
  const warmup = opts.warmupSeconds ?? 3;
  const vegeta = vegetaBin();
  const tmp = join(resultsDir, 'tmp', NAME);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const env = environment();

  const caFile = join(tmp, 'ca.pem');
  const server = new Child(NAME, NODE, [join(benchDir, 'entries/webhook-server.ts'), caFile], {
    logFile: logFile(NAME, 'server'),
  });
  const runs: Record<string, unknown>[] = [];
  const cdfs: { name: string; points: [number, number][] }[] = [];
  try {
    const ready = await server.waitForLine(/^READY /, 60_000);
    const { port } = JSON.parse(ready.slice('READY '.length)) as { port: number };
    const targets = join(tmp, 'targets.jsonl');
    writeTargets(targets, port);
    const sampler = new ProcSampler(server.pid, 100);
    const idleRss = sampler.sample()?.rssMiB;

    console.log(`  webhook: warm-up ${warmup} s at 200/s`);
    await attack(vegeta, { targets, ca: caFile, rate: 200, seconds: warmup, out: join(tmp, 'warmup.bin') });

    for (const rate of rates) {
      const out = join(tmp, `rate-${rate}.bin`);
      const from = nowMs();
      await attack(vegeta, { targets, ca: caFile, rate, seconds, out });
      const to = nowMs();
      const r = report(vegeta, out);
      const proc = sampler.window(from, to);
      const lat = latencies(vegeta, out);
      cdfs.push({ name: `${rate}/s`, points: cdf(lat) });
      const run = {
        rate,
        durationSeconds: seconds,
        requests: r.requests,
        achievedRate: Number(r.rate.toFixed(1)),
        throughput: Number(r.throughput.toFixed(1)),
        success: r.success,
        statusCodes: r.status_codes,
        errors: r.errors?.slice(0, 5) ?? [],
        latencyMs: {
          mean: nsToMs(r.latencies.mean),
          p50: nsToMs(r.latencies['50th']),
          p90: nsToMs(r.latencies['90th']),
          p95: nsToMs(r.latencies['95th']),
          p99: nsToMs(r.latencies['99th']),
          max: nsToMs(r.latencies.max),
        },
        latencyCheckMs: summarize(lat, 3),
        server: { peakRssMiB: proc.peakRssMiB, cpuSeconds: proc.cpuSeconds, avgCores: proc.avgCores },
      };
      runs.push(run);
      console.log(
        `  webhook: ${rate}/s → achieved ${run.achievedRate}/s, p50 ${run.latencyMs.p50} ms, ` +
          `p99 ${run.latencyMs.p99} ms, max ${run.latencyMs.max} ms, success ${r.success}, ` +
          `RSS ${proc.peakRssMiB} MiB, ${proc.avgCores} cores`,
      );
    }
    sampler.stop();

    const at1000 = runs.find((r) => r.rate === 1000) as
      { latencyMs: { p99: number; mean: number } } | undefined;
    const result = {
      benchmark: NAME,
      description:
        'Pod AdmissionReviews (Deployment-made pods, ~20 env vars, affinities, burst overflow|always) POSTed ' +
        'over HTTPS on loopback at fixed rates by vegeta; server in its own process.',
      environment: env,
      caveat:
        'Load generator, server and (in make bench) nothing else share the same cores; on a machine shared with ' +
        'other work, latency tails are inflated by scheduling noise.',
      target: {
        rate: 1000,
        p99Ms: TARGET_P99_MS,
        met: at1000 ? at1000.latencyMs.p99 <= TARGET_P99_MS : null,
      },
      anchor: {
        name: 'Kyverno average admission latency (quoted, not measured here)',
        averageMs: KYVERNO_AVG_MS,
        ratioOfOurMeanAt1000: at1000
          ? Number((at1000.latencyMs.mean / ((KYVERNO_AVG_MS[0]! + KYVERNO_AVG_MS[1]!) / 2)).toFixed(3))
          : null,
      },
      serverIdleRssMiB: idleRss,
      runs,
    };
    const svg = stack([
      barChart({
        title: 'Webhook latency by offered rate (HTTPS, loopback)',
        yLabel: 'latency (ms)',
        categories: runs.map((r) => `${r.rate}/s`),
        series: (['p50', 'p90', 'p99', 'max'] as const).map((k) => ({
          name: k,
          values: runs.map((r) => (r.latencyMs as Record<string, number>)[k]!),
        })),
        refs: [{ y: TARGET_P99_MS, label: 'target p99 5 ms' }],
      }),
      lineChart({
        title: 'Latency CDF per offered rate',
        xLabel: 'latency (ms)',
        yLabel: 'requests ≤ latency (%)',
        series: cdfs,
      }),
    ]);
    const files = writeResult(NAME, result, svg);
    const rows: SummaryRow[] = runs.map((r) => {
      const l = r.latencyMs as Record<string, number>;
      return {
        benchmark: NAME,
        metric: `${r.rate}/s: achieved ${r.achievedRate}/s, p50 / p99 / max`,
        value: `${ms(l.p50, 2)} / ${ms(l.p99, 2)} / ${ms(l.max, 1)}`,
        ...(r.rate === 1000 ? { target: `p99 ≤ ${TARGET_P99_MS} ms` } : {}),
        vsAnchor: `mean ${ms(l.mean, 2)} vs Kyverno 35–43 ms (quoted)`,
      };
    });
    const maxRss = Math.max(...runs.map((r) => (r.server as { peakRssMiB: number }).peakRssMiB));
    rows.push({ benchmark: NAME, metric: 'server peak RSS', value: `${maxRss} MiB` });
    return { name: NAME, rows, files };
  } finally {
    await server.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { rates: { type: 'string' }, duration: { type: 'string' } },
  });
  const outcome = await webhookBench({
    ...(values.rates ? { rates: values.rates.split(',').map(Number) } : {}),
    ...(values.duration ? { durationSeconds: Number(values.duration) } : {}),
  });
  printTable(
    ['metric', 'value', 'target', 'vs anchor'],
    outcome.rows.map((r) => [r.metric, r.value, r.target, r.vsAnchor]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
