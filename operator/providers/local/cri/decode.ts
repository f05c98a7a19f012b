/**
 * CRI v1 messages as @grpc/proto-loader decodes them (snake_case fields, int64s as decimal strings, enums as
 * their names) turned into the results of types.ts: missing fields get their proto defaults, nanosecond times
 * become `Date`s, and only the fields the provider reads are kept. Pure functions, used by client.ts.
 */
import type {
  Container,
  ContainerEvent,
  ContainerStatus,
  CriContainerStats,
  CriPodSandboxStats,
  CriUsage,
  PodSandbox,
  PodSandboxStatus,
} from './types.ts';

/**
 * A CRI message as @grpc/proto-loader builds it at run time from api.proto: no TypeScript types exist for it (the
 * proto is loaded, not compiled), so its fields are read untyped here, and only here and in the fake runtime that
 * plays containerd's side: every decoder in this file turns one into the typed results of ./types.ts, so nothing
 * untyped leaves the CRI folder.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- proto-loader messages are untyped (see above)
export type Raw = Record<string, any>;

/** An int64 as proto-loader gives it (a decimal string) to a number; nanoseconds since the epoch to a Date. */
export const num = (v: unknown): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
const nanosToDate = (v: unknown): Date | undefined => {
  if (v === undefined || v === null || v === '' || v === '0') return undefined;
  return new Date(Number(BigInt(String(v)) / 1_000_000n));
};

export const sandboxOf = (r: Raw): PodSandbox => ({
  id: r.id,
  metadata: {
    name: r.metadata?.name ?? '',
    uid: r.metadata?.uid ?? '',
    namespace: r.metadata?.namespace ?? '',
    attempt: num(r.metadata?.attempt),
  },
  state: r.state,
  createdAt: nanosToDate(r.created_at) ?? new Date(0),
  labels: r.labels ?? {},
  annotations: r.annotations ?? {},
});

export const sandboxStatusOf = (r: Raw): PodSandboxStatus => {
  const ips = [r.network?.ip, ...((r.network?.additional_ips ?? []) as Raw[]).map((p) => p.ip)].filter(
    (ip): ip is string => Boolean(ip),
  );
  return { ...sandboxOf(r), ips };
};

export const containerOf = (r: Raw): Container => ({
  id: r.id,
  podSandboxId: r.pod_sandbox_id,
  metadata: { name: r.metadata?.name ?? '', attempt: num(r.metadata?.attempt) },
  image: r.image?.image ?? '',
  imageRef: r.image_ref ?? '',
  state: r.state,
  createdAt: nanosToDate(r.created_at) ?? new Date(0),
  labels: r.labels ?? {},
  annotations: r.annotations ?? {},
});

export const containerStatusOf = (r: Raw): ContainerStatus => {
  const startedAt = nanosToDate(r.started_at);
  const finishedAt = nanosToDate(r.finished_at);
  return {
    id: r.id,
    metadata: { name: r.metadata?.name ?? '', attempt: num(r.metadata?.attempt) },
    state: r.state,
    createdAt: nanosToDate(r.created_at) ?? new Date(0),
    ...(startedAt ? { startedAt } : {}),
    ...(finishedAt ? { finishedAt } : {}),
    exitCode: num(r.exit_code),
    image: r.image?.image ?? '',
    imageRef: r.image_ref ?? '',
    reason: r.reason ?? '',
    message: r.message ?? '',
    labels: r.labels ?? {},
    annotations: r.annotations ?? {},
    logPath: r.log_path ?? '',
  };
};

const u64 = (v: Raw | undefined | null): number | undefined => (v ? num(v.value) : undefined);

const usageOf = (cpu: Raw | undefined, memory: Raw | undefined): { cpu?: CriUsage; memory?: CriUsage } => {
  const out: { cpu?: CriUsage; memory?: CriUsage } = {};
  if (cpu) {
    out.cpu = {
      timestamp: nanosToDate(cpu.timestamp) ?? new Date(),
      usageCoreNanoSeconds: u64(cpu.usage_core_nano_seconds),
      usageNanoCores: u64(cpu.usage_nano_cores),
    };
  }
  if (memory) {
    out.memory = {
      timestamp: nanosToDate(memory.timestamp) ?? new Date(),
      workingSetBytes: u64(memory.working_set_bytes),
      usageBytes: u64(memory.usage_bytes),
      rssBytes: u64(memory.rss_bytes),
    };
  }
  return out;
};

export const containerStatsOf = (r: Raw): CriContainerStats => ({
  id: r.attributes?.id ?? '',
  name: r.attributes?.metadata?.name ?? '',
  labels: r.attributes?.labels ?? {},
  ...usageOf(r.cpu, r.memory),
});

/** One entry of ListPodSandboxStats: the sandbox's usage, its network counters summed over interfaces, its containers. */
export const podSandboxStatsOf = (s: Raw): CriPodSandboxStats => {
  const linux: Raw = s.linux ?? {};
  const ifaces = (linux.network?.interfaces ?? []) as Raw[];
  const def: Raw | undefined = linux.network?.default_interface;
  const all = def ? [def, ...ifaces] : ifaces;
  const network =
    all.length > 0
      ? {
          rxBytes: all.reduce((a, i) => a + (u64(i.rx_bytes) ?? 0), 0),
          txBytes: all.reduce((a, i) => a + (u64(i.tx_bytes) ?? 0), 0),
        }
      : undefined;
  return {
    id: s.attributes?.id ?? '',
    metadata: sandboxOf({ metadata: s.attributes?.metadata }).metadata,
    labels: s.attributes?.labels ?? {},
    ...usageOf(linux.cpu, linux.memory),
    ...(network ? { network } : {}),
    containers: ((linux.containers ?? []) as Raw[]).map(containerStatsOf),
  };
};

/** One message of GetContainerEvents. */
export const containerEventOf = (r: Raw): ContainerEvent => ({
  containerId: r.container_id,
  type: r.container_event_type,
  createdAt: nanosToDate(r.created_at) ?? new Date(),
  ...(r.pod_sandbox_status ? { sandbox: sandboxStatusOf(r.pod_sandbox_status) } : {}),
  containers: ((r.containers_statuses ?? []) as Raw[]).map(containerStatusOf),
});
