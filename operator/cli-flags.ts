/**
 * The `spillway` command's flags and the pure decisions behind them (operator/cli.ts): which virtual nodes to run
 * with which capacity, what each provider is given, and how signals reach the graceful shutdown.
 */
import { parseArgs } from 'node:util';
import type { ProviderOptions } from './providers/index.ts';
import type { SignalSource } from './shared/shutdown.ts';
import {
  hostResources,
  loadVirtualNodes,
  localCapacityDefaults,
  parseCapacityFlag,
  type VirtualNodeEntry,
} from './virtualnode/config.ts';

/** The command's flags (node:util parseArgs). */
export const OPTIONS = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', default: process.env.SPILLWAY_NAMESPACE ?? 'spillway-system' },
  provider: { type: 'string', default: 'fake' },
  'node-name': { type: 'string' },
  'node-ip': { type: 'string', default: '127.0.0.1' },
  'kubelet-port': { type: 'string', default: '10250' },
  'kubelet-host': { type: 'string' },
  'webhook-port': { type: 'string' },
  'webhook-host': { type: 'string' },
  'tls-mode': { type: 'string', default: 'self-managed' },
  'metrics-port': { type: 'string', default: '8080' },
  'metrics-host': { type: 'string', default: '127.0.0.1' },
  'metrics-auth': { type: 'string', default: 'none' },
  'watch-namespaces': { type: 'string', default: '' },
  'approve-node-csrs': { type: 'string', default: '' },
  'node-bootstrap-user': { type: 'string' },
  config: { type: 'string' },
  'provider-config': { type: 'string' },
  coredns: { type: 'string' },
  capacity: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses the command line. */
export const parseFlags = (argv: string[]) =>
  parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
/** The parsed flags. */
export type Flags = ReturnType<typeof parseFlags>['values'];

/** The first port flag that is not a port number (0 allowed where it means "any" or "off"), as a message. */
export function portProblems(values: Flags): string | undefined {
  const checks: [string, string | undefined, number][] = [
    ['kubelet-port', values['kubelet-port'], 1],
    ['metrics-port', values['metrics-port'], 0],
    ['webhook-port', values['webhook-port'], 0],
  ];
  for (const [flag, text, min] of checks) {
    if (text === undefined) continue;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > 65535) return `--${flag} must be a port number, not "${text}"`;
  }
  return undefined;
}

/** The local provider's state directory of node `name` (its default; CoreDNS's files go there too). */
export const localStateDir = (name: string) => `/run/spillway/${name}`;

/**
 * The virtual nodes to run: the `--config` file's, or one from the flags. `--capacity` sets what a node's entry
 * leaves unset; a local node's remaining resources are the host's.
 */
export function virtualNodeEntries(values: Flags): VirtualNodeEntry[] {
  const entries: VirtualNodeEntry[] = values.config
    ? loadVirtualNodes(values.config, { internalIP: values['node-ip'], kubeletHost: values['kubelet-host'] })
    : [
        {
          provider: values.provider,
          config: {
            name: values['node-name'] ?? `spillway-virtual-${values.provider}`,
            internalIP: values['node-ip'],
            kubeletPort: Number(values['kubelet-port']),
            ...(values['kubelet-host'] ? { kubeletHost: values['kubelet-host'] } : {}),
          },
        },
      ];
  const flag = values.capacity ? parseCapacityFlag(values.capacity) : {};
  return entries.map((e) => {
    const host =
      e.provider === 'local' ? localCapacityDefaults(hostResources(localStateDir(e.config.name))) : {};
    const capacity = { ...host, ...flag, ...e.config.capacity };
    return Object.keys(capacity).length > 0 ? { ...e, config: { ...e.config, capacity } } : e;
  });
}

/** Where one node's provider configuration comes from (operator/providers/index.ts). */
export function providerOptions(entry: VirtualNodeEntry, values: Flags): ProviderOptions {
  const configFile = entry.providerConfig ?? values['provider-config'];
  return {
    nodeName: entry.config.name,
    ...(entry.config.podCIDR ? { podCIDR: entry.config.podCIDR } : {}),
    ...(configFile ? { configFile } : {}),
  };
}

/**
 * `process` as a signal source that delivers only the first SIGTERM. A process group's SIGTERM reaches `make
 * run`'s make and node together, and make forwards its own to node: that duplicate must not count as the
 * impatient second signal that skips the closers (leaving the webhook configurations behind). Ctrl-C twice still
 * does, as does SIGINT after SIGTERM.
 */
export function firstTermOnly(source: SignalSource): SignalSource {
  const wrapped = new Map<() => void, () => void>();
  return {
    on(signal, listener) {
      if (signal !== 'SIGTERM') return source.on(signal, listener);
      let seen = false;
      const once = () => {
        if (seen) return;
        seen = true;
        listener();
      };
      wrapped.set(listener, once);
      return source.on(signal, once);
    },
    off(signal, listener) {
      if (signal !== 'SIGTERM') return source.off(signal, listener);
      const once = wrapped.get(listener);
      wrapped.delete(listener);
      return once ? source.off(signal, once) : undefined;
    },
  };
}

/** `host:port`, with brackets around an IPv6 host. */
export const hostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;
