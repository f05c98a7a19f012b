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
} from '@kubernetes/client-node';
import { isApiError } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';
import { componentLogger } from '../shared/log.ts';
import type { NodeCapacity, SandboxProvider } from '../providers/types.ts';
import { VIRTUAL_NODE_LABELS, virtualNodeTaints } from '../../webhooks/contract.ts';

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
  /** Timings; defaults follow the kubelet's. */
  leaseDurationSeconds?: number;
  leaseRenewIntervalMs?: number;
  statusUpdateIntervalMs?: number;
  pingIntervalMs?: number;
  /** Consecutive failed pings before the node turns NotReady. */
  pingFailureThreshold?: number;
}

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

/** Registers one virtual node and keeps it alive. */
export class NodeController {
  readonly #config: VirtualNodeConfig & typeof defaults;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #provider: SandboxProvider;
  readonly #log: Logger;
  #timers: NodeJS.Timeout[] = [];
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
    const every = (ms: number, fn: () => Promise<void>) => {
      const t = setInterval(
        () => void fn().catch((err) => this.#log.warn({ err: String(err) }, 'node loop failed')),
        ms,
      );
      t.unref();
      this.#timers.push(t);
    };
    every(this.#config.leaseRenewIntervalMs, () => this.renewLease());
    every(this.#config.pingIntervalMs, () => this.ping());
    every(Math.min(this.#config.statusUpdateIntervalMs, 10_000), () => this.updateStatus());
  }

  /** Stops the loops. The Node stays registered; its Lease expires and the node goes NotReady. */
  stop(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** Creates the Node, or brings an existing one's labels and taints up to date; then writes status. */
  async register(): Promise<void> {
    const capacity = await this.#provider.capacity();
    const desired = nodeObject(this.#config, this.#provider.name, capacity);
    try {
      await this.#core.createNode({ body: desired });
      this.#log.info('registered node');
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
      // Keep taints others put on the node (an admin's maintenance taint, the node lifecycle controller's
      // unreachable taint): a merge patch replaces the list, so send theirs along with ours.
      const current = await this.#core.readNode({ name: this.#config.name });
      const ours = new Set((desired.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`));
      const theirs = (current.spec?.taints ?? []).filter((t) => !ours.has(`${t.key}:${t.effect}`));
      await this.#core.patchNode(
        {
          name: this.#config.name,
          body: {
            metadata: { labels: desired.metadata!.labels },
            spec: { ...desired.spec, taints: [...theirs, ...(desired.spec?.taints ?? [])] },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
    await this.updateStatus(true);
  }

  /** Writes node status when it changed or when the status update interval has passed. */
  async updateStatus(force = false): Promise<void> {
    const capacity = await this.#provider.capacity();
    const current = await this.#core.readNodeStatus({ name: this.#config.name });
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
