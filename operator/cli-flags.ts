/**
 * The `spillway` command's flags and the pure decisions behind them (operator/cli.ts): which virtual nodes to run
 * with which capacity, what each provider is given, and how signals reach the graceful shutdown.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nodePodCIDR, validateProvider, type ProviderOptions } from './providers/index.ts';
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
  'node-ip': { type: 'string' },
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
  'cri-endpoint': { type: 'string' },
  'runtime-handler': { type: 'string' },
  capacity: { type: 'string' },
  workers: { type: 'string' },
  'capacity-cooldown': { type: 'string' },
  'pod-workers': { type: 'string' },
  'max-create-attempts': { type: 'string' },
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

/**
 * A node's InternalIP when neither its entry nor `--node-ip` names one: a local node's is its sandbox bridge's
 * address (the pod CIDR's first), where its kubelet API then listens, so that the apiserver (which refuses to
 * proxy to loopback) and pods such as metrics-server reach it; other providers' default to 127.0.0.1.
 */
export function defaultInternalIP(provider: string, podCIDR?: string): string | undefined {
  const cidr = provider === 'local' ? nodePodCIDR(provider, podCIDR) : undefined;
  if (!cidr) return undefined;
  // The first address of an IPv4 CIDR (its network address is x.y.z.0 for the /16-/30 the provider accepts).
  const octets = cidr.split('/')[0]!.split('.').map(Number);
  octets[3] = octets[3]! + 1;
  return octets.join('.');
}

/** The local provider's state directory of node `name` (its default; CoreDNS's files go there too). */
export const localStateDir = (name: string) => `/run/spillway/${name}`;

/**
 * The virtual nodes to run: the `--config` file's, or one from the flags. `--capacity` sets what a node's entry
 * leaves unset; a local node's remaining resources are the host's.
 */
export function virtualNodeEntries(values: Flags): VirtualNodeEntry[] {
  const entries: VirtualNodeEntry[] = values.config
    ? loadVirtualNodes(values.config, {
        ...(values['node-ip'] ? { internalIP: values['node-ip'] } : {}),
        internalIPFor: defaultInternalIP,
        kubeletHost: values['kubelet-host'],
      })
    : [
        {
          provider: values.provider,
          config: {
            name: values['node-name'] ?? `spillway-virtual-${values.provider}`,
            internalIP: values['node-ip'] ?? defaultInternalIP(values.provider) ?? '127.0.0.1',
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
  // The local provider reads its runtime flags where it reads their environment variables (local/factory.ts).
  const local = entry.provider === 'local' && (values['cri-endpoint'] || values['runtime-handler']);
  return {
    nodeName: entry.config.name,
    ...(entry.config.podCIDR ? { podCIDR: entry.config.podCIDR } : {}),
    ...(configFile ? { configFile } : {}),
    ...(local
      ? {
          env: {
            ...process.env,
            ...(values['cri-endpoint'] ? { SPILLWAY_CRI_ENDPOINT: values['cri-endpoint'] } : {}),
            ...(values['runtime-handler'] ? { SPILLWAY_RUNTIME_HANDLER: values['runtime-handler'] } : {}),
          },
        }
      : {}),
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

/** A command line the user must change: exit code 2, the message says what to change. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The commands that run against a cluster. */
export type ClusterCommand = 'run' | 'controller' | 'virtual-node';
/** Whether `command` is one of them. */
export const isClusterCommand = (command: string): command is ClusterCommand =>
  command === 'run' || command === 'controller' || command === 'virtual-node';

/** The Prometheus endpoint (`--metrics-*`). */
export interface MetricsOptions {
  /** 0: no metrics server. */
  port: number;
  host: string;
  auth: 'none' | 'kubernetes';
}

/** The admission webhook server (`--webhook-*`, `--tls-mode`). */
export interface WebhookOptions {
  host: string;
  /** Absent: any free port in run, 9443 in controller (the server's default). */
  port?: number;
  tlsMode: 'self-managed' | 'external';
}

/** The ElasticWorkload controller and the node certificate approver, run by the Lease holder. */
export interface ControllerOptions {
  /** Reconcile only in these namespaces; empty: every namespace. */
  watchNamespaces: string[];
  /** Approve node client certificates of these virtual nodes (run adds its own). */
  approveNodeCsrs: string[];
  /** The user node certificate requests must come from (run adds its own user). */
  nodeBootstrapUser?: string;
  /** Concurrent reconciles (`--workers`); absent: the controller's default (16). */
  workers?: number;
  /** Spot fallback cooldown (`--capacity-cooldown`); absent: the controller's default (300 s). */
  capacityCooldownSeconds?: number;
}

/** One virtual node to run: its Node configuration and where its provider's configuration comes from. */
export interface NodeToRun {
  provider: string;
  /** The node's configuration, its pod CIDR defaulted by its provider. */
  config: VirtualNodeEntry['config'];
  providerOptions: ProviderOptions;
}

/** The virtual nodes' pod controllers. */
export interface PodTuning {
  /** Concurrent pod syncs per node (`--pod-workers`); absent: the pod controller's default (32). */
  workers?: number;
  /** Create attempts before a pod fails (`--max-create-attempts`); absent: the default (5). */
  maxCreateAttempts?: number;
}

interface CommonOptions {
  /** `--kubeconfig`; absent: $KUBECONFIG, in-cluster, ~/.kube/config. */
  kubeconfig?: string;
  namespace: string;
  metrics: MetricsOptions;
}

/** `spillway run`: CRD, webhooks (dev mode), the controller under leader election and the virtual nodes. */
export interface RunOptions extends CommonOptions {
  command: 'run';
  webhooks: WebhookOptions;
  controller: ControllerOptions;
  nodes: NodeToRun[];
  pods: PodTuning;
  /** The kubeconfig file CoreDNS reads; required with a local node. */
  kubeconfigPath?: string;
  /** The CoreDNS binary for a local node's cluster DNS. */
  coredns: string;
}

/** `spillway controller`: the chart's controller+webhooks Deployment. */
export interface ControllerCommandOptions extends CommonOptions {
  command: 'controller';
  webhooks: WebhookOptions;
  controller: ControllerOptions;
}

/** `spillway virtual-node`: the chart's virtual node workload. */
export interface VirtualNodeOptions extends CommonOptions {
  command: 'virtual-node';
  nodes: NodeToRun[];
  pods: PodTuning;
}

/** The options of one cluster command, checked. */
export type CommandOptions = RunOptions | ControllerCommandOptions | VirtualNodeOptions;

/** A comma-separated list flag's items, trimmed, empty ones dropped. */
const list = (text: string) =>
  text
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);

/**
 * The integer a tuning flag sets (`undefined` when unset), or a {@link UsageError} saying what it must be:
 * at least `min` (1 for counts; 0 where zero turns something off).
 */
export function integerFlag(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < min) {
    const what = min === 1 ? 'a positive integer' : `an integer of at least ${min}`;
    throw new UsageError(`--${flag} must be ${what}, not "${text}"`);
  }
  return n;
}

/** The problems of the flags every cluster command reads (exit 2), in the order they are reported. */
function checkCommonFlags(values: Flags): {
  auth: MetricsOptions['auth'];
  tlsMode: WebhookOptions['tlsMode'];
} {
  const auth = values['metrics-auth'];
  if (auth !== 'none' && auth !== 'kubernetes')
    throw new UsageError(`--metrics-auth must be none or kubernetes, not "${auth}"`);
  const tlsMode = values['tls-mode'];
  if (tlsMode !== 'self-managed' && tlsMode !== 'external')
    throw new UsageError(`--tls-mode must be self-managed or external, not "${tlsMode}"`);
  const badPort = portProblems(values);
  if (badPort) throw new UsageError(badPort);
  return { auth, tlsMode };
}

/** The CoreDNS binary: `--coredns`, else `$SPILLWAY_BIN/coredns`, else the repository's `bin/coredns`. */
const corednsBinary = (values: Flags, env: NodeJS.ProcessEnv) =>
  values.coredns ??
  (env.SPILLWAY_BIN
    ? `${env.SPILLWAY_BIN}/coredns`
    : fileURLToPath(new URL('../bin/coredns', import.meta.url)));

/**
 * The checked options of cluster command `command`, before anything touches the cluster: flag problems throw a
 * {@link UsageError}; a node file or provider configuration that cannot work throws a plain Error naming it.
 */
export function commandOptions(command: ClusterCommand, values: Flags, env = process.env): CommandOptions {
  const { auth, tlsMode } = checkCommonFlags(values);
  const workers = integerFlag('workers', values.workers, 1);
  const capacityCooldownSeconds = integerFlag('capacity-cooldown', values['capacity-cooldown'], 0);
  const podWorkers = integerFlag('pod-workers', values['pod-workers'], 1);
  const maxCreateAttempts = integerFlag('max-create-attempts', values['max-create-attempts'], 1);
  const common: CommonOptions = {
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    namespace: values.namespace,
    metrics: { port: Number(values['metrics-port']), host: values['metrics-host'], auth },
  };
  const webhooks: WebhookOptions = {
    host: values['webhook-host'] ?? (command === 'run' ? '127.0.0.1' : '0.0.0.0'),
    ...(values['webhook-port'] ? { port: Number(values['webhook-port']) } : {}),
    tlsMode,
  };
  const controller: ControllerOptions = {
    watchNamespaces: list(values['watch-namespaces']),
    approveNodeCsrs: list(values['approve-node-csrs']),
    ...(values['node-bootstrap-user'] ? { nodeBootstrapUser: values['node-bootstrap-user'] } : {}),
    ...(workers !== undefined ? { workers } : {}),
    ...(capacityCooldownSeconds !== undefined ? { capacityCooldownSeconds } : {}),
  };
  if (command === 'controller') return { command, ...common, webhooks, controller };

  const pods: PodTuning = {
    ...(podWorkers !== undefined ? { workers: podWorkers } : {}),
    ...(maxCreateAttempts !== undefined ? { maxCreateAttempts } : {}),
  };
  const nodes = virtualNodeEntries(values).map((entry): NodeToRun => {
    validateProvider(entry.provider, providerOptions(entry, values));
    const podCIDR = nodePodCIDR(entry.provider, entry.config.podCIDR);
    const config = podCIDR ? { ...entry.config, podCIDR } : entry.config;
    return {
      provider: entry.provider,
      config,
      providerOptions: providerOptions({ ...entry, config }, values),
    };
  });
  if (command === 'virtual-node') return { command, ...common, nodes, pods };

  const kubeconfigPath = values.kubeconfig ?? env.KUBECONFIG?.split(':')[0];
  if (nodes.some((n) => n.provider === 'local') && !kubeconfigPath)
    throw new Error('run --provider local needs --kubeconfig or $KUBECONFIG (CoreDNS reads it)');
  return {
    command,
    ...common,
    webhooks,
    controller,
    nodes,
    pods,
    ...(kubeconfigPath ? { kubeconfigPath } : {}),
    coredns: corednsBinary(values, env),
  };
}

/**
 * Whether creating spillway's namespace may fail with HTTP `code`: it exists (409); or, for the chart's
 * controller, which may not create namespaces (its own is the Helm release's), the refusal (403).
 */
export const namespaceErrorIsFine = (command: ClusterCommand, code: number | undefined): boolean =>
  code === 409 || (command === 'controller' && code === 403);
