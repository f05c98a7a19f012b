/**
 * The pod controller of a virtual node: it runs the pods bound to its node through the provider and keeps
 * their status true. Two queues, as virtual-kubelet's node library has: `sync` (Kubernetes → provider:
 * create, graceful delete) and `status` (provider → Pod status). Level-based: each reconcile reads the pod
 * from the informer cache and the provider's last report, and does what is missing. What it knows per pod is one
 * {@link KnownPod} record (known-pods.ts).
 *
 * It builds no client: the pod informer, the Pod client, the Event recorder, the provider and a clock are passed
 * in (run.ts builds the real ones; pod-controller.test.ts drives it with fakes).
 *
 * Guarantees: a pod is created at most once per UID (the provider is keyed by UID and the start-up
 * reconcile adopts existing instances); instances whose pod is gone are deleted by the orphan collector
 * after 30 s; a pod the provider keeps refusing ends Failed (`ProviderFailed`) so its controller replaces it.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { apiErrorMessage } from '../shared/client.ts';
import { EventType } from '../shared/events.ts';
import { objectKey, splitKey, type SupervisedInformer } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import { describeViolations, sandboxViolations } from '../../api/sandbox-rules.ts';
import { WorkQueue, runWorkers, type ReconcileResult } from '../shared/workqueue.ts';
import {
  isNotFound,
  sandboxKey,
  type SandboxEvent,
  type SandboxKey,
  type SandboxStatus,
} from '../providers/types.ts';
import { containerEvents, killingEvents, viewsFromPodStatus, viewsFromReport } from './container-events.ts';
import { KnownPods } from './known-pods.ts';
import {
  podControllerSettings,
  type PodControllerOptions,
  type PodControllerSettings,
} from './pod-controller-options.ts';
import {
  classifyCreateError,
  createBackoffMs,
  missingReferenceBackoffMs,
  missingReferenceReport,
  refusedCreateMessage,
} from './pod-create.ts';
import { PodEvents } from './pod-events.ts';
import { failedStatus, podStatusFrom, statusFingerprint } from './pod-status.ts';
import { deletePodNow, evictPod, patchPodStatus } from './pod-writes.ts';
import { eventKey, isNewProviderEvent, loadRecordedEvents, type RecordedEvents } from './provider-events.ts';
import { resolvePodInputs, type MissingReferenceError } from './resolve.ts';
import { PodReason, EventReason } from '../../api/reasons.ts';
import { PeriodicLoops } from '../shared/periodic.ts';

export type { Clock, PodControllerOptions } from './pod-controller-options.ts';

/** Runs and reports the pods bound to one virtual node. */
export class PodController {
  readonly #settings: PodControllerSettings;
  readonly #log: Logger;
  readonly pods: SupervisedInformer<V1Pod>;
  readonly #events: PodEvents;
  readonly #sync = new WorkQueue({ name: 'virtualnode_sync' });
  readonly #status = new WorkQueue({ name: 'virtualnode_status' });
  /** One record per pod UID: instance, last report, create attempts, failed, evicted, status written. */
  readonly #known = new KnownPods();
  /** Orphan collection and volume refresh: a failed round is logged and the next one tries again. */
  readonly #loops = new PeriodicLoops((what, err) => this.#log.warn({ err: String(err) }, `${what} failed`));
  #workers: Promise<void>[] = [];
  #unsubscribe: (() => void) | undefined;
  #unsubscribeEvents: (() => void) | undefined;
  /** The Events this node recorded before this start (see provider-events.ts); empty until {@link prepare}. */
  #recorded: Promise<RecordedEvents> = Promise.resolve(new Map());

  constructor(opts: PodControllerOptions) {
    this.#settings = podControllerSettings(opts);
    this.#log = opts.logger ?? componentLogger('pod-controller', { node: opts.nodeName });
    this.pods = opts.pods;
    this.#events = new PodEvents(opts.events);
  }

  /** Prepares (see {@link prepare}), then runs the workers and the orphan collector, and enqueues every pod. */
  async start(): Promise<void> {
    await this.prepare();
    const o = this.#settings;
    this.#workers.push(runWorkers(this.#sync, o.workers, (k) => this.reconcile(k), { logger: this.#log }));
    this.#workers.push(
      runWorkers(this.#status, o.statusWorkers, (k) => this.syncStatus(k), { logger: this.#log }),
    );
    this.#loops.every(o.orphanIntervalMs, 'orphan collection', () => this.collectOrphans());
    if (o.provider.updateVolumes) {
      this.#loops.every(o.volumeRefreshIntervalMs, 'volume refresh', () => this.refreshVolumes());
    }
    for (const key of this.pods.keys()) this.#enqueue(key);
  }

  /**
   * Subscribes to the provider and the informer, waits for the cache and adopts the instances the provider
   * already runs; no worker runs yet (a direct test calls {@link reconcile} and {@link syncStatus} itself).
   */
  async prepare(): Promise<void> {
    const o = this.#settings;
    const startedAt = o.clock.now();
    // The Events this node recorded before a restart, so that provider events it lists again are not repeated.
    const recorded = (this.#recorded = loadRecordedEvents(o.recordedEvents, o.nodeName).catch(
      (err: unknown) => {
        this.#log.warn(
          { err: apiErrorMessage(err) },
          'cannot read recorded Events: provider events may repeat',
        );
        return new Map<string, number>();
      },
    ));
    this.#unsubscribe = o.provider.onStatus((s) => this.#onReport(s));
    this.#unsubscribeEvents = o.provider.onEvent?.(
      (e) => void this.#providerEvent(e, recorded, startedAt).catch(() => {}),
    );
    this.pods.onAdd((pod) => this.#enqueue(objectKey(pod)));
    this.pods.onUpdate((pod) => this.#enqueue(objectKey(pod)));
    this.pods.onDelete((pod) => this.#sync.add(objectKey(pod)));
    this.pods.start();
    await this.pods.synced;
    // Adopt what the provider already runs (after a restart) before any create: no duplicates.
    await this.#adopt();
  }

  #enqueue(key: string): void {
    this.#sync.add(key);
    this.#status.add(key);
  }

  /**
   * Takes over the instances the provider already runs, with the status the listing carries: a restart costs
   * the listing, not a status call per instance (1,000 instances on ECI were 1,000 calls and seconds of delay).
   * Only instances listed without a status (still being created) are asked for theirs, all at once.
   */
  async #adopt(): Promise<void> {
    const provider = this.#settings.provider;
    const missing: SandboxKey[] = [];
    for (const inst of await provider.list()) {
      const known = this.#known.ensure(inst.key);
      known.adopted();
      this.#known.seen(`${inst.key.namespace}/${inst.key.name}`, inst.key.uid);
      if (this.pods.get(inst.key.namespace, inst.key.name)?.metadata?.uid !== inst.key.uid) continue;
      if (inst.status) known.reported(inst.status);
      else missing.push(inst.key);
    }
    const reports = await Promise.all(missing.map((k) => provider.status(k).catch(() => undefined)));
    for (const report of reports) if (report) this.#known.ensure(report.key).reported(report);
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
    await this.#events.record(pod, e.type, e.reason, 'Provider', e.message);
  }

  /** Stops the queues and the informer; instances keep running. */
  async stop(): Promise<void> {
    this.#loops.stop();
    this.#unsubscribe?.();
    this.#unsubscribeEvents?.();
    await Promise.all([this.#sync.shutDown(), this.#status.shutDown()]);
    await Promise.all(this.#workers);
    await this.pods.stop();
  }

  #onReport(report: SandboxStatus): void {
    // A late report for a pod already gone (a poll that was in flight during its delete) must not bring the
    // UID back: its record would be kept forever.
    const pod = this.pods.get(report.key.namespace, report.key.name);
    if (pod?.metadata?.uid !== report.key.uid && !this.#known.get(report.key.uid)?.hasInstance) return;
    this.#known.ensure(report.key).reported(report);
    this.#status.add(`${report.key.namespace}/${report.key.name}`);
  }

  /** The sync queue's reconcile of `namespace/name`: create, delete or nothing, from the cache and the record. */
  async reconcile(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const pod = this.pods.get(namespace, name);
    const previousUid = this.#known.uidAt(key);
    if (previousUid && previousUid !== pod?.metadata?.uid && this.#known.get(previousUid)?.hasInstance) {
      // The pod is gone, or was re-created under the same name: its old instance goes.
      await this.#deleteInstance({ uid: previousUid, namespace, name });
    }
    if (!pod) {
      this.#known.gone(key);
      return;
    }
    const k = sandboxKey(pod);
    this.#known.seen(key, k.uid);
    if (pod.metadata?.deletionTimestamp) return this.#terminate(pod, k);
    const known = this.#known.get(k.uid);
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
      // A pod failed by the node (ProviderFailed, InsufficientCapacity) may still have an instance that an
      // earlier, timed-out create made after all: it must not run, and bill, behind a Failed pod.
      const report = known?.report;
      const running = report && report.phase !== 'Succeeded' && report.phase !== 'Failed';
      if (known?.hasInstance && (running || !report)) await this.#deleteInstance(k);
      this.#known.ensure(k).markFailed();
      return;
    }
    if (known?.hasInstance || known?.failed) return;
    return this.#create(pod, k);
  }

  async #create(pod: V1Pod, k: SandboxKey): Promise<ReconcileResult | void> {
    const o = this.#settings;
    const violations = sandboxViolations(pod.spec, pod.metadata?.ownerReferences);
    if (violations.length > 0) {
      const message = `a sandbox cannot run this pod: ${describeViolations(violations)}`;
      await this.#fail(pod, PodReason.UnsupportedPodSpec, message);
      return;
    }
    try {
      const inputs = await resolvePodInputs(pod, o.resolver, o.nodeAllocatable);
      const report = await o.provider.create(pod, inputs);
      this.#known.get(k.uid)?.resetCreateFailures();
      this.#onReport(report);
      this.#log.debug({ pod: `${k.namespace}/${k.name}` }, 'created sandbox');
    } catch (err) {
      const failure = classifyCreateError(err, o.provider.name);
      if (failure.kind === 'fail') return this.#fail(pod, failure.reason, failure.message);
      if (failure.kind === 'throttled') return { requeueAfter: failure.requeueAfter };
      const known = this.#known.ensure(k);
      const attempts = known.createFailed();
      if (failure.kind === 'missingReference') {
        await this.#missingReference(pod, failure.err);
        // Retried until the reference exists, as a kubelet does; never a Failed pod.
        return { requeueAfter: missingReferenceBackoffMs(attempts) };
      }
      const message = refusedCreateMessage(o.provider.name, attempts, o.maxCreateAttempts, failure.detail);
      void this.#events.record(pod, EventType.Warning, EventReason.ProviderCreateFailed, 'Create', message);
      if (attempts >= o.maxCreateAttempts) {
        known.resetCreateFailures();
        await this.#fail(pod, PodReason.ProviderFailed, message);
        return;
      }
      return { requeueAfter: createBackoffMs(attempts) };
    }
  }

  /** Reports a missing reference on the pod (see {@link missingReferenceReport}) until it exists. */
  async #missingReference(pod: V1Pod, err: MissingReferenceError): Promise<void> {
    const report = missingReferenceReport(pod, err, this.#settings.hostIP);
    if (report.failedMount)
      void this.#events.record(pod, EventType.Warning, EventReason.FailedMount, 'Create', report.failedMount);
    if (report.containerEvent) this.#events.container(pod, report.containerEvent);
    await this.#writeStatus(pod, report.status);
  }

  /** Graceful delete: the provider stops the containers within the grace period, then the pod goes. */
  async #terminate(pod: V1Pod, k: SandboxKey): Promise<void> {
    const known = this.#known.get(k.uid);
    if (known?.hasInstance) {
      const report = known.report;
      const views = report ? viewsFromReport(report) : viewsFromPodStatus(pod.status);
      if (!this.#settings.provider.reportsContainerEvents) {
        // A delete that a previous run of this node began (and recorded) is not told again after a restart.
        const recorded = await this.#recorded;
        for (const e of killingEvents(pod, views))
          if (!recorded.has(eventKey(k.uid, e.reason, e.message))) this.#events.container(pod, e);
      }
      const grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      await this.#deleteInstance(k, grace);
    }
    await deletePodNow(this.#settings.podClient, k);
  }

  async #deleteInstance(k: SandboxKey, gracePeriodSeconds?: number): Promise<void> {
    await this.#settings.provider.delete(k, gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds });
    this.#known.instanceDeleted(k.uid);
  }

  /** The status queue's reconcile of `namespace/name`: writes the status the provider's last report implies. */
  async syncStatus(key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    const pod = this.pods.get(namespace, name);
    if (!pod || pod.metadata?.deletionTimestamp) return;
    const known = this.#known.get(pod.metadata?.uid ?? '');
    const report = known?.report;
    if (!known || !report) return;
    // A terminal phase is final: never resurrect a Failed/Succeeded pod from a stale report.
    if (
      (pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') &&
      report.phase !== pod.status.phase
    )
      return;
    // Container Events follow the status write they describe, compared with the status last written (after a
    // restart: the one on the Pod): a kill between the two loses Events rather than repeating them.
    const before = viewsFromPodStatus(known.written ?? pod.status);
    await this.#writeStatus(pod, podStatusFrom(pod, report, this.#settings.hostIP));
    if (!this.#settings.provider.reportsContainerEvents)
      for (const e of containerEvents(pod, before, report)) this.#events.container(pod, e);
    const disruption = report.conditions?.find((c) => c.type === 'DisruptionTarget' && c.status === 'True');
    if (disruption && !known.evicted) {
      // The instance will be reclaimed (a spot release notice): evict the pod now, so that its controller starts
      // a replacement while this one still serves. An eviction a PodDisruptionBudget refuses (429) is retried;
      // the reclaim will not wait for it forever.
      await evictPod(this.#settings.podClient, report.key);
      known.markEvicted();
      void this.#events.record(
        pod,
        EventType.Warning,
        EventReason.Evicting,
        'Delete',
        `evicted before its instance is reclaimed: ${disruption.message ?? disruption.reason ?? ''}`,
      );
    }
  }

  async #writeStatus(pod: V1Pod, status: V1PodStatus): Promise<void> {
    const known = () => this.#known.ensure(sandboxKey(pod));
    if (statusFingerprint(status) === statusFingerprint(pod.status)) {
      known().statusWritten(status);
      return;
    }
    const { namespace, name } = pod.metadata!;
    if (await patchPodStatus(this.#settings.podClient, namespace!, name!, status))
      known().statusWritten(status);
  }

  async #fail(pod: V1Pod, reason: string, message: string): Promise<void> {
    this.#known.ensure(sandboxKey(pod)).markFailed();
    this.#log.info({ pod: objectKey(pod), reason, message }, 'pod failed');
    void this.#events.record(pod, EventType.Warning, reason, 'Create', message);
    await this.#writeStatus(pod, failedStatus(pod, this.#settings.hostIP, reason, message));
  }

  /**
   * Re-resolves the volumes of every running pod that has any to refresh (projected, configMap, secret,
   * downwardAPI) and hands them to the provider. Returns how many pods were refreshed.
   */
  async refreshVolumes(): Promise<number> {
    const o = this.#settings;
    const update = o.provider.updateVolumes?.bind(o.provider);
    if (!update) return 0;
    let refreshed = 0;
    for (const pod of this.pods.list()) {
      const uid = pod.metadata?.uid ?? '';
      if (!this.#known.get(uid)?.hasInstance || pod.metadata?.deletionTimestamp) continue;
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
      if (!(pod.spec?.volumes ?? []).some((v) => v.projected || v.configMap || v.secret || v.downwardAPI))
        continue;
      try {
        const { volumes } = await resolvePodInputs(pod, o.resolver, o.nodeAllocatable);
        await update(sandboxKey(pod), volumes ?? {});
        refreshed += 1;
      } catch (err) {
        // A vanished reference keeps the files the sandbox has, as a kubelet does; say so on the pod.
        void this.#events.record(
          pod,
          EventType.Warning,
          EventReason.FailedMount,
          'Refresh',
          `could not refresh volumes: ${apiErrorMessage(err)}`,
        );
      }
    }
    return refreshed;
  }

  /** Deletes instances whose pod no longer exists (by UID), once older than the minimum age. */
  async collectOrphans(now = this.#settings.clock.now()): Promise<number> {
    const live = new Set(this.pods.list().map((p) => p.metadata?.uid));
    let deleted = 0;
    for (const inst of await this.#settings.provider.list()) {
      if (live.has(inst.key.uid) || now - inst.createdAt.getTime() < this.#settings.orphanMinAgeMs) continue;
      this.#log.info({ instance: inst.key, providerID: inst.providerID }, 'deleting orphaned instance');
      await this.#deleteInstance(inst.key).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      deleted += 1;
    }
    return deleted;
  }

  /** How many pod UIDs the controller keeps a record for (nothing is kept for pods that are gone). */
  get knownPods(): number {
    return this.#known.size;
  }
}
