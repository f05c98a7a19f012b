/** What each benchmark hands back to bench/run.ts for the summary table. */
export interface SummaryRow {
  benchmark: string;
  metric: string;
  value: string;
  target?: string;
  /** Measured against an anchor in the same run, e.g. `0.8× virtual-kubelet`. */
  vsAnchor?: string;
}

export interface BenchOutcome {
  name: string;
  rows: SummaryRow[];
  files: { json: string; svg: string };
}

/** `12.3 ms`-style formatting for the table. */
export const ms = (v: number | undefined | null, digits = 1) =>
  v === undefined || v === null || !Number.isFinite(v) ? '–' : `${v.toFixed(digits)} ms`;
export const sec = (v: number | undefined | null, digits = 2) =>
  v === undefined || v === null || !Number.isFinite(v) ? '–' : `${v.toFixed(digits)} s`;
