/**
 * Resource usage of CRI sandboxes as the kubelet's summary API reports it (`stats()`/`statsSummary()` of the
 * provider contract): the CRI stats API (`ListPodSandboxStats`, `ContainerStats`) mapped to {@link PodStats}.
 *
 * CPU: the runtime reports the cumulative `usage_core_nano_seconds` and, when it keeps its own previous sample, the
 * current `usage_nano_cores`. containerd leaves the latter 0 where it has none (the first call, and some cgroup v1
 * hosts), so {@link UsageSampler} keeps each sandbox's and container's previous sample and derives the rate from
 * two samples, as the kubelet's CRI stats provider does with its cache. A first sample with no rate says 0.
 *
 * The mapping is pure ({@link podStatsFromCri}); the sampler is the only state. The input types are the samples the
 * CRI client gives (the wire types of ./types.ts) less the fields the mapping does not read.
 */
import type { ContainerStats, CpuStats, MemoryStats, PodStats } from '../../types.ts';
import type { CriContainerStats, CriPodSandboxStats, CriUsage, PodSandboxMetadata } from './types.ts';

/** One CPU or memory sample of the CRI stats API (the fields the summary API reports). */
export type CriUsageSample = CriUsage;

/** A container's sample (CRI `ContainerStats`); the mapping does not read its labels. */
export type CriContainerUsage = Omit<CriContainerStats, 'labels'>;

/** A sandbox's sample (CRI `PodSandboxStats` with its Linux part); the mapping reads neither labels nor attempt. */
export interface CriSandboxUsage extends Omit<CriPodSandboxStats, 'labels' | 'metadata' | 'containers'> {
  metadata: Omit<PodSandboxMetadata, 'attempt'>;
  containers: CriContainerUsage[];
}

/** What the stats API does not say and the provider knows: when things started. */
export interface StartTimes {
  /** When the sandbox was created (PodStats.startTime). */
  sandbox: Date;
  /** When each container (by name) started; a container not listed gets the sandbox's time. */
  containers?: Record<string, Date>;
}

/** The previous CPU samples, by sandbox or container id; what {@link podStatsFromCri} derives rates from. */
export type PreviousSamples = ReadonlyMap<string, CriUsageSample>;

/**
 * CPU stats of a sample: the runtime's own rate when it gives one, else the rate between `previous` and `sample`
 * (the previous rate when the runtime handed out the same sample again; 0 without a usable previous sample, or
 * when the counter went back: a new cgroup). Undefined without a counter.
 */
export function cpuStats(
  sample: CriUsageSample | undefined,
  previous?: CriUsageSample,
): CpuStats | undefined {
  if (sample?.usageCoreNanoSeconds === undefined) return undefined;
  const usageCoreNanoSeconds = sample.usageCoreNanoSeconds;
  let usageNanoCores = sample.usageNanoCores ?? 0;
  if (usageNanoCores === 0 && previous?.usageCoreNanoSeconds !== undefined) {
    const seconds = (sample.timestamp.getTime() - previous.timestamp.getTime()) / 1000;
    const used = usageCoreNanoSeconds - previous.usageCoreNanoSeconds;
    if (seconds > 0 && used >= 0) usageNanoCores = Math.round(used / seconds);
    else if (seconds === 0) usageNanoCores = previous.usageNanoCores ?? 0;
  }
  return { usageNanoCores, usageCoreNanoSeconds };
}

/** Memory stats of a sample; undefined without a working set (what metrics-server reads). */
export function memoryStats(sample: CriUsageSample | undefined): MemoryStats | undefined {
  if (sample?.workingSetBytes === undefined) return undefined;
  return {
    workingSetBytes: sample.workingSetBytes,
    ...(sample.usageBytes !== undefined && { usageBytes: sample.usageBytes }),
    ...(sample.rssBytes !== undefined && { rssBytes: sample.rssBytes }),
  };
}

/**
 * One sandbox's {@link PodStats}. Pod CPU and memory come from the sandbox's own cgroup when the runtime reports
 * it, else they are the sums over its containers (as the kubelet does). `time` is the newest sample's.
 */
export function podStatsFromCri(
  sandbox: CriSandboxUsage,
  started: StartTimes,
  previous: PreviousSamples = new Map(),
): PodStats {
  const containers: ContainerStats[] = sandbox.containers.map((c) => {
    const cpu = cpuStats(c.cpu, previous.get(c.id));
    const memory = memoryStats(c.memory);
    return {
      name: c.name,
      startTime: started.containers?.[c.name] ?? started.sandbox,
      ...(cpu && { cpu }),
      ...(memory && { memory }),
    };
  });
  const cpu = cpuStats(sandbox.cpu, previous.get(sandbox.id)) ?? sumCpu(containers);
  const memory = memoryStats(sandbox.memory) ?? sumMemory(containers);
  const times = [sandbox.cpu, sandbox.memory, ...sandbox.containers.flatMap((c) => [c.cpu, c.memory])]
    .filter((s): s is CriUsageSample => s !== undefined)
    .map((s) => s.timestamp.getTime());
  const { name, uid, namespace } = sandbox.metadata;
  return {
    key: { uid, namespace, name },
    time: times.length > 0 ? new Date(Math.max(...times)) : new Date(),
    startTime: started.sandbox,
    ...(cpu && { cpu }),
    ...(memory && { memory }),
    ...(sandbox.network && { network: { ...sandbox.network } }),
    containers,
  };
}

function sumCpu(containers: ContainerStats[]): CpuStats | undefined {
  const cpus = containers.flatMap((c) => (c.cpu ? [c.cpu] : []));
  if (cpus.length === 0) return undefined;
  return {
    usageNanoCores: cpus.reduce((a, c) => a + c.usageNanoCores, 0),
    usageCoreNanoSeconds: cpus.reduce((a, c) => a + c.usageCoreNanoSeconds, 0),
  };
}

function sumMemory(containers: ContainerStats[]): MemoryStats | undefined {
  const memories = containers.flatMap((c) => (c.memory ? [c.memory] : []));
  if (memories.length === 0) return undefined;
  const sum = (f: (m: MemoryStats) => number | undefined) => memories.reduce((a, m) => a + (f(m) ?? 0), 0);
  return {
    workingSetBytes: sum((m) => m.workingSetBytes),
    usageBytes: sum((m) => m.usageBytes),
    rssBytes: sum((m) => m.rssBytes),
  };
}

/**
 * Keeps the previous CPU sample of every sandbox and container it has seen, so that usage rates can be derived
 * when the runtime gives none. One per provider; not safe to share between runtimes (ids are the runtime's).
 */
export class UsageSampler {
  #previous = new Map<string, CriUsageSample>();

  /** The stats of one sandbox, remembering this sample for the next call. */
  podStats(sandbox: CriSandboxUsage, started: StartTimes): PodStats {
    const stats = podStatsFromCri(sandbox, started, this.#previous);
    this.#remember(sandbox);
    return stats;
  }

  /** The CPU stats of one container's sample (CRI `ContainerStats`), remembering it for the next call. */
  containerCpu(container: CriContainerUsage): CpuStats | undefined {
    const cpu = cpuStats(container.cpu, this.#previous.get(container.id));
    this.#keep(container.id, container.cpu);
    return cpu;
  }

  /**
   * The stats of every sandbox of a full listing (`ListPodSandboxStats`), forgetting the samples of sandboxes and
   * containers the listing no longer has. `started` gives each sandbox's start times; a sandbox it has none for
   * (being deleted) is left out.
   */
  summary(
    sandboxes: CriSandboxUsage[],
    started: (sandbox: CriSandboxUsage) => StartTimes | undefined,
  ): PodStats[] {
    const out: PodStats[] = [];
    const seen = new Set<string>();
    for (const sandbox of sandboxes) {
      seen.add(sandbox.id);
      for (const c of sandbox.containers) seen.add(c.id);
      const times = started(sandbox);
      if (times) out.push(this.podStats(sandbox, times));
      else this.#remember(sandbox);
    }
    for (const id of this.#previous.keys()) if (!seen.has(id)) this.#previous.delete(id);
    return out;
  }

  /** How many samples it holds (for tests and leak checks). */
  get size(): number {
    return this.#previous.size;
  }

  #remember(sandbox: CriSandboxUsage): void {
    this.#keep(sandbox.id, sandbox.cpu);
    for (const c of sandbox.containers) this.#keep(c.id, c.cpu);
  }

  /** Keeps a newer sample, with the rate it gave, so that the same sample handed out again gives the same rate. */
  #keep(id: string, cpu: CriUsageSample | undefined): void {
    if (cpu?.usageCoreNanoSeconds === undefined) return;
    const previous = this.#previous.get(id);
    if (previous && previous.timestamp.getTime() >= cpu.timestamp.getTime()) return;
    this.#previous.set(id, { ...cpu, usageNanoCores: cpuStats(cpu, previous)?.usageNanoCores ?? 0 });
  }
}
