/** Reads values from a Prometheus text endpoint (a process's own /metrics), for the benchmarks. */

/**
 * The value of the first unlabelled sample of each of `metrics` at `url` (missing ones are left out), or null
 * when the endpoint does not answer.
 */
export async function scrapeGauges(
  url: string,
  metrics: readonly string[],
): Promise<Record<string, number> | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    const text = await res.text();
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const space = line.indexOf(' ');
      const name = line.slice(0, space);
      if (space > 0 && metrics.includes(name) && !(name in out)) {
        const value = Number(line.slice(space + 1).split(' ')[0]);
        if (Number.isFinite(value)) out[name] = value;
      }
    }
    return out;
  } catch {
    return null;
  }
}
