/**
 * The `eci` provider (docs/architecture.md#providers): runs virtual-node pods as Alibaba Cloud ECI container groups.
 *
 * - create: pod → CreateContainerGroup (mapping.ts) with a ClientToken from the pod UID; before it, the node's
 *   instances are listed once by tag (the poller's first sync), so a create replayed after a restart finds the
 *   instance instead of making a second one, and ECI dedupes the token for creates still in flight.
 * - status: on an interval and on demand, what changed since the last poll (DescribeContainerGroupStatus and
 *   DescribeContainerGroupEvents with SinceSecond: two calls whatever the number of instances), then the changed
 *   groups by id, 20 per call; every `resyncIntervalMs` (and first) a paged DescribeContainerGroups of all the
 *   node's instances instead. `status()` of several pods in one tick is one call by ids. Changes go to
 *   `onStatus`, ECI events to `onEvent`.
 * - volumes: `updateVolumes` and renewed kube-proxy tokens become UpdateContainerGroup, only when a file
 *   really changed (volume-updates.ts).
 * - everything goes through EciApi: token bucket per action, back-off on throttling and 5xx.
 */
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
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
  type PodSpecCause,
  type PodStats,
  type SandboxEvent,
  type SandboxInstance,
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
  type SidecarCredentials,
  type SidecarIdentity,
  type MaterialisedVolume,
  type Unsubscribe,
} from '../types.ts';
import { ClientTokenReusedError } from './api-errors.ts';
import { eciUnsupported } from './rules.ts';
import { EciApi, type ContainerGroup, type EciClient, type Tag } from './client.ts';
import { parseEciConfig, type EciConfig } from './config.ts';
import { execOverWebSocket } from './exec.ts';
import { containerLogs } from './logs.ts';
import {
  clientToken,
  KUBE_PROXY_CONTAINER,
  kubeProxyFiles,
  podToContainerGroup,
  TAGS,
  type EciPodInputs,
} from './mapping.ts';
import { configFileVolume, type EciVolume } from './mapping-volumes.ts';
import { Batcher, Poller } from './poller.ts';
import { metricsToStats } from './stats.ts';
import { eventsOf, groupToStatus, keyOfGroup } from './status.ts';
import { describedVolumes, updatedVolumes } from './volume-updates.ts';

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
/**
 * Lookups by tag for the instance of a replayed create, with pauses doubling from two poll intervals up to 2 s:
 * about 10 s in all at the default 1 s interval; after that the node retries the create later.
 */
const REPLAY_LOOKUPS = 6;
/** How long `delete` waits for ECI to stop listing a deleted instance. */
const DELETE_TIMEOUT_MS = 120_000;

/** The ECI {@link SandboxProvider}. */
export class EciProvider implements SandboxProvider {
  readonly name = 'eci';
  /** ECI's own events are the kubelet's container Events (Pulling, Pulled, Created, Started...): not derived again. */
  readonly reportsContainerEvents = true;
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
  /** Pods told once that their instance's files are not refreshed (restartPolicy Never). */
  readonly #notRefreshed = new Set<string>();
  #synced = false;
  #lastPoll = 0;
  /** What the last incremental poll reported of each group (see EciApi.changedSince). */
  readonly #reported = new Map<string, string>();
  #lastResync = 0;
  #kubeProxyFiles: MaterialisedVolume['files'] | undefined;

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

  /** ECI's static refusals (./rules.ts); podToContainerGroup refuses the same fields at create. */
  unsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
    return eciUnsupported(spec, base);
  }

  async create(pod: V1Pod, inputs: EciPodInputs = {}): Promise<SandboxStatus> {
    const key = sandboxKey(pod);
    const mapping = podToContainerGroup(
      pod,
      { ...inputs, ...(this.#kubeProxyFiles && { kubeProxyFiles: this.#kubeProxyFiles }) },
      this.config,
    );
    this.#poller.start();
    // The first listing by the node's tags is the lookup that makes a create replayed after a restart find
    // its instance; until it has succeeded, creates wait for it (and fail with it).
    if (!this.#synced) await this.#poller.trigger();
    const existing = this.#known.get(key.uid);
    if (existing) return groupToStatus(existing.group, key);
    for (const warning of mapping.warnings) {
      this.#emitEvent({ key, type: 'Warning', reason: 'EciSpecAdjusted', message: warning });
    }
    let id: string;
    try {
      id = await this.api.createContainerGroup(mapping.spec, { key, capacityType: mapping.capacityType });
    } catch (err) {
      if (!(err instanceof ClientTokenReusedError)) throw err;
      return this.#adoptReplayed(key, err);
    }
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

  /**
   * A create replayed with another body (its first answer was lost, and the pod's inputs were resolved anew)
   * found its ClientToken used: the instance exists. Finds it by its UID tag, waiting out ECI's eventually
   * consistent listing, and adopts it; when it does not show up, a plain error makes the node retry later.
   */
  async #adoptReplayed(key: SandboxKey, cause: Error): Promise<SandboxStatus> {
    for (let attempt = 0; attempt < REPLAY_LOOKUPS; attempt++) {
      if (attempt > 0)
        await new Promise((r) => setTimeout(r, Math.min(this.config.pollIntervalMs * 2 ** attempt, 2000)));
      const group = this.#known.get(key.uid)?.group ?? (await this.#lookup(key));
      if (group) {
        this.#log.info(
          { pod: describeKey(key), containerGroupId: group.containerGroupId },
          'adopted the ECI container group of a replayed create',
        );
        this.#known.set(key.uid, { key, group, createdAt: Date.now() });
        // Its status and events go to the listeners as for any group, but never from inside create.
        setImmediate(() => this.#remember(key, group));
        return groupToStatus(group, key);
      }
    }
    throw new Error(
      `ECI has a container group for pod ${describeKey(key)} (its ClientToken was used) that is not listed yet`,
      { cause },
    );
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
    // A poll under way is recent enough: this process's own creates are known without it, and a second run
    // queued behind a start-up sync would describe again every group that changed in the last seconds.
    await this.#poller.join();
    // The listing read every group whole: its status goes with it, so adoption needs no call per instance.
    return [...this.#known.values()].map(({ key, group, createdAt }) => ({
      key: { ...key },
      createdAt: group.creationTime ? new Date(group.creationTime) : new Date(createdAt),
      ...(group.containerGroupId && { providerID: group.containerGroupId }),
      status: groupToStatus(group, key),
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

  /**
   * Writes refreshed configMap/secret/downwardAPI/projected files into the running instance (one
   * UpdateContainerGroup), when any file changed beyond a still-fresh token. ECI updates only Pending and
   * Running instances, and may fail the containers of a restartPolicy Never one: those keep their files, and
   * the pod gets one Warning Event saying so.
   * @throws NotFoundError no instance for this UID
   */
  async updateVolumes(key: SandboxKey, volumes: Record<string, MaterialisedVolume>): Promise<void> {
    const replacements = Object.fromEntries(
      Object.entries(volumes).map(([name, v]) => [name, configFileVolume(name, v.files)]),
    );
    await this.#updateGroupVolumes(key, replacements);
  }

  sidecarIdentity(): SidecarIdentity | undefined {
    const k = this.config.kubeProxy;
    if (!k.enabled || !k.serviceAccount) return undefined;
    return {
      ...k.serviceAccount,
      expirationSeconds: k.tokenExpirationSeconds,
      ...(k.apiServer && { apiServer: k.apiServer }),
    };
  }

  /**
   * Takes a (renewed) kube-proxy token: new instances get it at create, and every known instance with the
   * sidecar whose token has less than half of its lifetime left gets it written in place.
   */
  async setSidecarCredentials(credentials: SidecarCredentials): Promise<void> {
    this.#kubeProxyFiles = kubeProxyFiles(credentials);
    const volume = { [KUBE_PROXY_CONTAINER]: configFileVolume(KUBE_PROXY_CONTAINER, this.#kubeProxyFiles) };
    const targets = [...this.#known.values()].filter(({ group }) =>
      group.containers?.some((c) => c.name === KUBE_PROXY_CONTAINER),
    );
    let failed = 0;
    // A few at a time: the UpdateContainerGroup bucket paces them anyway.
    for (let i = 0; i < targets.length; i += 8) {
      const results = await Promise.allSettled(
        targets.slice(i, i + 8).map(({ key }) => this.#updateGroupVolumes(key, volume)),
      );
      failed += results.filter((r) => r.status === 'rejected' && !isNotFound(r.reason)).length;
    }
    if (failed > 0)
      this.#log.warn({ failed, of: targets.length }, 'kube-proxy token not renewed in some ECI instances');
  }

  /** Sends the instance's volumes with `replacements` swapped in, if that changes anything. */
  async #updateGroupVolumes(key: SandboxKey, replacements: Record<string, EciVolume>): Promise<void> {
    const id =
      this.#known.get(key.uid)?.group.containerGroupId ?? (await this.#lookup(key))?.containerGroupId;
    const group = id ? await this.#byId.get(id) : undefined;
    if (!id || !group) throw new NotFoundError(`no ECI container group for pod ${describeKey(key)}`, { key });
    if (group.status !== 'Pending' && group.status !== 'Running') return;
    const next = updatedVolumes(describedVolumes(group), replacements);
    if (!next) return;
    if (group.restartPolicy === 'Never') {
      if (!this.#notRefreshed.has(key.uid)) {
        this.#notRefreshed.add(key.uid);
        this.#emitEvent({
          key,
          type: 'Warning',
          reason: 'EciVolumesNotRefreshed',
          message:
            'changed configMap/secret/token files are not written into this instance: ECI may fail the containers of a restartPolicy Never instance it updates',
        });
      }
      return;
    }
    const token = clientToken(
      `${key.uid}/${createHash('sha256').update(JSON.stringify(next)).digest('hex')}`,
    );
    await this.api.updateVolumes(id, next, token, { key });
    this.#log.info({ pod: describeKey(key), containerGroupId: id }, 'updated ECI instance volumes');
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

  /**
   * One poll: the groups that changed since the last one, by id; or, first and every `resyncIntervalMs`, a
   * listing of all the node's instances. Refreshes the cache, emits changed statuses and new events.
   */
  async #poll(): Promise<void> {
    const started = Date.now();
    if (this.#synced && started - this.#lastResync < this.config.resyncIntervalMs) {
      // Whole seconds, plus one for event timestamps (whole seconds) and one for the request's way there.
      const since = Math.ceil((started - this.#lastPoll) / 1000) + 2;
      const changed = await this.api.changedSince(this.nodeTags, since);
      // Windows overlap: describe only what this poll is the first to report.
      const fresh = [...changed].filter(([id, f]) => this.#reported.get(id) !== f).map(([id]) => id);
      for (const g of fresh.length > 0 ? await this.api.describeByIds(fresh) : []) {
        const key = keyOfGroup(g);
        if (key) this.#remember(key, g);
      }
      for (const id of fresh) this.#reported.set(id, changed.get(id)!);
      this.#lastPoll = started;
      return;
    }
    await this.#resync();
    this.#lastPoll = this.#lastResync = started;
  }

  /** One listing of all the node's instances; instances no longer listed are forgotten. */
  async #resync(): Promise<void> {
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
    // An instance first seen (adopted after a restart) may hold a kube-proxy token older than the one minted.
    if (
      this.#kubeProxyFiles &&
      !this.#known.has(key.uid) &&
      group.containers?.some((c) => c.name === KUBE_PROXY_CONTAINER)
    ) {
      const volume = { [KUBE_PROXY_CONTAINER]: configFileVolume(KUBE_PROXY_CONTAINER, this.#kubeProxyFiles) };
      if (updatedVolumes(describedVolumes(group), volume))
        void this.#updateGroupVolumes(key, volume).catch((err: unknown) =>
          this.#log.warn({ pod: describeKey(key), err: String(err) }, 'kube-proxy token not renewed'),
        );
    }
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
      this.#emitEvent({
        key,
        type: event.type,
        reason: event.reason,
        message: event.message,
        // After a restart the node compares it with the Events it recorded: an occurrence is recorded once.
        ...(event.lastTimestamp && { timestamp: event.lastTimestamp }),
      });
    }
  }

  #forget(uid: string): void {
    const id = this.#known.get(uid)?.group.containerGroupId;
    if (id) this.#reported.delete(id);
    this.#known.delete(uid);
    this.#notRefreshed.delete(uid);
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
