/**
 * The pod controller of a virtual node: it runs the pods bound to its node through the provider and keeps
 * their status true. Two queues, as virtual-kubelet's node library has: `sync` (Kubernetes → provider:
 * create, graceful delete) and `status` (provider → Pod status). Level-based: each reconcile reads the pod
 * from the informer cache and the provider's last report, and does what is missing.
 *
 * Guarantees: a pod is created at most once per UID (the provider is keyed by UID and the start-up
 * reconcile adopts existing instances); instances whose pod is gone are deleted by the orphan collector
 * after 30 s; a pod the provider keeps refusing ends Failed (`ProviderFailed`) so its controller replaces it.
 */
import {
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Api,
  type KubeConfig,
  type V1Pod,
  type V1PodStatus,
} from '@kubernetes/client-node';
import { isApiError, apiErrorMessage } from '../shared/client.ts';
import { EventType, type EventRecorder } from '../shared/events.ts';
import { informerFor, objectKey, splitKey, type SupervisedInformer } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import { describeViolations, sandboxViolations } from '../shared/sandbox-rules.ts';
import { WorkQueue, runWorkers } from '../shared/workqueue.ts';
import {
  isInsufficientCapacity,
  isInvalidPodSpec,
  isNotFound,
  isThrottled,
  sandboxKey,
  type SandboxEvent,
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
} from '../providers/types.ts';
import {
  containerEvents,
  killingEvents,
  viewsFromPodStatus,
  viewsFromReport,
  withContainerWaiting,
  type ContainerEvent,
} from './container-events.ts';
import { failedStatus, pendingStatus, podStatusFrom, statusFingerprint } from './pod-status.ts';
import { isNewProviderEvent, loadRecordedEvents, type RecordedEvents } from './provider-events.ts';
import { MissingReferenceError, resolvePodInputs, type ResolverSource } from './resolve.ts';

/** How the pod controller behaves; timings have named defaults. */
export interface PodControllerOptions {
  nodeName: string;
  hostIP: string;
  provider: SandboxProvider;
  core: CoreV1Api;
  events: EventRecorder;
  /**
   * Lists the Events recorded before a restart (provider-events.ts); default `core`. A node identity may create
   * Events but not list them: the virtual node passes its bootstrap identity's client.
   */
  recordedEvents?: CoreV1Api;
  /** Where env and volume references are read from. */
  resolver: ResolverSource;
  /** Allocatable of the node, for downward API limits that default to it. */
  nodeAllocatable?: Record<string, string>;
  /** Create attempts before the pod is marked Failed with reason ProviderFailed. Default 5. */
  maxCreateAttempts?: number;
  /** Instances without a pod older than this are deleted. Default 30 s. */
  orphanMinAgeMs?: number;
  orphanIntervalMs?: number;
  /**
   * How often materialised volumes are re-resolved and pushed to the provider (`updateVolumes`), so that
   * projected service-account tokens are refreshed well before they expire and ConfigMap/Secret changes
   * arrive, as the kubelet's volume sync does. Default 40 minutes (tokens are requested for 1 hour).
   */
  volumeRefreshIntervalMs?: number;
  /** Parallel provider calls. Default 32. */
  workers?: number;
  /**
   * Parallel Pod status writes. Default 32: a status PATCH takes tens of milliseconds, and a burst of 1000 pods
   * needs about two each, so few writers make status propagation queue up (bench/burst.ts measured it).
   */
  statusWorkers?: number;
  logger?: Logger;
  /** Builds the pod informer; tests may inject. Defaults to a field-selected ListWatch on spec.nodeName. */
  podInformer?: SupervisedInformer<V1Pod>;
}

type Settings = Required<Omit<PodControllerOptions, 'podInformer' | 'logger' | 'recordedEvents'>> &
  Pick<PodControllerOptions, 'recordedEvents'>;

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Container Events written at once, and how many may wait before more are dropped. */
const EVENT_WRITERS = 4;
const EVENT_BACKLOG = 1000;

/** Runs and reports the pods bound to one virtual node. */
export class PodController {
  readonly #o: Settings;
  readonly #log: Logger;
  readonly pods: SupervisedInformer<V1Pod>;
  readonly #sync = new WorkQueue({ name: 'virtualnode_sync' });
  readonly #status = new WorkQueue({ name: 'virtualnode_status' });
  /** UID last seen under each key, so a vanished pod's instance can still be found. */
  readonly #uidByKey = new Map<string, string>();
  /** UIDs the provider has an instance for. */
  readonly #created = new Set<string>();
  /** The provider's last report per UID. */
  readonly #reports = new Map<string, SandboxStatus>();
  readonly #createFailures = new Map<string, number>();
  /** UIDs the node has failed: never created again, even from a stale cache that still says Pending. */
  readonly #failed = new Set<string>();
  #timers: NodeJS.Timeout[] = [];
  #workers: Promise<void>[] = [];
  #unsubscribe: (() => void) | undefined;
  #unsubscribeEvents: (() => void) | undefined;
  /** UIDs of pods already evicted because their instance is about to be reclaimed. */
  readonly #evicted = new Set<string>();
  /** The status last written (or found already written) per UID: what the next container Events compare with. */
  readonly #written = new Map<string, V1PodStatus>();
  /** Container Events waiting to be written (see #containerEvent). */
  readonly #eventBacklog: (() => Promise<void>)[] = [];
  #eventWriters = 0;

  constructor(opts: PodControllerOptions, kc?: KubeConfig) {
    this.#o = {
      maxCreateAttempts: 5,
      orphanMinAgeMs: 30_000,
      orphanIntervalMs: 30_000,
      volumeRefreshIntervalMs: 40 * 60_000,
      workers: 32,
      statusWorkers: 32,
      nodeAllocatable: {},
      ...opts,
    } as Settings;
    this.#log = opts.logger ?? componentLogger('pod-controller', { node: opts.nodeName });
    if (opts.podInformer) this.pods = opts.podInformer;
    else {
      if (!kc) throw new Error('PodController needs a KubeConfig or a podInformer');
      const fieldSelector = `spec.nodeName=${opts.nodeName}`;
      this.pods = informerFor<V1Pod>(kc, 'virtualnode-pods', {
        path: '/api/v1/pods',
        fieldSelector,
        list: () => opts.core.listPodForAllNamespaces({ fieldSelector }),
      });
    }
  }

  /** Starts the informer, adopts existing instances, then the workers and the orphan collector. */
  async start(): Promise<void> {
    const startedAt = Date.now();
    // The Events this node recorded before a restart, so that provider events it lists again are not repeated.
    const recorded = loadRecordedEvents(this.#o.recordedEvents ?? this.#o.core, this.#o.nodeName).catch(
      (err: unknown) => {
        this.#log.warn(
          { err: apiErrorMessage(err) },
          'cannot read recorded Events: provider events may repeat',
        );
        return new Map<string, number>();
      },
    );
    this.#unsubscribe = this.#o.provider.onStatus((s) => this.#onReport(s));
    this.#unsubscribeEvents = this.#o.provider.onEvent?.(
      (e) => void this.#providerEvent(e, recorded, startedAt).catch(() => {}),
    );
    const enqueue = (pod: V1Pod) => {
      const key = objectKey(pod);
      this.#sync.add(key);
      this.#status.add(key);
    };
    this.pods.onAdd(enqueue);
    this.pods.onUpdate(enqueue);
    this.pods.onDelete((pod) => this.#sync.add(objectKey(pod)));
    this.pods.start();
    await this.pods.synced;
    // Adopt what the provider already runs (after a restart) before any create: no duplicates.
    await this.#adopt();
    this.#workers.push(
      runWorkers(this.#sync, this.#o.workers, (k) => this.#reconcile(k), { logger: this.#log }),
    );
    this.#workers.push(
      runWorkers(this.#status, this.#o.statusWorkers, (k) => this.#pushStatus(k), { logger: this.#log }),
    );
    this.#every(this.#o.orphanIntervalMs, 'orphan collection', () => this.collectOrphans());
    if (this.#o.provider.updateVolumes) {
      this.#every(this.#o.volumeRefreshIntervalMs, 'volume refresh', () => this.refreshVolumes());
    }
    for (const key of this.pods.keys()) enqueue(this.pods.getByKey(key)!);
  }

  /**
   * Takes over the instances the provider already runs, with the status the listing carries: a restart costs
   * the listing, not a status call per instance (1,000 instances on ECI were 1,000 calls and seconds of delay).
   * Only instances listed without a status (still being created) are asked for theirs, all at once.
   */
  async #adopt(): Promise<void> {
    const missing: SandboxKey[] = [];
    for (const inst of await this.#o.provider.list()) {
      this.#created.add(inst.key.uid);
      this.#uidByKey.set(`${inst.key.namespace}/${inst.key.name}`, inst.key.uid);
      if (this.pods.get(inst.key.namespace, inst.key.name)?.metadata?.uid !== inst.key.uid) continue;
      if (inst.status) this.#reports.set(inst.key.uid, inst.status);
      else missing.push(inst.key);
    }
    const reports = await Promise.all(missing.map((k) => this.#o.provider.status(k).catch(() => undefined)));
    for (const report of reports) if (report) this.#reports.set(report.key.uid, report);
  }

  /**
   * Records a provider event on its pod, once: it waits for the pod cache and the recorded Events (an event that
   * arrives early is neither lost nor repeated) and skips occurrences recorded before a restart.
   */
  async #providerEvent(e: SandboxEvent, recorded: Promise<RecordedEvents>, startedAt: number): Promise<void> {
    const [index] = await Promise.all([recorded, this.pods.synced]);
    const pod = this.pods.get(e.key.namespace, e.key.name);
    if (pod?.metadata?.uid !== e.key.uid) return;
    if (!isNewProviderEvent(e, e.key.uid, index, startedAt)) return;
    await this.#event(pod, e.type, e.reason, 'Provider', e.message);
  }

  /** Runs `fn` every `ms` until stop; a failure is logged and the next round tries again. */
  #every(ms: number, what: string, fn: () => Promise<unknown>): void {
    const t = setInterval(
      () => void fn().catch((err) => this.#log.warn({ err: String(err) }, `${what} failed`)),
      ms,
    );
    t.unref();
    this.#timers.push(t);
  }

  /** Stops the queues and the informer; instances keep running. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#unsubscribe?.();
    this.#unsubscribeEvents?.();
    await Promise.all([this.#sync.shutDown(), this.#status.shutDown()]);
    await Promise.all(this.#workers);
    await this.pods.stop();
  }

  #onReport(report: SandboxStatus): void {
    // A late report for a pod already gone (a poll that was in flight during its delete) must not bring the
    // UID back: the maps below would keep it forever.
    const pod = this.pods.get(report.key.namespace, report.key.name);
    if (pod?.metadata?.uid !== report.key.uid && !this.#created.has(report.key.uid)) return;
    this.#created.add(report.key.uid);
    this.#reports.set(report.key.uid, report);
    this.#status.add(`${report.key.namespace}/${report.key.name}`);
  }

  async #reconcile(key: string): Promise<{ requeueAfter?: number } | void> {
    const { namespace, name } = splitKey(key);
    const pod = this.pods.get(namespace, name);
    const previousUid = this.#uidByKey.get(key);
    if (previousUid && previousUid !== pod?.metadata?.uid && this.#created.has(previousUid)) {
      // The pod is gone, or was re-created under the same name: its old instance goes.
      await this.#deleteInstance({ uid: previousUid, namespace, name });
    }
    if (!pod) {
      this.#uidByKey.delete(key);
      if (previousUid) this.#forget(previousUid);
      return;
    }
    const k = sandboxKey(pod);
    this.#uidByKey.set(key, k.uid);
    if (pod.metadata?.deletionTimestamp) return this.#terminate(pod, k);
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
      // A pod failed by the node (ProviderFailed, InsufficientCapacity) may still have an instance that an
      // earlier, timed-out create made after all: it must not run, and bill, behind a Failed pod.
      const report = this.#reports.get(k.uid);
      const running = report && report.phase !== 'Succeeded' && report.phase !== 'Failed';
      if (this.#created.has(k.uid) && (running || !report)) await this.#deleteInstance(k);
      this.#failed.add(k.uid);
      return;
    }
    if (this.#created.has(k.uid) || this.#failed.has(k.uid)) return;
    return this.#create(pod, k);
  }

  async #create(pod: V1Pod, k: SandboxKey): Promise<{ requeueAfter?: number } | void> {
    const violations = sandboxViolations(pod.spec, pod.metadata?.ownerReferences);
    if (violations.length > 0) {
      const message = `a sandbox cannot run this pod: ${describeViolations(violations)}`;
      await this.#fail(pod, 'UnsupportedPodSpec', message);
      return;
    }
    try {
      const inputs = await resolvePodInputs(pod, this.#o.resolver, this.#o.nodeAllocatable);
      const report = await this.#o.provider.create(pod, inputs);
      this.#createFailures.delete(k.uid);
      this.#onReport(report);
      this.#log.debug({ pod: `${k.namespace}/${k.name}` }, 'created sandbox');
    } catch (err) {
      if (isInvalidPodSpec(err)) {
        await this.#fail(
          pod,
          'UnsupportedPodSpec',
          `provider ${this.#o.provider.name} cannot run this pod: ${(err as Error).message}`,
        );
        return;
      }
      if (isInsufficientCapacity(err)) {
        // No capacity (ECI no stock, spot exhausted): fail the pod at once with a reason the ElasticWorkload
        // controller reads, so that a spot unit falls back to its next unit instead of waiting here.
        await this.#fail(
          pod,
          'InsufficientCapacity',
          `provider ${this.#o.provider.name} has no capacity for this pod: ${(err as Error).message}`,
        );
        return;
      }
      if (isThrottled(err)) {
        // Throttling is the provider pacing us, not a failure of this pod: it never counts towards ProviderFailed.
        return { requeueAfter: (err as { retryAfterMs?: number }).retryAfterMs ?? 1000 };
      }
      const attempts = (this.#createFailures.get(k.uid) ?? 0) + 1;
      this.#createFailures.set(k.uid, attempts);
      if (err instanceof MissingReferenceError) {
        await this.#missingReference(pod, err);
        // Retried until the reference exists, as a kubelet does; never a Failed pod.
        return { requeueAfter: Math.min(1000 * 2 ** (attempts - 1), 30_000) };
      }
      const message = `provider ${this.#o.provider.name} refused the create (attempt ${attempts} of ${this.#o.maxCreateAttempts}): ${apiErrorMessage(err)}`;
      void this.#event(pod, EventType.Warning, 'ProviderCreateFailed', 'Create', message);
      if (attempts >= this.#o.maxCreateAttempts) {
        this.#createFailures.delete(k.uid);
        await this.#fail(pod, 'ProviderFailed', message);
        return;
      }
      // Exponential: 1 s, 2 s, 4 s, ... so that a provider outage does not become a request storm.
      return { requeueAfter: Math.min(1000 * 2 ** (attempts - 1), 60_000) };
    }
  }

  /**
   * A reference the pod needs does not exist, reported as a kubelet does: a volume source is a `FailedMount`
   * Warning and the pod stays ContainerCreating; an env reference is a `Failed` Warning (`Error: ...`) and the
   * container waits with `CreateContainerConfigError`. The same message each retry, so Events form one series.
   */
  async #missingReference(pod: V1Pod, err: MissingReferenceError): Promise<void> {
    const site = err.site ?? { volume: '' };
    let status = pendingStatus(pod, this.#o.hostIP);
    if ('volume' in site) {
      const message = `MountVolume.SetUp failed for volume "${site.volume}" : ${err.message}`;
      void this.#event(pod, EventType.Warning, 'FailedMount', 'Create', message);
    } else {
      const spec = pod.spec?.initContainers?.some((c) => c.name === site.container)
        ? 'initContainers'
        : 'containers';
      this.#containerEvent(pod, {
        type: 'Warning',
        reason: 'Failed',
        message: `Error: ${err.message}`,
        fieldPath: `spec.${spec}{${site.container}}`,
      });
      status = withContainerWaiting(status, site.container, 'CreateContainerConfigError', err.message);
    }
    await this.#writeStatus(pod, status);
  }

  /** Graceful delete: the provider stops the containers within the grace period, then the pod goes. */
  async #terminate(pod: V1Pod, k: SandboxKey): Promise<void> {
    if (this.#created.has(k.uid)) {
      const report = this.#reports.get(k.uid);
      const known = report ? viewsFromReport(report) : viewsFromPodStatus(pod.status);
      if (!this.#o.provider.reportsContainerEvents)
        for (const e of killingEvents(pod, known)) this.#containerEvent(pod, e);
      const grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      await this.#deleteInstance(k, grace);
    }
    try {
      await this.#o.core.deleteNamespacedPod({
        name: k.name,
        namespace: k.namespace,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: k.uid } },
      });
    } catch (err) {
      if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
    }
  }

  /** Drops everything remembered about a UID whose pod is gone. */
  #forget(uid: string): void {
    this.#created.delete(uid);
    this.#reports.delete(uid);
    this.#createFailures.delete(uid);
    this.#evicted.delete(uid);
    this.#failed.delete(uid);
    this.#written.delete(uid);
  }

  async #deleteInstance(k: SandboxKey, gracePeriodSeconds?: number): Promise<void> {
    await this.#o.provider.delete(k, gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds });
    const failed = this.#failed.has(k.uid);
    this.#forget(k.uid);
    // A pod the node failed stays failed: its instance is gone, but it must not be created again.
    if (failed) this.#failed.add(k.uid);
  }

  async #pushStatus(key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    const pod = this.pods.get(namespace, name);
    if (!pod || pod.metadata?.deletionTimestamp) return;
    const report = this.#reports.get(pod.metadata?.uid ?? '');
    if (!report) return;
    // A terminal phase is final: never resurrect a Failed/Succeeded pod from a stale report.
    if (
      (pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') &&
      report.phase !== pod.status.phase
    )
      return;
    // Container Events follow the status write they describe, compared with the status last written (after a
    // restart: the one on the Pod): a kill between the two loses Events rather than repeating them.
    const before = viewsFromPodStatus(this.#written.get(report.key.uid) ?? pod.status);
    await this.#writeStatus(pod, podStatusFrom(pod, report, this.#o.hostIP));
    if (!this.#o.provider.reportsContainerEvents)
      for (const e of containerEvents(pod, before, report)) this.#containerEvent(pod, e);
    const disruption = report.conditions?.find((c) => c.type === 'DisruptionTarget' && c.status === 'True');
    if (disruption && !this.#evicted.has(report.key.uid)) {
      // The instance will be reclaimed (a spot release notice): evict the pod now (graceful, and only this
      // pod: the UID precondition), so that its controller starts a replacement while this one still serves.
      // An eviction a PodDisruptionBudget refuses (429) is retried; the reclaim will not wait for it forever.
      try {
        await this.#o.core.createNamespacedPodEviction({
          name: report.key.name,
          namespace: report.key.namespace,
          body: {
            apiVersion: 'policy/v1',
            kind: 'Eviction',
            metadata: { name: report.key.name, namespace: report.key.namespace },
            deleteOptions: { preconditions: { uid: report.key.uid } },
          },
        });
      } catch (err) {
        if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
      }
      this.#evicted.add(report.key.uid);
      void this.#event(
        pod,
        EventType.Warning,
        'Evicting',
        'Delete',
        `evicted before its instance is reclaimed: ${disruption.message ?? disruption.reason ?? ''}`,
      );
    }
  }

  async #writeStatus(pod: V1Pod, status: V1PodStatus): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    if (statusFingerprint(status) === statusFingerprint(pod.status)) {
      this.#written.set(uid, status);
      return;
    }
    try {
      await this.#o.core.patchNamespacedPodStatus(
        {
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          // A merge patch leaves out what is undefined: a reason, message or address that no longer holds is
          // cleared with an explicit null, or it would stay on the pod for good.
          body: {
            status: {
              ...status,
              reason: status.reason ?? null,
              message: status.message ?? null,
              podIP: status.podIP ?? null,
            },
          },
        },
        mergePatch,
      );
      this.#written.set(uid, status);
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async #fail(pod: V1Pod, reason: string, message: string): Promise<void> {
    this.#failed.add(pod.metadata?.uid ?? '');
    this.#log.info({ pod: objectKey(pod), reason, message }, 'pod failed');
    void this.#event(pod, EventType.Warning, reason, 'Create', message);
    await this.#writeStatus(pod, failedStatus(pod, this.#o.hostIP, reason, message));
  }

  /**
   * Records a container's lifecycle Event, regarding the container (fieldPath) as a kubelet does. A burst makes
   * four per container at once: they are written by a few writers in order, so that they never crowd out the
   * status writes, and past a backlog of 1,000 dropped (as the kubelet's event broadcaster drops).
   */
  #containerEvent(pod: V1Pod, e: ContainerEvent): void {
    if (this.#eventBacklog.length >= EVENT_BACKLOG) return;
    this.#eventBacklog.push(() => this.#event(pod, e.type, e.reason, e.reason, e.message, e.fieldPath));
    this.#writeEvents();
  }

  #writeEvents(): void {
    while (this.#eventWriters < EVENT_WRITERS && this.#eventBacklog.length > 0) {
      const write = this.#eventBacklog.shift()!;
      this.#eventWriters += 1;
      void write().finally(() => {
        this.#eventWriters -= 1;
        this.#writeEvents();
      });
    }
  }

  #event(
    pod: V1Pod,
    type: EventType,
    reason: string,
    action: string,
    note: string,
    fieldPath?: string,
  ): Promise<void> {
    return this.#o.events.record(
      {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: pod.metadata?.namespace,
        name: pod.metadata?.name ?? '',
        uid: pod.metadata?.uid,
        ...(fieldPath && { fieldPath }),
      },
      type,
      reason,
      action,
      note,
    );
  }

  /**
   * Re-resolves the volumes of every running pod that has any to refresh (projected, configMap, secret,
   * downwardAPI) and hands them to the provider. Returns how many pods were refreshed.
   */
  async refreshVolumes(): Promise<number> {
    const update = this.#o.provider.updateVolumes?.bind(this.#o.provider);
    if (!update) return 0;
    let refreshed = 0;
    for (const pod of this.pods.list()) {
      const uid = pod.metadata?.uid ?? '';
      if (!this.#created.has(uid) || pod.metadata?.deletionTimestamp) continue;
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
      if (!(pod.spec?.volumes ?? []).some((v) => v.projected || v.configMap || v.secret || v.downwardAPI))
        continue;
      try {
        const { volumes } = await resolvePodInputs(pod, this.#o.resolver, this.#o.nodeAllocatable);
        await update(sandboxKey(pod), volumes ?? {});
        refreshed += 1;
      } catch (err) {
        // A vanished reference keeps the files the sandbox has, as a kubelet does; say so on the pod.
        void this.#event(
          pod,
          EventType.Warning,
          'FailedMount',
          'Refresh',
          `could not refresh volumes: ${apiErrorMessage(err)}`,
        );
      }
    }
    return refreshed;
  }

  /** Deletes instances whose pod no longer exists (by UID), once older than the minimum age. */
  async collectOrphans(now = Date.now()): Promise<number> {
    const live = new Set(this.pods.list().map((p) => p.metadata?.uid));
    let deleted = 0;
    for (const inst of await this.#o.provider.list()) {
      if (live.has(inst.key.uid) || now - inst.createdAt.getTime() < this.#o.orphanMinAgeMs) continue;
      this.#log.info({ instance: inst.key, providerID: inst.providerID }, 'deleting orphaned instance');
      await this.#deleteInstance(inst.key).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      deleted += 1;
    }
    return deleted;
  }
}
