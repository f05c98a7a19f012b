/**
 * The virtual node configuration file: one process can run several virtual nodes (for example a spot and an
 * on-demand node over the same provider account), each with its own name, kubelet port, labels and taints.
 *
 * ```yaml
 * nodes:
 * - name: spillway-virtual-spot
 *   provider: eci
 *   kubeletPort: 10250
 *   labels: {spillway.dev/capacity: spot}
 * - name: spillway-virtual-on-demand
 *   provider: eci
 *   kubeletPort: 10251
 *   capacity: {cpu: "2000", memory: 8Ti, pods: "2000", ephemeral-storage: 100Ti}
 * ```
 *
 * Capacity: what the node advertises to the scheduler (allocatable equals capacity). Each resource not
 * configured comes from the provider: for the local provider the host's (see {@link localCapacityDefaults}),
 * for ECI the provider configuration's `capacity` (docs/eci.md), for the fake one room for a 1000-pod burst.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import type { CapacityOverrides, VirtualNodeConfig } from './node.ts';

/** The resources a virtual node's capacity can set, by their Kubernetes names. */
export const CAPACITY_RESOURCES = ['cpu', 'memory', 'pods', 'ephemeral-storage'] as const;

// A Kubernetes quantity (k8s.io/apimachinery resource.Quantity): a decimal number and an optional suffix.
const QUANTITY = /^\d+(\.\d+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const quantity = z.string().regex(QUANTITY, 'must be a Kubernetes quantity such as 4, 500m, 8Gi or 100Ti');

/** The schema of a capacity: any of the resources, each a quantity (pods a whole number). */
export const Capacity = z.strictObject({
  cpu: quantity.optional(),
  memory: quantity.optional(),
  pods: z
    .string()
    .regex(/^[1-9]\d*$/, 'must be a whole number of pods such as 110')
    .optional(),
  'ephemeral-storage': quantity.optional(),
});

/**
 * Parses `--capacity cpu=4,memory=8Gi,pods=110,ephemeral-storage=100Gi`; throws one message naming every bad
 * entry.
 */
export function parseCapacityFlag(text: string): CapacityOverrides {
  const entries: Record<string, string> = {};
  const problems: string[] = [];
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      problems.push(`"${part}" is not resource=quantity`);
      continue;
    }
    entries[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const result = Capacity.safeParse(entries);
  if (!result.success) {
    for (const i of result.error.issues) {
      problems.push(
        i.code === 'unrecognized_keys'
          ? `unknown resource ${i.keys.join(', ')} (one of ${CAPACITY_RESOURCES.join(', ')})`
          : `${i.path.join('.')}: ${i.message}`,
      );
    }
  }
  if (problems.length > 0) throw new Error(`--capacity: ${problems.join('; ')}`);
  return result.data!;
}

/** The nearest existing directory at or above `path` (a state directory may not exist before the first run). */
function existingAncestor(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** What the host offers, for {@link localCapacityDefaults}; tests pass their own. */
export interface HostResources {
  /** CPUs this process may use (`nproc`). */
  cpus: number;
  /** MemTotal, bytes. */
  memoryBytes: number;
  /** Size of the file system holding the state directory, bytes. */
  diskBytes: number;
}

/** The host's resources as {@link localCapacityDefaults} reads them. */
export function hostResources(stateDir: string): HostResources {
  const fs = statfsSync(existingAncestor(stateDir));
  return { cpus: availableParallelism(), memoryBytes: totalmem(), diskBytes: fs.blocks * fs.bsize };
}

/** The kubelet's default `maxPods`, which the local provider advertises too. */
export const LOCAL_DEFAULT_PODS = '110';

/**
 * The local provider's default capacity: its sandboxes share this host, so the node advertises the host's CPUs
 * (`nproc`), memory (MemTotal), the kubelet's default of 110 pods and the size of the disk that holds the
 * sandboxes' state (`<stateDir>`).
 */
export function localCapacityDefaults(host: HostResources): Required<CapacityOverrides> {
  return {
    cpu: String(host.cpus),
    memory: `${Math.floor(host.memoryBytes / 1024)}Ki`,
    pods: LOCAL_DEFAULT_PODS,
    'ephemeral-storage': `${Math.floor(host.diskBytes / 1024)}Ki`,
  };
}

const Taint = z.strictObject({
  key: z.string().min(1),
  value: z.string().optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
});

const NodeEntry = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a node name is a DNS subdomain: lower case, digits, - and .'),
  provider: z.string().min(1),
  /** A provider configuration file for this node (eci), instead of --provider-config. */
  providerConfig: z.string().optional(),
  /** Default: `--node-ip` (in the chart, the pod's IP, which a file cannot know). */
  internalIP: z.string().optional(),
  kubeletPort: z.int().min(1).max(65535),
  podCIDR: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  taints: z.array(Taint).optional(),
  /** What the node advertises; unset resources come from the provider. */
  capacity: Capacity.optional(),
});

/** The file's schema; unknown keys are errors so that a typo does not silently do nothing. */
export const VirtualNodesFile = z
  .strictObject({ nodes: z.array(NodeEntry).min(1) })
  .refine((f) => new Set(f.nodes.map((n) => n.name)).size === f.nodes.length, {
    message: 'node names must be unique',
  })
  .refine(
    (f) => new Set(f.nodes.map((n) => `${n.internalIP ?? ''}:${n.kubeletPort}`)).size === f.nodes.length,
    {
      message: 'each node needs its own kubelet address (internalIP:kubeletPort)',
    },
  );

/** One node of the file: its provider name and its registration. */
export interface VirtualNodeEntry {
  provider: string;
  providerConfig?: string;
  config: VirtualNodeConfig;
}

/** What the command line adds to every node of the file. */
export interface VirtualNodeDefaults {
  /** The InternalIP of nodes that name none (`--node-ip`); default {@link internalIPFor}'s, else 127.0.0.1. */
  internalIP?: string;
  /** The InternalIP of a node that names none when `--node-ip` is not given, by provider (the local one's bridge). */
  internalIPFor?: (provider: string, podCIDR?: string) => string | undefined;
  /** The kubelet API's listen address (`--kubelet-host`); default the node's InternalIP. */
  kubeletHost?: string;
}

/** Parses a configuration file's text; throws one message listing every problem with its path. */
export function parseVirtualNodes(
  text: string,
  source = 'virtual node configuration',
  defaults: VirtualNodeDefaults = {},
): VirtualNodeEntry[] {
  const result = VirtualNodesFile.safeParse(parse(text));
  if (!result.success) {
    const problems = result.error.issues
      .map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`)
      .join('; ');
    throw new Error(`${source}: ${problems}`);
  }
  return result.data.nodes.map(({ provider, providerConfig, ...n }) => ({
    provider,
    ...(providerConfig ? { providerConfig } : {}),
    config: {
      name: n.name,
      internalIP:
        n.internalIP ?? defaults.internalIP ?? defaults.internalIPFor?.(provider, n.podCIDR) ?? '127.0.0.1',
      kubeletPort: n.kubeletPort,
      ...(defaults.kubeletHost ? { kubeletHost: defaults.kubeletHost } : {}),
      ...(n.podCIDR ? { podCIDR: n.podCIDR } : {}),
      ...(n.labels ? { labels: n.labels } : {}),
      ...(n.taints ? { taints: n.taints } : {}),
      ...(n.capacity ? { capacity: n.capacity } : {}),
    },
  }));
}

/** Reads and parses the file at `path`. */
export function loadVirtualNodes(path: string, defaults: VirtualNodeDefaults = {}): VirtualNodeEntry[] {
  return parseVirtualNodes(readFileSync(path, 'utf8'), path, defaults);
}
