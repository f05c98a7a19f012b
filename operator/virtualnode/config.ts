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
 * ```
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import type { VirtualNodeConfig } from './node.ts';

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
  /** The InternalIP of nodes that name none (`--node-ip`); default 127.0.0.1. */
  internalIP?: string;
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
      internalIP: n.internalIP ?? defaults.internalIP ?? '127.0.0.1',
      kubeletPort: n.kubeletPort,
      ...(defaults.kubeletHost ? { kubeletHost: defaults.kubeletHost } : {}),
      ...(n.podCIDR ? { podCIDR: n.podCIDR } : {}),
      ...(n.labels ? { labels: n.labels } : {}),
      ...(n.taints ? { taints: n.taints } : {}),
    },
  }));
}

/** Reads and parses the file at `path`. */
export function loadVirtualNodes(path: string, defaults: VirtualNodeDefaults = {}): VirtualNodeEntry[] {
  return parseVirtualNodes(readFileSync(path, 'utf8'), path, defaults);
}
