/**
 * What a process's memory is made of, for bench/memory.ts: RSS split into anonymous and file-backed pages from
 * /proc, and the V8 heap from the process's own /metrics (prom-client's default metrics, which spillway
 * registers): used (live objects plus garbage not yet collected), committed (what of the heap can be resident)
 * and external (Buffers and ArrayBuffers, outside the heap).
 */
import { readFileSync } from 'node:fs';
import { scrapeGauges } from './scrape.ts';
import { nowMs } from './stats.ts';

const HEAP_USED = 'nodejs_heap_size_used_bytes';
const HEAP_TOTAL = 'nodejs_heap_size_total_bytes';
const EXTERNAL = 'nodejs_external_memory_bytes';

/** One process's memory at one moment (MiB); null where its /metrics or /proc did not answer. */
export interface MemoryReading {
  rssMiB: number;
  /** Anonymous pages: the V8 heap, malloc, WebAssembly memories. */
  anonMiB: number | null;
  /** File-backed pages: the node binary and shared libraries, as far as they were touched. */
  fileMiB: number | null;
  heapUsedMiB: number | null;
  heapCommittedMiB: number | null;
  externalMiB: number | null;
}

const mib = (bytes: number | undefined) =>
  bytes === undefined ? null : Number((bytes / 2 ** 20).toFixed(1));

/** RSS and its parts from /proc/<pid>/status; undefined once the process is gone. */
function procMemory(pid: number): { rssMiB: number; anonMiB: number; fileMiB: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    const toMiB = (k: number) => Number((k / 1024).toFixed(1));
    return { rssMiB: toMiB(kib('VmRSS')), anonMiB: toMiB(kib('RssAnon')), fileMiB: toMiB(kib('RssFile')) };
  } catch {
    return undefined;
  }
}

/** Reads process `pid`'s memory now; `metricsUrl` is its Prometheus endpoint. */
export async function readMemory(pid: number, metricsUrl: string): Promise<MemoryReading> {
  const proc = procMemory(pid);
  const m = await scrapeGauges(metricsUrl, [HEAP_USED, HEAP_TOTAL, EXTERNAL]);
  return {
    rssMiB: proc?.rssMiB ?? Number.NaN,
    anonMiB: proc?.anonMiB ?? null,
    fileMiB: proc?.fileMiB ?? null,
    heapUsedMiB: mib(m?.[HEAP_USED]),
    heapCommittedMiB: mib(m?.[HEAP_TOTAL]),
    externalMiB: mib(m?.[EXTERNAL]),
  };
}

/** One line for the log. */
export function describeMemory(r: MemoryReading): string {
  return (
    `RSS ${r.rssMiB} MiB (anon ${r.anonMiB}, file ${r.fileMiB}); heap used ${r.heapUsedMiB} of ` +
    `${r.heapCommittedMiB} committed; external ${r.externalMiB}`
  );
}

/** Scrapes the V8 heap used from `metricsUrl` every `intervalMs` (for its peak); epoch ms and MiB. */
export class HeapSampler {
  readonly samples: [number, number][] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(metricsUrl: string, intervalMs = 2000) {
    this.#timer = setInterval(() => {
      void scrapeGauges(metricsUrl, [HEAP_USED]).then((m) => {
        const v = m?.[HEAP_USED];
        if (v !== undefined) this.samples.push([nowMs(), v / 2 ** 20]);
      });
    }, intervalMs);
    this.#timer.unref();
  }

  /** The largest sample up to `untilMs`, MiB; null without samples. */
  peak(untilMs: number): number | null {
    const inside = this.samples.filter(([at]) => at <= untilMs).map(([, v]) => v);
    return inside.length ? Number(Math.max(...inside).toFixed(1)) : null;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
