/** Where results go: `bench/results/<name>.json` and `<name>.svg`, plus child-process logs (gitignored). */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = resolve(fileURLToPath(import.meta.url), '../..');
export const repoRoot = resolve(benchDir, '..');
export const resultsDir = process.env.BENCH_RESULTS_DIR ?? join(benchDir, 'results');

/** A log file for a child process of benchmark `name` (`bench/results/<name>.<what>.log`). */
export function logFile(name: string, what: string): string {
  mkdirSync(resultsDir, { recursive: true });
  return join(resultsDir, `${name}.${what}.log`);
}

/** The machine and code a result was measured on, so that numbers are never read without their context. */
export function environment(): Record<string, unknown> {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot }).toString().trim();
    dirty = execFileSync('git', ['status', '--porcelain'], { cwd: repoRoot }).toString().trim() !== '';
  } catch {
    /* not a git checkout */
  }
  return {
    date: new Date().toISOString(),
    commit,
    dirty,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
    apiClientConnections: 'one connection pool per kubeconfig (operator/shared/client.ts shareConnections)',
  };
}

/** Writes `<name>.json` (pretty) and `<name>.svg`; returns their paths. */
export function writeResult(name: string, result: object, svg: string): { json: string; svg: string } {
  mkdirSync(resultsDir, { recursive: true });
  const base = name;
  const paths = { json: join(resultsDir, `${base}.json`), svg: join(resultsDir, `${base}.svg`) };
  writeFileSync(paths.json, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(paths.svg, svg);
  return paths;
}

/** Prints rows as an aligned plain-text table. */
export function printTable(headers: string[], rows: (string | number | null | undefined)[][]): void {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '–' : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(cells[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}
