/**
 * ECI monitoring data (DescribeMultiContainerGroupMetric) → the kubelet summary numbers metrics-server reads.
 * ECI samples about once a minute; the newest record is reported.
 */
import type { ContainerStats, PodStats, SandboxKey } from '../types.ts';
import type { GroupMetrics } from './client.ts';
import { KUBE_PROXY_CONTAINER } from './mapping.ts';

interface RawCpu {
  usageNanoCores?: number;
  usageCoreNanoSeconds?: number;
}
interface RawMemory {
  workingSet?: number;
  usageBytes?: number;
  rss?: number;
}

const cpu = (c: RawCpu | undefined) =>
  c && { usageNanoCores: c.usageNanoCores ?? 0, usageCoreNanoSeconds: c.usageCoreNanoSeconds ?? 0 };
const memory = (m: RawMemory | undefined) =>
  m && {
    workingSetBytes: m.workingSet ?? 0,
    ...(m.usageBytes !== undefined && { usageBytes: m.usageBytes }),
    ...(m.rss !== undefined && { rssBytes: m.rss }),
  };

/** The newest sample of one group as PodStats; the kube-proxy sidecar's usage counts for the pod only. */
export function metricsToStats(key: SandboxKey, data: GroupMetrics | undefined, startTime: Date): PodStats {
  const record = data?.records?.at(-1);
  const time = record?.timestamp ? new Date(record.timestamp) : new Date();
  const interfaces = record?.network?.interfaces ?? [];
  const containers: ContainerStats[] = (record?.containers ?? [])
    .filter((c) => c.name !== KUBE_PROXY_CONTAINER)
    .map((c) => ({
      name: c.name ?? '',
      startTime,
      ...(c.CPU && { cpu: cpu(c.CPU) }),
      ...(c.memory && { memory: memory(c.memory) }),
    }));
  return {
    key,
    time,
    startTime,
    ...(record?.CPU && { cpu: cpu(record.CPU) }),
    ...(record?.memory && { memory: memory(record.memory) }),
    ...(interfaces.length > 0 && {
      network: {
        rxBytes: interfaces.reduce((n, i) => n + (i.rxBytes ?? 0), 0),
        txBytes: interfaces.reduce((n, i) => n + (i.txBytes ?? 0), 0),
      },
    }),
    containers,
  };
}
