/**
 * The ElasticWorkload controller: owns how many replicas run on the source Deployment and on each unit
 * Deployment (docs/architecture.md#the-elasticworkload-controller). It never places pods. Level-based: each reconcile reads the ElasticWorkload,
 * the source, its units and (for capacity-aware overflow) the source's Unschedulable pods from the informer
 * caches, asks the pure `distribute`/`foldBack` for a plan, applies it, and writes status once.
 */
import type { KubeConfig, KubernetesObject, V1Deployment, V1Node, V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiErrorMessage, makeClients } from '../shared/client.ts';
import { EventRecorder } from '../shared/events.ts';
import { objectKey, splitKey } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import type { CachedInformer } from '../shared/namespaced-informers.ts';
import { sandboxViolations } from '../../api/sandbox-rules.ts';
import { WorkQueue, runWorkers } from '../shared/workqueue.ts';
import { FINALIZER, LABEL_ELASTIC_WORKLOAD, LABEL_UNIT } from '../../api/labels.ts';
import type { ElasticWorkload } from '../../api/elasticworkload.ts';
import { claimRival } from './claim.ts';
import { distribute, foldBack, type DistributionPlan } from './distribute.ts';
import {
  burstBlockedEvent,
  burstBlockedIsNew,
  foldBackTimedOut,
  readyReasonIsNew,
  sourceClaimed,
  sourceNotFound,
  spotFallback,
} from './events.ts';
import {
  failedUnitPods,
  foldBackLeftMs,
  observation,
  ownedUnits,
  requeueAfterMs,
  unitRefusals,
  unschedulableAges,
  type Seen,
} from './observe.ts';
import { ConditionType } from '../../api/elasticworkload.ts';
import { setCondition } from './conditions.ts';
import {
  isUnitFailure,
  isUnschedulable,
  unitTroubles,
  unschedulableUnitPods,
  type TemplateRefusal,
  type UnitTrouble,
} from './refusals.ts';
import { burstBlocked, elasticWorkloadStatus } from './status.ts';
import { stableJson } from './units.ts';
import { controllerInformers, type ControllerInformers } from './informers.ts';
import { ElasticWorkloadWriter, clientsApi } from './writer.ts';

/** The I/O of an {@link ElasticWorkloadController} and its tuning; {@link elasticWorkloadController} builds the real I/O. */
export interface ElasticWorkloadControllerOptions {
  /** The informers it reads and is woken by (not started: `start` starts them). */
  informers: ControllerInformers;
  /** Its writes (scale, unit apply and delete, finalizer, status) and Events. */
  writer: ElasticWorkloadWriter;
  logger?: Logger;
  /** The clock (a test's fake one). */
  now?: () => Date;
  /**
   * How long a unit whose provider ran out of capacity keeps only its ready replicas before it is tried again
   * (spot fallback); default 300
   */
  capacityCooldownSeconds?: number;
  /** Reconcile only ElasticWorkloads in these namespaces; default (or empty): every namespace. */
  namespaces?: readonly string[];
  /** Concurrent reconciles; default 16. */
  workers?: number;
  /** How long `start` waits for the virtual nodes to be listed before it reconciles without them; default 10 s. */
  virtualNodesSyncTimeoutMs?: number;
}

/**
 * Builds an {@link ElasticWorkloadController} on real clients and informers of `kc`.
 * @param opts.identity the Events' reporting instance (this process); default `spillway`
 */
export function elasticWorkloadController(
  kc: KubeConfig,
  opts: Omit<ElasticWorkloadControllerOptions, 'informers' | 'writer'> & { identity?: string } = {},
): ElasticWorkloadController {
  const { identity, ...rest } = opts;
  const clients = makeClients(kc);
  const log = opts.logger ?? componentLogger('elasticworkload');
  const namespaces = opts.namespaces?.length ? [...opts.namespaces] : undefined;
  const events = new EventRecorder({
    api: clients.events,
    controller: 'spillway.dev/elasticworkload-controller',
    instance: identity ?? 'spillway',
    onError: (err) => log.debug({ err: String(err) }, 'event not recorded'),
  });
  return new ElasticWorkloadController({
    ...rest,
    logger: log,
    informers: controllerInformers(kc, clients, namespaces),
    writer: new ElasticWorkloadWriter(clientsApi(clients), events),
  });
}

/**
 * Reconciles ElasticWorkloads in every namespace, or only in `namespaces` (namespaced mode: one namespaced list
 * and watch per namespace, which Roles in those namespaces allow; ElasticWorkloads elsewhere are never seen).
 */
export class ElasticWorkloadController {
  readonly #log: Logger;
  readonly #writer: ElasticWorkloadWriter;
  readonly #queue = new WorkQueue({ name: 'elasticworkload' });
  /** ElasticWorkloads as the apiserver stores them (plain JSON: metadata times are strings). */
  readonly ews: CachedInformer<KubernetesObject>;
  readonly deployments: CachedInformer<V1Deployment>;
  readonly pendingPods: CachedInformer<V1Pod>;
  /**
   * Failed unit pods: those that failed for lack of provider capacity drive spot fallback; those the provider
   * refused or failed hold their unit back the same way.
   */
  readonly failedPods: CachedInformer<V1Pod>;
  /**
   * spillway's virtual nodes (label-selected: a handful, not the cluster's nodes): their provider label says
   * whose static rules a unit's pod template must pass before the unit is scaled.
   */
  readonly virtualNodes: CachedInformer<V1Node>;
  /** The namespaces watched; undefined: all. */
  readonly namespaces: readonly string[] | undefined;
  #workers: Promise<void> | undefined;
  readonly #now: () => Date;
  readonly #capacityCooldownMs: number;
  readonly #workerCount: number;
  readonly #virtualNodesSyncTimeoutMs: number;

  constructor(opts: ElasticWorkloadControllerOptions) {
    this.namespaces = opts.namespaces?.length ? [...opts.namespaces] : undefined;
    this.#capacityCooldownMs = (opts.capacityCooldownSeconds ?? 300) * 1000;
    this.#workerCount = opts.workers ?? 16;
    this.#virtualNodesSyncTimeoutMs = opts.virtualNodesSyncTimeoutMs ?? 10_000;
    this.#log = opts.logger ?? componentLogger('elasticworkload');
    this.#now = opts.now ?? (() => new Date());
    this.#writer = opts.writer;
    this.ews = opts.informers.ews;
    this.deployments = opts.informers.deployments;
    this.pendingPods = opts.informers.pendingPods;
    this.failedPods = opts.informers.failedPods;
    this.virtualNodes = opts.informers.virtualNodes;
  }

  /** Starts the informers and the workers; resolves once the caches have synced. */
  async start(workers = this.#workerCount): Promise<void> {
    this.ews.onAdd((ew) => this.#queue.add(objectKey(ew)));
    this.ews.onUpdate((ew) => this.#queue.add(objectKey(ew)));
    const fromDeployment = (d: V1Deployment) => this.#enqueueFor(d.metadata?.namespace, d);
    this.deployments.onAdd(fromDeployment);
    this.deployments.onUpdate(fromDeployment);
    this.deployments.onDelete(fromDeployment);
    const fromPod = (p: V1Pod, old?: V1Pod) => {
      // A unit pod that the scheduler cannot place shows in the Capped condition: reconcile when one becomes
      // or stops being Unschedulable (not on every status change of every pod of a burst).
      const owner = p.metadata?.labels?.[LABEL_ELASTIC_WORKLOAD];
      if (owner && p.metadata?.labels?.[LABEL_UNIT] && (isUnschedulable(p) || isUnschedulable(old)))
        this.#queue.add(`${p.metadata.namespace}/${owner}`);
      for (const ew of this.#list(p.metadata?.namespace)) {
        if (ew.spec.overflow?.policy === 'WhenUnschedulable')
          this.#queue.add(`${ew.metadata.namespace}/${ew.metadata.name}`);
      }
    };
    this.pendingPods.onAdd((p) => fromPod(p));
    this.pendingPods.onUpdate(fromPod);
    this.pendingPods.onDelete((p) => fromPod(p));
    this.failedPods.onAdd((p) => {
      const ew = p.metadata?.labels?.[LABEL_ELASTIC_WORKLOAD];
      if (ew && isUnitFailure(p.status?.reason)) this.#queue.add(`${p.metadata?.namespace}/${ew}`);
    });
    // A virtual node that comes, goes or changes provider changes which unit templates can run.
    const everyEw = () => {
      for (const ew of this.#list(undefined)) this.#queue.add(`${ew.metadata.namespace}/${ew.metadata.name}`);
    };
    this.virtualNodes.onAdd(everyEw);
    this.virtualNodes.onDelete(everyEw);
    this.virtualNodes.onUpdate((n, old) => {
      if (stableJson(n.metadata?.labels) !== stableJson(old?.metadata?.labels)) everyEw();
    });
    const informers = [this.ews, this.deployments, this.pendingPods, this.failedPods];
    this.#log.info(
      { namespaces: this.namespaces ?? 'all' },
      this.namespaces
        ? `reconciling ElasticWorkloads in ${this.namespaces.join(', ')} only; any other namespace's are ignored`
        : 'reconciling ElasticWorkloads in every namespace',
    );
    for (const i of informers) i.start();
    this.virtualNodes.start();
    await Promise.all(informers.map((i) => i.synced));
    // Without the virtual nodes the controller only cannot check templates before scaling (the node still
    // refuses such pods, and failing units are held back): a missing `list nodes` grant must not stop it.
    const waited = new AbortController();
    await Promise.race([
      this.virtualNodes.synced.catch(() => undefined),
      sleep(this.#virtualNodesSyncTimeoutMs, undefined, { signal: waited.signal }).catch(() => undefined),
    ]);
    waited.abort();
    if (!this.virtualNodes.hasSynced())
      this.#log.warn(
        'virtual nodes not listed yet: unit pod templates are not checked against their providers',
      );
    this.#workers = runWorkers(this.#queue, workers, (key) => this.reconcile(key), { logger: this.#log });
  }

  /** Stops the workers and informers. */
  async stop(): Promise<void> {
    await this.#queue.shutDown();
    await this.#workers;
    await Promise.all([
      this.ews.stop(),
      this.deployments.stop(),
      this.pendingPods.stop(),
      this.failedPods.stop(),
      this.virtualNodes.stop(),
    ]);
  }

  #list(namespace: string | undefined): ElasticWorkload[] {
    return this.ews.list(namespace) as unknown as ElasticWorkload[];
  }

  #enqueueFor(namespace: string | undefined, d: V1Deployment): void {
    const owner = d.metadata?.labels?.[LABEL_ELASTIC_WORKLOAD];
    if (owner) this.#queue.add(`${namespace}/${owner}`);
    for (const ew of this.#list(namespace)) {
      if (ew.spec.sourceTarget.name === d.metadata?.name) this.#queue.add(`${namespace}/${ew.metadata.name}`);
    }
  }

  /**
   * Units held at their ready replicas because their pods recently failed on the node (refusals.ts), with the
   * time each cooldown ends. Failed pods older than the cooldown are deleted: they have said what they had to.
   */
  async #troubles(ew: ElasticWorkload, now: Date): Promise<Map<string, UnitTrouble>> {
    const { recent, expired } = failedUnitPods(
      this.failedPods.list(ew.metadata.namespace),
      ew.metadata.name,
      this.#capacityCooldownMs,
      now,
    );
    for (const p of expired) {
      const err = await this.#writer.deleteFailedPod(p.metadata!.namespace!, p.metadata!.name!);
      if (err)
        this.#log.warn(
          { pod: objectKey(p), err: apiErrorMessage(err) },
          'could not delete a failed unit pod',
        );
    }
    return unitTroubles(recent, this.#capacityCooldownMs, now.getTime());
  }

  /** One level-based pass over the ElasticWorkload `key` (`namespace/name`): claim, observe, plan, apply, status. */
  async reconcile(key: string): Promise<{ requeueAfter?: number } | void> {
    const { namespace, name } = splitKey(key);
    const ew = this.ews.get(namespace, name) as unknown as ElasticWorkload | undefined;
    if (!ew) return;
    const deleting = Boolean(ew.metadata.deletionTimestamp);
    if (!ew.metadata.finalizers?.includes(FINALIZER)) {
      // Not yet ours (the finalizer comes first: a deletion must find it), or already released.
      if (!deleting) await this.#writer.addFinalizer(ew);
      return;
    }
    const now = this.#now();
    const units = ownedUnits(ew, this.deployments.list(namespace));
    const rival = claimRival(ew, this.#list(namespace));
    if (rival) return this.#claimLost(ew, rival, units, now);
    const source = this.deployments.get(namespace, ew.spec.sourceTarget.name);
    if (!source) return this.#sourceMissing(ew, units, now);
    const seen = await this.#observe(ew, source, units, now);
    const plan = deleting ? foldBack(ew.spec, seen.observed) : distribute(ew.spec, seen.observed);
    await this.#writer.scaleSource(ew, source, plan.source.replicas);
    for (const u of plan.units) await this.#writer.applyUnit(ew, source, units.get(u.name), u);
    let foldBackLeft: number | undefined;
    if (deleting) {
      if (plan.units.every((u) => u.replicas === 0)) return this.#writer.removeFinalizer(ew, units);
      foldBackLeft = foldBackLeftMs(ew, now);
      if (foldBackLeft <= 0) return this.#foldBackTimedOut(ew, source, units, plan);
    }
    this.#tellBlocked(ew, plan, seen);
    await this.#writer.writeStatus(
      ew,
      elasticWorkloadStatus({
        ew,
        source,
        units,
        plan,
        violations: seen.violations,
        refusals: seen.refusals,
        troubles: seen.troubles,
        unschedulable: unschedulableUnitPods(this.pendingPods.list(namespace), ew.metadata.name),
        now,
      }),
    );
    const requeueAfter = requeueAfterMs(plan, foldBackLeft, seen.troubles, now);
    return requeueAfter === undefined ? undefined : { requeueAfter };
  }

  /**
   * Another ElasticWorkload claimed the source first: say so and touch nothing. Deleting a claim that lost folds
   * nothing back (it never touched the source: it would scale the winner's source to the loser's replicas).
   */
  async #claimLost(
    ew: ElasticWorkload,
    rival: ElasticWorkload,
    units: Map<string, V1Deployment>,
    now: Date,
  ): Promise<void> {
    if (ew.metadata.deletionTimestamp) return this.#writer.removeFinalizer(ew, units);
    const event = sourceClaimed(ew.spec.sourceTarget.name, rival.metadata.name);
    if (readyReasonIsNew(ew, event.reason)) void this.#writer.event(ew, event);
    await this.#writer.writeStatus(ew, {
      ...ew.status,
      conditions: setCondition(
        ew.status?.conditions,
        { type: ConditionType.Ready, status: 'False', reason: event.reason, message: event.message },
        now,
      ),
    });
  }

  /** The source does not exist: a deletion is done; otherwise say so (once) and show it in the status. */
  async #sourceMissing(ew: ElasticWorkload, units: Map<string, V1Deployment>, now: Date): Promise<void> {
    if (ew.metadata.deletionTimestamp) return this.#writer.removeFinalizer(ew, units);
    const onUnits = [...units.values()].reduce((n, d) => n + (d.spec?.replicas ?? 0), 0);
    const event = sourceNotFound(ew.spec.sourceTarget.name, ew.metadata.namespace!, onUnits);
    if (readyReasonIsNew(ew, event.reason)) void this.#writer.event(ew, event);
    await this.#writer.writeStatus(
      ew,
      elasticWorkloadStatus({ ew, source: undefined, units, plan: undefined, violations: [], now }),
    );
  }

  /** What holds bursting back, read from the caches (failed pods past their cooldown are deleted on the way). */
  async #observe(
    ew: ElasticWorkload,
    source: V1Deployment,
    units: Map<string, V1Deployment>,
    now: Date,
  ): Promise<Seen> {
    const violations = sandboxViolations(source.spec?.template?.spec, [], 'spec.template.spec');
    const troubles = await this.#troubles(ew, now);
    // Checked before any scaling: a unit whose template no provider can run never gets a replica to fail.
    const refusals = ew.metadata.deletionTimestamp
      ? new Map<string, TemplateRefusal>()
      : unitRefusals(ew, source, this.virtualNodes.list());
    const unschedulableForSeconds = unschedulableAges(
      source,
      this.pendingPods.list(source.metadata?.namespace),
      now,
    );
    return {
      observed: observation({
        ew,
        source,
        units,
        unschedulableForSeconds,
        violations,
        refusals,
        troubles,
        now,
      }),
      violations,
      refusals,
      troubles,
    };
  }

  /** The deletion waited past `foldBackTimeoutSeconds`: remove the units anyway, and say so. */
  async #foldBackTimedOut(
    ew: ElasticWorkload,
    source: V1Deployment,
    units: Map<string, V1Deployment>,
    plan: DistributionPlan,
  ): Promise<void> {
    const onUnits = plan.units.reduce((n, u) => n + u.replicas, 0);
    void this.#writer.event(
      ew,
      foldBackTimedOut(
        source.status?.readyReplicas ?? 0,
        plan.source.replicas,
        ew.spec.foldBackTimeoutSeconds ?? 600,
        onUnits,
      ),
    );
    return this.#writer.removeFinalizer(ew, units);
  }

  /**
   * Events for what blocks bursting, each time it changes (not on every reconcile while it holds), and for each
   * unit that falls back for lack of capacity.
   */
  #tellBlocked(ew: ElasticWorkload, plan: DistributionPlan, seen: Seen): void {
    const { violations, refusals, troubles } = seen;
    const blocked = burstBlocked(ew.spec.sourceTarget.name, violations, refusals, troubles);
    if (blocked.blocked && burstBlockedIsNew(ew, blocked.message))
      void this.#writer.event(ew, burstBlockedEvent(blocked, violations));
    for (const [unit, { until, kind }] of troubles) {
      const fell = plan.units.find((u) => u.name === unit);
      const max = ew.spec.elasticUnit?.find((x) => x.name === unit)?.max ?? Infinity;
      if (kind === 'NoCapacity' && fell && fell.goal < max)
        void this.#writer.event(ew, spotFallback(unit, fell.goal, until));
    }
  }
}
