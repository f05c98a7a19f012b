import { describe, expect, it } from 'vitest';
import {
  cpuStats,
  memoryStats,
  podStatsFromCri,
  UsageSampler,
  type CriSandboxUsage,
  type CriUsageSample,
} from './stats.ts';

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
const cpu = (s: number, usageCoreNanoSeconds: number, usageNanoCores?: number): CriUsageSample => ({
  timestamp: at(s),
  usageCoreNanoSeconds,
  ...(usageNanoCores !== undefined && { usageNanoCores }),
});
const memory = (s: number, workingSetBytes: number): CriUsageSample => ({
  timestamp: at(s),
  workingSetBytes,
  usageBytes: workingSetBytes + 100,
  rssBytes: workingSetBytes - 100,
});

const started = at(0);
const sandbox = (s: number, pod: number, app: number): CriSandboxUsage => ({
  id: 'sb1',
  metadata: { name: 'web', uid: 'u1', namespace: 'default' },
  cpu: cpu(s, pod),
  memory: memory(s, 2000),
  network: { rxBytes: 10, txBytes: 20 },
  containers: [{ id: 'c1', name: 'app', cpu: cpu(s, app), memory: memory(s, 1500) }],
});

describe('cpuStats', () => {
  it.each([
    ['the runtime gives a rate', cpu(10, 5e9, 250e6), cpu(8, 4e9), 250e6],
    ['derived from two samples (0.5 s of CPU in 2 s)', cpu(10, 4.5e9, 0), cpu(8, 4e9), 250e6],
    ['no previous sample', cpu(10, 4.5e9, 0), undefined, 0],
    ['the counter went back (a new cgroup)', cpu(10, 1e9), cpu(8, 4e9), 0],
    ['the same sample again keeps its rate', cpu(8, 4e9), { ...cpu(8, 4e9), usageNanoCores: 7 }, 7],
  ])('%s', (_what, sample, previous, nanoCores) => {
    expect(cpuStats(sample, previous)).toEqual({
      usageNanoCores: nanoCores,
      usageCoreNanoSeconds: sample.usageCoreNanoSeconds,
    });
  });

  it('is undefined without a counter', () => {
    expect(cpuStats(undefined)).toBeUndefined();
    expect(cpuStats({ timestamp: at(1) })).toBeUndefined();
  });
});

describe('memoryStats', () => {
  it('maps the working set, usage and rss; undefined without a working set', () => {
    expect(memoryStats(memory(1, 1000))).toEqual({ workingSetBytes: 1000, usageBytes: 1100, rssBytes: 900 });
    expect(memoryStats({ timestamp: at(1), usageBytes: 5 })).toBeUndefined();
  });
});

describe('podStatsFromCri', () => {
  it('maps the sandbox and its containers, with start times the provider knows', () => {
    const stats = podStatsFromCri(sandbox(10, 3e9, 2e9), {
      sandbox: started,
      containers: { app: at(1) },
    });
    expect(stats).toEqual({
      key: { uid: 'u1', namespace: 'default', name: 'web' },
      time: at(10),
      startTime: started,
      cpu: { usageNanoCores: 0, usageCoreNanoSeconds: 3e9 },
      memory: { workingSetBytes: 2000, usageBytes: 2100, rssBytes: 1900 },
      network: { rxBytes: 10, txBytes: 20 },
      containers: [
        {
          name: 'app',
          startTime: at(1),
          cpu: { usageNanoCores: 0, usageCoreNanoSeconds: 2e9 },
          memory: { workingSetBytes: 1500, usageBytes: 1600, rssBytes: 1400 },
        },
      ],
    });
  });

  it('sums the containers when the runtime has no sandbox-level numbers, and omits what is unknown', () => {
    const stats = podStatsFromCri(
      {
        id: 'sb',
        metadata: { name: 'p', uid: 'u', namespace: 'ns' },
        containers: [
          { id: 'a', name: 'a', cpu: cpu(5, 1e9, 100), memory: memory(5, 1000) },
          { id: 'b', name: 'b', cpu: cpu(6, 2e9, 200), memory: memory(6, 3000) },
          { id: 'c', name: 'c' },
        ],
      },
      { sandbox: started },
    );
    expect(stats.cpu).toEqual({ usageNanoCores: 300, usageCoreNanoSeconds: 3e9 });
    expect(stats.memory).toEqual({ workingSetBytes: 4000, usageBytes: 4200, rssBytes: 3800 });
    expect(stats.network).toBeUndefined();
    expect(stats.time).toEqual(at(6));
    expect(stats.containers[2]).toEqual({ name: 'c', startTime: started });
  });
});

describe('UsageSampler', () => {
  it('derives CPU rates from the previous sample when containerd gives none', () => {
    const sampler = new UsageSampler();
    const first = sampler.podStats(sandbox(10, 3e9, 2e9), { sandbox: started });
    expect(first.cpu?.usageNanoCores).toBe(0);
    // 2 s later: the pod used 1 s of CPU (0.5 cores), the container 0.5 s (0.25 cores).
    const second = sampler.podStats(sandbox(12, 4e9, 2.5e9), { sandbox: started });
    expect(second.cpu?.usageNanoCores).toBe(500e6);
    expect(second.containers[0]?.cpu?.usageNanoCores).toBe(250e6);
    // A scrape that gets the same sample again reports the same rate, not 0.
    const again = sampler.podStats(sandbox(12, 4e9, 2.5e9), { sandbox: started });
    expect(again.cpu?.usageNanoCores).toBe(500e6);
  });

  it('derives a single container rate from ContainerStats samples', () => {
    const sampler = new UsageSampler();
    expect(sampler.containerCpu({ id: 'c', name: 'app', cpu: cpu(1, 1e9) })?.usageNanoCores).toBe(0);
    expect(sampler.containerCpu({ id: 'c', name: 'app', cpu: cpu(3, 3e9) })?.usageNanoCores).toBe(1e9);
  });

  it('summarises a listing, leaving out sandboxes without start times and forgetting those gone', () => {
    const sampler = new UsageSampler();
    const other: CriSandboxUsage = { ...sandbox(10, 1e9, 1e9), id: 'sb2', containers: [] };
    const all = sampler.summary([sandbox(10, 3e9, 2e9), other], (s) =>
      s.id === 'sb1' ? { sandbox: started } : undefined,
    );
    expect(all.map((p) => p.key.name)).toEqual(['web']);
    expect(sampler.size).toBe(3);
    sampler.summary([other], () => ({ sandbox: started }));
    expect(sampler.size).toBe(1);
  });
});
