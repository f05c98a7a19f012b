/** Reads a child entry's workqueue metrics (bench/entries/control.ts) into a per-queue summary. */
import { readFileSync } from 'node:fs';
import type { Child } from './process.ts';

/** One workqueue's counts since the process started. */
export interface QueueStats {
  /** Keys added, before deduplication. */
  adds: number;
  /** Reconciles run. */
  reconciles: number;
  /** Mean reconcile duration (ms). */
  meanReconcileMs: number;
  /** Rate-limited re-adds after errors. */
  retries: number;
}

interface MetricJSON {
  name: string;
  values: { value: number; labels: Record<string, string>; metricName?: string }[];
}

/** Asks `child` for its metrics and summarises every `spillway_workqueue_*` queue. */
export async function queueStats(child: Child, file: string): Promise<Record<string, QueueStats>> {
  const from = child.lineCount;
  child.send(`metrics ${file}`);
  await child.waitForLine(/^METRICS$/, 30_000, from);
  const metrics = JSON.parse(readFileSync(file, 'utf8')) as MetricJSON[];
  const out: Record<string, QueueStats> = {};
  const get = (q: string) => (out[q] ??= { adds: 0, reconciles: 0, meanReconcileMs: 0, retries: 0 });
  let sums: Record<string, number> = {};
  for (const m of metrics) {
    for (const v of m.values) {
      const q = v.labels.name;
      if (!q) continue;
      if (m.name === 'spillway_workqueue_adds_total') get(q).adds = v.value;
      if (m.name === 'spillway_workqueue_retries_total') get(q).retries = v.value;
      if (m.name === 'spillway_workqueue_work_duration_seconds') {
        if (v.metricName?.endsWith('_count')) get(q).reconciles = v.value;
        if (v.metricName?.endsWith('_sum')) sums = { ...sums, [q]: v.value };
      }
    }
  }
  for (const [q, s] of Object.entries(out)) {
    s.meanReconcileMs = s.reconciles ? Number((((sums[q] ?? 0) / s.reconciles) * 1000).toFixed(1)) : 0;
  }
  return out;
}
