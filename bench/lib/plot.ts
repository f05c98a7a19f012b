/**
 * A small SVG plotter for the benchmark results: line charts (time series, CDFs) and grouped bar charts, with
 * horizontal target lines. No dependencies; the output opens in any browser and renders on GitHub.
 */

/** One line of a line chart. */
export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
}

/** A horizontal reference line, e.g. a target from docs/architecture.md#performance-targets. */
export interface RefLine {
  y: number;
  label: string;
}

const W = 760;
const H = 420;
const M = { top: 48, right: 190, bottom: 56, left: 72 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** About five round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push(Number(t.toPrecision(12)));
  return out;
}

const fmt = (v: number) =>
  Math.abs(v) >= 1000 ? `${Number((v / 1000).toPrecision(3))}k` : `${Number(v.toPrecision(3))}`;

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${M.left + (W - M.left - M.right) / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${M.top + (H - M.top - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function axes(
  xs: number[],
  ys: number[],
  x: (v: number) => number,
  y: (v: number) => number,
  xTickLabels?: string[],
): string[] {
  const out = [
    `<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="black"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" stroke="black"/>`,
  ];
  for (const t of ys) {
    out.push(
      `<line x1="${M.left}" y1="${y(t)}" x2="${W - M.right}" y2="${y(t)}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`,
    );
  }
  xs.forEach((t, i) =>
    out.push(
      `<text x="${x(t)}" y="${H - M.bottom + 16}" text-anchor="middle">${esc(xTickLabels?.[i] ?? fmt(t))}</text>`,
    ),
  );
  return out;
}

function legend(names: string[], refs: RefLine[]): string[] {
  const out: string[] = [];
  names.forEach((n, i) => {
    const ly = M.top + 8 + i * 18;
    out.push(
      `<rect x="${W - M.right + 14}" y="${ly - 9}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${W - M.right + 32}" y="${ly + 1}">${esc(n)}</text>`,
    );
  });
  refs.forEach((r, i) => {
    const ly = M.top + 8 + (names.length + i) * 18;
    out.push(
      `<line x1="${W - M.right + 12}" y1="${ly - 3}" x2="${W - M.right + 28}" y2="${ly - 3}" stroke="#555" stroke-dasharray="5 3"/>`,
      `<text x="${W - M.right + 32}" y="${ly + 1}">${esc(r.label)}</text>`,
    );
  });
  return out;
}

function refLines(refs: RefLine[], y: (v: number) => number, yMax: number): string[] {
  return refs
    .filter((r) => r.y <= yMax)
    .map(
      (r) =>
        `<line x1="${M.left}" y1="${y(r.y)}" x2="${W - M.right}" y2="${y(r.y)}" stroke="#555" stroke-dasharray="5 3"/>`,
    );
}

/** A line chart; the y axis starts at 0 and reaches the largest value or reference line. */
export function lineChart(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  refs?: RefLine[];
}): string {
  const refs = o.refs ?? [];
  const all = o.series.flatMap((s) => s.points);
  const xMin = Math.min(0, ...all.map((p) => p[0]));
  const xMax = Math.max(xMin + 1e-9, ...all.map((p) => p[0]));
  const yMax = Math.max(1e-9, ...all.map((p) => p[1]), ...refs.map((r) => r.y)) * 1.05;
  const x = (v: number) => M.left + ((v - xMin) / (xMax - xMin)) * (W - M.left - M.right);
  const y = (v: number) => H - M.bottom - (v / yMax) * (H - M.top - M.bottom);
  const body = [...axes(ticks(xMin, xMax), ticks(0, yMax), x, y), ...refLines(refs, y, yMax)];
  o.series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    body.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.8"/>`);
  });
  body.push(
    ...legend(
      o.series.map((s) => s.name),
      refs,
    ),
  );
  return frame(o.title, o.xLabel, o.yLabel, body);
}

/** A grouped bar chart: one group per category, one bar per series; values are printed above the bars. */
export function barChart(o: {
  title: string;
  yLabel: string;
  categories: string[];
  series: { name: string; values: (number | null)[] }[];
  refs?: RefLine[];
}): string {
  const refs = o.refs ?? [];
  const vals = o.series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const yMax = Math.max(1e-9, ...vals, ...refs.map((r) => r.y)) * 1.12;
  const plotW = W - M.left - M.right;
  const groupW = plotW / Math.max(1, o.categories.length);
  const barW = (groupW * 0.75) / Math.max(1, o.series.length);
  const y = (v: number) => H - M.bottom - (v / yMax) * (H - M.top - M.bottom);
  const cx = (i: number) => M.left + groupW * (i + 0.5);
  const body = [
    ...axes(
      o.categories.map((_, i) => i),
      ticks(0, yMax),
      cx,
      y,
      o.categories,
    ),
  ];
  o.series.forEach((s, si) => {
    s.values.forEach((v, ci) => {
      if (v === null || !Number.isFinite(v)) return;
      const bx = cx(ci) - (barW * o.series.length) / 2 + si * barW;
      body.push(
        `<rect x="${bx.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(H - M.bottom - y(v)).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"/>`,
        `<text x="${(bx + barW / 2).toFixed(1)}" y="${(y(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${fmt(v)}</text>`,
      );
    });
  });
  body.push(
    ...refLines(refs, y, yMax),
    ...legend(
      o.series.map((s) => s.name),
      refs,
    ),
  );
  return frame(o.title, '', o.yLabel, body);
}

/** Several charts stacked vertically in one SVG (one file per benchmark). */
export function stack(charts: string[]): string {
  const inner = charts.map((svg, i) =>
    svg.replace(/^<svg [^>]*>/, `<g transform="translate(0 ${i * H})">`).replace(/<\/svg>\s*$/, '</g>'),
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * charts.length}" viewBox="0 0 ${W} ${H * charts.length}" font-family="sans-serif" font-size="12">`,
    ...inner,
    '</svg>',
    '',
  ].join('\n');
}

/** The empirical CDF of `values` as points (value, percent ≤ value), thinned to at most `maxPoints`. */
export function cdf(values: readonly number[], maxPoints = 400): [number, number][] {
  const sorted = [...values].sort((a, b) => a - b);
  const step = Math.max(1, Math.floor(sorted.length / maxPoints));
  const out: [number, number][] = [];
  for (let i = 0; i < sorted.length; i += step) out.push([sorted[i]!, ((i + 1) / sorted.length) * 100]);
  if (sorted.length) out.push([sorted.at(-1)!, 100]);
  return out;
}
