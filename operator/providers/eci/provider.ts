/**
 * The `eci` provider (DESIGN.md §3): runs virtual-node pods as Alibaba Cloud ECI container groups.
 *
 * - create: pod → CreateContainerGroup (mapping.ts) with a ClientToken from the pod UID; before it, the node's
 *   instances are listed once by tag (the poller's first sync), so a create replayed after a restart finds the
 *   instance instead of making a second one, and ECI dedupes the token for creates still in flight.
 * - status: one paged DescribeContainerGroups by the node's tags on an interval and on demand; `status()` of
 *   several pods in one tick is one call by ids. Changes go to `onStatus`, ECI events to `onEvent`.
 * - everything goes through EciApi: token bucket per action, back-off on throttling and 5xx.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { Readable } from 'node:stream';
import { componentLogger, type Logger } from '../../shared/log.ts';
import {
  describeKey,
  isNotFound,
  NotFoundError,
  sandboxKey,
  type ExecResult,
  type ExecStreams,
  type LogOptions,
  type NodeCapacity,
  type PodStats,
  type SandboxEvent,
  type SandboxInstance,
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
  type Unsubscribe,
} from '../types.ts';
import { EciApi, type ContainerGroup, type EciClient, type Tag } from './client.ts';
import { parseEciConfig, type EciConfig } from './config.ts';
import { execOverWebSocket } from './exec.ts';
import { containerLogs } from './logs.ts';
import { clientToken, podToContainerGroup, TAGS, type EciPodInputs } from './mapping.ts';
import { Batcher, Poller } from './poller.ts';
import { metricsToStats } from './stats.ts';
import { eventsOf, groupToStatus, keyOfGroup } from './status.ts';

/** What the provider is built from. */
export interface EciProviderOptions {
  /** The configuration, validated here (see config.ts and docs/eci.md). */
  config: unknown;
  /** An SDK client to use instead of building one from the configuration. */
  client?: EciClient;
  logger?: Logger;
}

/** An event for the pod's Events: ECI's own events, and mapping warnings (reason `EciSpecAdjusted`). */
export type PodEvent = SandboxEvent;

/** A group spillway knows of; `createdAt` protects a fresh instance from a listing that does not show it yet. */
interface Known {
  key: SandboxKey;
  group: ContainerGroup;
  createdAt: number;
}

/** How long a created instance is kept although listings do not show it (ECI's listing is eventually consistent). */
const CREATE_GRACE_MS = 60_000;
/** How long `delete` waits for ECI to stop listing a deleted instance. */
const DELETE_TIMEOUT_MS = 120_000;

/** The ECI {@link SandboxProvider}. */
export class EciProvider implements SandboxProvider {
  readonly name = 'eci';
  readonly config: EciConfig;
  readonly api: EciApi;
  readonly #log: Logger;
  readonly #known = new Map<string, Known>();
  readonly #emitted = new Map<string, string>();
  readonly #seenEvents = new Map<string, Set<string>>();
  readonly #listeners = new Set<(status: SandboxStatus) => void>();
  readonly #eventListeners = new Set<(e: PodEvent) => void>();
  readonly #poller: Poller;
  readonly #byId: Batcher<string, ContainerGroup>;
  #synced = false;

  /** @throws Error listing every invalid configuration field */
  constructor(options: EciProviderOptions) {
    this.config = parseEciConfig(options.config);
    this.#log = options.logger ?? componentLogger('eci', { node: this.config.nodeName });
    this.api = new EciApi(this.config, options.client, this.#log);
    this.#poller = new Poller(() => this.#poll(), this.config.pollIntervalMs, this.#log);
    this.#byId = new Batcher(async (ids) => {
      const groups = await this.api.describeByIds(ids);
      return new Map(groups.map((g) => [g.containerGroupId ?? '', g]));
    }, 20);
  }

  /** The tags that select this node's instances. */
  get nodeTags(): Tag[] {
    return [
      { key: TAGS.cluster, value: this.config.clusterId },
      { key: TAGS.node, value: this.config.nodeName },
    ];
  }

  async create(pod: V1Pod, inputs: EciPodInputs = {}): Promise<SandboxStatus> {
    const key = sandboxKey(pod);
    const mapping = podToContainerGroup(pod, inputs, this.config);
    this.#poller.start();
    // The first listing by the node's tags is the lookup that makes a create replayed after a restart find
    // its instance; until it has succeeded, creates wait for it (and fail with it).
    if (!this.#synced) await this.#poller.trigger();
    const existing = this.#known.get(key.uid);
    if (existing) return groupToStatus(existing.group, key);
    for (const warning of mapping.warnings) {
      this.#emitEvent({ key, type: 'Warning', reason: 'EciSpecAdjusted', message: warning });
    }
    const id = await this.api.createContainerGroup(mapping.spec, { key, capacityType: mapping.capacityType });
    this.#log.info(
      { pod: describeKey(key), containerGroupId: id, capacity: mapping.capacityType },
      'created ECI container group',
    );
    const group: ContainerGroup = {
      containerGroupId: id,
      containerGroupName: mapping.spec.containerGroupName,
      status: 'Scheduling',
      creationTime: new Date().toISOString(),
      tags: mapping.spec.tag,
      containers: mapping.spec.container.map((c) => ({ name: c.name, image: c.image })),
      initContainers: (mapping.spec.initContainer ?? []).map((c) => ({ name: c.name, image: c.image })),
    } as ContainerGroup;
    this.#known.set(key.uid, { key, group, createdAt: Date.now() });
    void this.#poller.trigger().catch(() => {});
    return groupToStatus(group, key);
  }

  async delete(key: SandboxKey, _options?: { gracePeriodSeconds?: number }): Promise<void> {
    // ECI has no per-delete grace period: the pod's terminationGracePeriodSeconds was set at create.
    const id =
      this.#known.get(key.uid)?.group.containerGroupId ?? (await this.#lookup(key))?.containerGroupId;
    if (!id) return;
    try {
      await this.api.deleteContainerGroup(id, clientToken(key.uid, 'delete'), { key });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const deadline = Date.now() + DELETE_TIMEOUT_MS;
    for (;;) {
      const [group] = await this.api.describeByIds([id]);
      if (!group) break;
      if (Date.now() > deadline)
        throw new Error(`ECI container group ${id} of pod ${describeKey(key)} is still ${group.status}`);
      await new Promise((r) => setTimeout(r, Math.min(this.config.pollIntervalMs, 1000)));
    }
    this.#forget(key.uid);
    this.#log.info({ pod: describeKey(key), containerGroupId: id }, 'deleted ECI container group');
  }

  async status(key: SandboxKey): Promise<SandboxStatus> {
    const id = this.#known.get(key.uid)?.group.containerGroupId;
    const group = id ? await this.#byId.get(id) : await this.#lookup(key);
    if (!group) throw new NotFoundError(`no ECI container group for pod ${describeKey(key)}`, { key });
    this.#remember(key, group);
    return groupToStatus(group, key);
  }

  async list(): Promise<SandboxInstance[]> {
    this.#poller.start();
    await this.#poller.trigger();
    return [...this.#known.values()].map(({ key, group, createdAt }) => ({
      key: { ...key },
      createdAt: group.creationTime ? new Date(group.creationTime) : new Date(createdAt),
      ...(group.containerGroupId && { providerID: group.containerGroupId }),
    }));
  }

  onStatus(listener: (status: SandboxStatus) => void): Unsubscribe {
    this.#listeners.add(listener);
    this.#poller.start();
    return () => this.#listeners.delete(listener);
  }

  /**
   * Subscribes to events for the pods' Events: ECI's (Scheduled, Started, SpotToBeReleased, BackOff...) once
   * each, and `EciSpecAdjusted` warnings naming pod fields ECI ignores.
   */
  onEvent(listener: (e: PodEvent) => void): Unsubscribe {
    this.#eventListeners.add(listener);
    this.#poller.start();
    return () => this.#eventListeners.delete(listener);
  }

  /** Asks for a status poll now (e.g. after the virtual node saw a change it wants confirmed). */
  refresh(): Promise<void> {
    this.#poller.start();
    return this.#poller.trigger();
  }

  async logs(key: SandboxKey, container: string, options: LogOptions = {}): Promise<Readable> {
    const group = await this.#group(key);
    this.#container(key, group, container);
    const done = () => {
      const g = this.#known.get(key.uid)?.group;
      const c = g?.containers?.find((x) => x.name === container);
      return (
        !g ||
        ['Succeeded', 'Failed', 'Expired'].includes(g.status ?? '') ||
        c?.currentState?.state === 'Terminated'
      );
    };
    return containerLogs(
      this.api,
      { id: group.containerGroupId!, container, done },
      options,
      this.config.logPollIntervalMs,
      { key },
    );
  }

  async exec(
    key: SandboxKey,
    container: string,
    command: string[],
    streams: ExecStreams,
  ): Promise<ExecResult> {
    const group = await this.#group(key);
    const c = this.#container(key, group, container);
    if (c.currentState?.state !== 'Running')
      throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    const uri = await this.api.execContainerCommand(
      {
        id: group.containerGroupId!,
        container,
        command,
        tty: streams.tty,
        stdin: streams.stdin !== undefined,
      },
      { key },
    );
    return execOverWebSocket(uri, streams);
  }

  async stats(key: SandboxKey): Promise<PodStats> {
    const group = await this.#group(key);
    const [data] = await this.api.describeMetrics([group.containerGroupId!]);
    return metricsToStats(key, data, new Date(group.creationTime ?? Date.now()));
  }

  async statsSummary(): Promise<PodStats[]> {
    const running = [...this.#known.values()].filter(
      (k) => k.group.status === 'Running' && k.group.containerGroupId,
    );
    if (running.length === 0) return [];
    const data = new Map(
      (await this.api.describeMetrics(running.map((k) => k.group.containerGroupId!))).map((d) => [
        d.containerGroupId,
        d,
      ]),
    );
    return running
      .filter((k) => data.has(k.group.containerGroupId))
      .map((k) =>
        metricsToStats(
          k.key,
          data.get(k.group.containerGroupId),
          new Date(k.group.creationTime ?? k.createdAt),
        ),
      );
  }

  async capacity(): Promise<NodeCapacity> {
    const zone = this.config.zoneIds.length === 1 ? this.config.zoneIds[0] : undefined;
    return {
      ...this.config.capacity,
      nodeInfo: {
        operatingSystem: 'linux',
        architecture: 'amd64',
        kernelVersion: 'eci',
        osImage: 'Alibaba Cloud Elastic Container Instance',
        containerRuntimeVersion: 'eci://2018-08-08',
      },
      labels: {
        'topology.kubernetes.io/region': this.config.regionId,
        ...(zone && { 'topology.kubernetes.io/zone': zone }),
      },
    };
  }

  async ping(): Promise<void> {
    await this.api.ping();
  }

  async close(): Promise<void> {
    this.#poller.stop();
  }

  /** One listing of the node's instances: refreshes the cache, emits changed statuses and new events. */
  async #poll(): Promise<void> {
    const groups = await this.api.describeByTags(this.nodeTags);
    const seen = new Set<string>();
    for (const g of groups) {
      const key = keyOfGroup(g);
      if (!key) continue;
      seen.add(key.uid);
      this.#remember(key, g);
    }
    const now = Date.now();
    for (const [uid, k] of this.#known) {
      if (!seen.has(uid) && now - k.createdAt > CREATE_GRACE_MS) this.#forget(uid);
    }
    this.#synced = true;
  }

  #remember(key: SandboxKey, group: ContainerGroup): void {
    const created = Date.parse(group.creationTime ?? '');
    const createdAt = this.#known.get(key.uid)?.createdAt ?? (Number.isNaN(created) ? Date.now() : created);
    this.#known.set(key.uid, { key, group, createdAt });
    const status = groupToStatus(group, key);
    const json = JSON.stringify(status);
    if (this.#emitted.get(key.uid) !== json) {
      this.#emitted.set(key.uid, json);
      for (const l of this.#listeners) l(status);
    }
    const seen = this.#seenEvents.get(key.uid) ?? new Set<string>();
    this.#seenEvents.set(key.uid, seen);
    for (const event of eventsOf(group)) {
      const id = `${event.reason}|${event.message}|${event.count}`;
      if (seen.has(id)) continue;
      seen.add(id);
      this.#emitEvent({ key, type: event.type, reason: event.reason, message: event.message });
    }
  }

  #forget(uid: string): void {
    this.#known.delete(uid);
    this.#emitted.delete(uid);
    this.#seenEvents.delete(uid);
  }

  #emitEvent(e: PodEvent): void {
    for (const l of this.#eventListeners) l(e);
  }

  /** Finds a pod's group by its UID tag (one call), for pods the cache does not know. */
  async #lookup(key: SandboxKey): Promise<ContainerGroup | undefined> {
    const groups = await this.api.describeByTags([...this.nodeTags, { key: TAGS.uid, value: key.uid }]);
    return groups[0];
  }

  async #group(key: SandboxKey): Promise<ContainerGroup> {
    const group = this.#known.get(key.uid)?.group ?? (await this.#lookup(key));
    if (!group?.containerGroupId)
      throw new NotFoundError(`no ECI container group for pod ${describeKey(key)}`, { key });
    return group;
  }

  #container(key: SandboxKey, group: ContainerGroup, name: string) {
    const c = [...(group.containers ?? []), ...(group.initContainers ?? [])].find((x) => x.name === name);
    if (!c) throw new NotFoundError(`container "${name}" not found in pod ${describeKey(key)}`, { key });
    return c;
  }
}
