/**
 * The node controller of a virtual node: it registers the Node with the provider's capacity, keeps its Lease
 * in kube-node-lease renewed (the node lifecycle controller reads it), pings the provider and turns the node
 * NotReady when the provider stops answering, and writes node status on change and every minute.
 */
import {
  PatchStrategy,
  V1MicroTime,
  setHeaderOptions,
  type CoordinationV1Api,
  type CoreV1Api,
  type V1Node,
  type V1NodeCondition,
  type V1NodeStatus,
  type V1Taint,
} from '@kubernetes/client-node';
import { isApiError } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';
import { componentLogger } from '../shared/log.ts';
import type { NodeCapacity, SandboxProvider } from '../providers/types.ts';
import { VIRTUAL_NODE_LABELS } from '../../api/labels.ts';
import { virtualNodeTaints } from '../../api/taints.ts';
import { PeriodicLoops } from '../shared/periodic.ts';

/** The kubelet version a virtual node reports (`kubectl get nodes` VERSION). */
export const VIRTUAL_KUBELET_VERSION = 'v1.36.3-spillway';

/** How one virtual node is registered. */
export interface VirtualNodeConfig {
  /** Node name, e.g. `spillway-virtual-eci`. */
  name: string;
  /** The address the apiserver reaches the kubelet API on (InternalIP). */
  internalIP: string;
  /** The kubelet API port (daemonEndpoints.kubeletEndpoint.Port). */
  kubeletPort: number;
  /** The address the kubelet API listens on; defaults to `internalIP`. */
  kubeletHost?: string;
  /** Pod CIDR the provider hands addresses from, when it has one (the local provider). */
  podCIDR?: string;
  /** Extra labels and taints on top of spillway's (§2.2). */
  labels?: Record<string, string>;
  taints?: { key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }[];
  /** What the node advertises, over the provider's own capacity (operator/virtualnode/config.ts). */
  capacity?: CapacityOverrides;
  /** Timings; defaults follow the kubelet's. */
  leaseDurationSeconds?: number;
  leaseRenewIntervalMs?: number;
  statusUpdateIntervalMs?: number;
  pingIntervalMs?: number;
  /** Consecutive failed pings before the node turns NotReady. */
  pingFailureThreshold?: number;
}

/** Configured capacity by Kubernetes resource name; each set resource replaces the provider's value. */
export type CapacityOverrides = Partial<Record<'cpu' | 'memory' | 'pods' | 'ephemeral-storage', string>>;

const defaults = {
  leaseDurationSeconds: 40,
  leaseRenewIntervalMs: 10_000,
  statusUpdateIntervalMs: 60_000,
  pingIntervalMs: 10_000,
  pingFailureThreshold: 3,
};

/** The Node object a virtual node registers (spec and metadata; status is written separately). */
export function nodeObject(config: VirtualNodeConfig, provider: string, capacity: NodeCapacity): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: config.name,
      labels: {
        ...capacity.labels,
        ...config.labels,
        ...VIRTUAL_NODE_LABELS,
        'kubernetes.io/hostname': config.name,
        'kubernetes.io/os': capacity.nodeInfo.operatingSystem,
        'kubernetes.io/arch': capacity.nodeInfo.architecture,
        'kubernetes.io/role': 'agent',
        'spillway.dev/provider': provider,
      },
    },
    spec: {
      taints: [...virtualNodeTaints(provider), ...(config.taints ?? [])],
      ...(config.podCIDR ? { podCIDR: config.podCIDR, podCIDRs: [config.podCIDR] } : {}),
    },
  };
}

/** The Node status for the provider's capacity and health, keeping condition transition times. */
export function nodeStatus(
  config: VirtualNodeConfig,
  capacity: NodeCapacity,
  healthy: { ok: boolean; message: string },
  previous: V1NodeCondition[] | undefined,
  now = new Date(),
): V1NodeStatus {
  const resources: Record<string, string> = {
    cpu: capacity.cpu,
    memory: capacity.memory,
    pods: capacity.pods,
    ...(capacity.ephemeralStorage ? { 'ephemeral-storage': capacity.ephemeralStorage } : {}),
    ...capacity.extended,
    ...config.capacity,
  };
  const cond = (type: string, status: 'True' | 'False', reason: string, message: string): V1NodeCondition => {
    const prev = previous?.find((c) => c.type === type);
    return {
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: prev?.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : now,
    };
  };
  return {
    capacity: resources,
    allocatable: resources,
    conditions: [
      healthy.ok
        ? cond('Ready', 'True', 'KubeletReady', 'spillway virtual kubelet is ready')
        : cond('Ready', 'False', 'ProviderUnreachable', healthy.message),
      cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'provider has sufficient memory'),
      cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'provider has no disk pressure'),
      cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'provider has sufficient PIDs'),
      cond('NetworkUnavailable', 'False', 'RouteCreated', 'provider manages pod networking'),
    ],
    addresses: [
      { type: 'InternalIP', address: config.internalIP },
      { type: 'Hostname', address: config.name },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: config.kubeletPort } },
    nodeInfo: {
      ...capacity.nodeInfo,
      kubeletVersion: VIRTUAL_KUBELET_VERSION,
      kubeProxyVersion: '',
      machineID: config.name,
      systemUUID: config.name,
      bootID: config.name,
    },
  };
}

/**
 * Whether NodeRestriction lets a node set or change label `key` on its own Node: not under
 * node-restriction.kubernetes.io, and under kubernetes.io / k8s.io only the kubelet's own labels
 * (k8s.io/kubelet/pkg/apis IsKubeletLabel).
 */
export function nodeMaySetLabel(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? '' : key.slice(0, slash);
  const under = (domain: string) => prefix === domain || prefix.endsWith(`.${domain}`);
  if (under('node-restriction.kubernetes.io')) return false;
  if (!under('kubernetes.io') && !under('k8s.io')) return true;
  if (under('kubelet.kubernetes.io') || under('node.kubernetes.io')) return true;
  return KUBELET_LABELS.has(key);
}

const KUBELET_LABELS = new Set([
  'kubernetes.io/hostname',
  'kubernetes.io/os',
  'kubernetes.io/arch',
  'beta.kubernetes.io/os',
  'beta.kubernetes.io/arch',
  'beta.kubernetes.io/instance-type',
  'node.kubernetes.io/instance-type',
  'failure-domain.beta.kubernetes.io/zone',
  'failure-domain.beta.kubernetes.io/region',
  'topology.kubernetes.io/zone',
  'topology.kubernetes.io/region',
]);

/** The labels of `desired` that differ from `current`: those a node may change (a patch), and the rest. */
export function labelChanges(
  current: Record<string, string>,
  desired: Record<string, string>,
): { patch: Record<string, string>; refused: string[] } {
  const patch: Record<string, string> = {};
  const refused: string[] = [];
  for (const [k, v] of Object.entries(desired)) {
    if (current[k] === v) continue;
    if (nodeMaySetLabel(k)) patch[k] = v;
    else refused.push(k);
  }
  return { patch, refused };
}

/** The taints of `desired` that `current` lacks (same key, value and effect). */
export function missingTaints(current: V1Taint[], desired: V1Taint[]): V1Taint[] {
  const key = (t: V1Taint) => `${t.key}\0${t.value ?? ''}\0${t.effect}`;
  const have = new Set(current.map(key));
  return desired.filter((t) => !have.has(key(t)));
}

/** Registers one virtual node and keeps it alive. */
export class NodeController {
  readonly #config: VirtualNodeConfig & typeof defaults;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #provider: SandboxProvider;
  readonly #log: Logger;
  /** Lease renewal, pings and status updates. */
  readonly #loops = new PeriodicLoops((what, err) => this.#log.warn({ err: String(err) }, `${what} failed`));
  #failedPings = 0;
  #healthy = { ok: true, message: '' };
  #lastWritten = '';
  #lastWrittenAt = 0;

  constructor(opts: {
    config: VirtualNodeConfig;
    core: CoreV1Api;
    coordination: CoordinationV1Api;
    provider: SandboxProvider;
    logger?: Logger;
  }) {
    this.#config = { ...defaults, ...opts.config };
    this.#core = opts.core;
    this.#coordination = opts.coordination;
    this.#provider = opts.provider;
    this.#log = opts.logger ?? componentLogger('virtual-node', { node: opts.config.name });
  }

  /** Whether the provider answered its recent pings. */
  get healthy(): boolean {
    return this.#healthy.ok;
  }

  /** Registers the Node, writes its status and Lease, and starts the renew/ping/status loops. */
  async start(): Promise<void> {
    await this.register();
    await this.renewLease();
    const every = (ms: number, fn: () => Promise<void>) => this.#loops.every(ms, 'node loop', fn);
    every(this.#config.leaseRenewIntervalMs, () => this.renewLease());
    every(this.#config.pingIntervalMs, () => this.ping());
    every(Math.min(this.#config.statusUpdateIntervalMs, 10_000), () => this.updateStatus());
  }

  /** Stops the loops. The Node stays registered; its Lease expires and the node goes NotReady. */
  stop(): void {
    this.#loops.stop();
  }

  /**
   * Creates the Node, or brings an existing one's labels up to date; then writes status. As a node identity the
   * process may set only the labels NodeRestriction lets a kubelet set and may not change its own taints once
   * registered: the rest (the chart's `kubernetes.io/role`, a changed taint) is left to the chart or an admin.
   */
  async register(): Promise<void> {
    const capacity = await this.#provider.capacity();
    const desired = nodeObject(this.#config, this.#provider.name, capacity);
    const labels = desired.metadata!.labels ?? {};
    const refused = Object.keys(labels).filter((k) => !nodeMaySetLabel(k));
    try {
      await this.#core.createNode({
        body: {
          ...desired,
          metadata: {
            ...desired.metadata,
            labels: Object.fromEntries(Object.entries(labels).filter(([k]) => nodeMaySetLabel(k))),
          },
        },
      });
      this.#log.info('registered node');
      if (refused.length > 0)
        this.#log.warn(
          { labels: refused },
          'labels a node may not set on itself (NodeRestriction) were left out',
        );
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
      const current = await this.#core.readNode({ name: this.#config.name });
      const changes = labelChanges(current.metadata?.labels ?? {}, labels);
      if (changes.refused.length > 0)
        this.#log.info(
          { labels: changes.refused },
          'labels differ but a node may not change them on itself (NodeRestriction): the chart or an admin sets them',
        );
      const missing = missingTaints(current.spec?.taints ?? [], desired.spec?.taints ?? []);
      if (missing.length > 0)
        this.#log.warn(
          { taints: missing.map((t) => `${t.key}=${t.value ?? ''}:${t.effect}`) },
          'taints missing but a node may not change its own taints (NodeRestriction): the chart or an admin sets them',
        );
      if (Object.keys(changes.patch).length > 0)
        await this.#core.patchNode(
          { name: this.#config.name, body: { metadata: { labels: changes.patch } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
    }
    await this.updateStatus(true);
  }

  /** Writes node status when it changed or when the status update interval has passed. */
  async updateStatus(force = false): Promise<void> {
    const capacity = await this.#provider.capacity();
    // GET nodes/status is not a node's to read (Node authorizer); the Node itself carries the status.
    const current = await this.#core.readNode({ name: this.#config.name });
    const status = nodeStatus(this.#config, capacity, this.#healthy, current.status?.conditions);
    const fingerprint = JSON.stringify([
      status.capacity,
      status.conditions?.map((c) => [c.type, c.status]),
      status.addresses,
    ]);
    const due = Date.now() - this.#lastWrittenAt >= this.#config.statusUpdateIntervalMs;
    if (!force && !due && fingerprint === this.#lastWritten) return;
    await this.#core.patchNodeStatus(
      { name: this.#config.name, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.#lastWritten = fingerprint;
    this.#lastWrittenAt = Date.now();
  }

  /** Renews (or creates) the node's Lease in kube-node-lease, owned by the Node so it goes with it. */
  async renewLease(): Promise<void> {
    const name = this.#config.name;
    const namespace = 'kube-node-lease';
    const spec = {
      holderIdentity: name,
      leaseDurationSeconds: this.#config.leaseDurationSeconds,
      renewTime: new V1MicroTime(),
    };
    try {
      await this.#coordination.patchNamespacedLease(
        { name, namespace, body: { spec } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
      const node = await this.#core.readNode({ name });
      await this.#coordination.createNamespacedLease({
        namespace,
        body: {
          metadata: {
            name,
            namespace,
            ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata!.uid! }],
          },
          spec,
        },
      });
    }
  }

  /** Pings the provider; after `pingFailureThreshold` failures in a row the node turns NotReady at once. */
  async ping(): Promise<void> {
    try {
      await this.#provider.ping();
      this.#failedPings = 0;
      if (!this.#healthy.ok) {
        this.#healthy = { ok: true, message: '' };
        this.#log.info('provider answers again; node Ready');
        await this.updateStatus(true);
      }
    } catch (err) {
      this.#failedPings += 1;
      if (this.#failedPings >= this.#config.pingFailureThreshold && this.#healthy.ok) {
        this.#healthy = {
          ok: false,
          message: `provider ${this.#provider.name} does not answer: ${String(err)}`,
        };
        this.#log.warn({ err: String(err) }, 'provider unreachable; node NotReady');
        await this.updateStatus(true);
      }
    }
  }
}
