/**
 * The ElasticWorkload controller: owns how many replicas run on the source Deployment and on each unit
 * Deployment (DESIGN.md §2.1). It never places pods. Level-based: each reconcile reads the ElasticWorkload,
 * the source, its units and (for capacity-aware overflow) the source's Unschedulable pods from the informer
 * caches, asks the pure `distribute`/`foldBack` for a plan, applies it, and writes status once.
 */
import type { KubeConfig, KubernetesObject, V1Deployment, V1Node, V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiErrorMessage, makeClients } from '../shared/client.ts';
import { EventRecorder, EventType } from '../shared/events.ts';
import { objectKey, splitKey } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import type { CachedInformer } from '../shared/namespaced-informers.ts';
import { describeViolations, sandboxViolations } from '../shared/sandbox-rules.ts';
import { WorkQueue, runWorkers } from '../shared/workqueue.ts';
import { FINALIZER, LABEL_ELASTIC_WORKLOAD, LABEL_UNIT, type ElasticWorkload } from './api.ts';
import { distribute, foldBack, type Observation } from './distribute.ts';
import { ConditionType, setCondition } from './conditions.ts';
import {
  failedUnitPod,
  isUnitFailure,
  isUnschedulable,
  templateRefusal,
  unitTroubles,
  unschedulableUnitPods,
  type FailedUnitPod,
  type TemplateRefusal,
  type UnitTrouble,
} from './refusals.ts';
import { burstBlocked, elasticWorkloadStatus } from './status.ts';
import { stableJson, unitPodTemplate } from './units.ts';
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
  readonly #w: ElasticWorkloadWriter;
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
    this.#w = opts.writer;
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

  /** The unit Deployments of `ew` that exist, by unit name. */
  #units(ew: ElasticWorkload): Map<string, V1Deployment> {
    const out = new Map<string, V1Deployment>();
    for (const d of this.deployments.list(ew.metadata.namespace)) {
      const owned = d.metadata?.ownerReferences?.some((o) => o.uid === ew.metadata.uid && o.controller);
      const unit = d.metadata?.labels?.[LABEL_UNIT];
      if (owned && unit && d.metadata?.labels?.[LABEL_ELASTIC_WORKLOAD] === ew.metadata.name)
        out.set(unit, d);
    }
    return out;
  }

  /**
   * Units held at their ready replicas because their pods recently failed on the node: for lack of provider
   * capacity (spot fallback), or refused or failed by the provider (refusals.ts), with the time each cooldown
   * ends. Failed pods older than the cooldown are deleted: they have said what they had to.
   */
  async #troubles(ew: ElasticWorkload, now: Date): Promise<Map<string, UnitTrouble>> {
    const failed: FailedUnitPod[] = [];
    for (const p of this.failedPods.list(ew.metadata.namespace)) {
      const f = failedUnitPod(p, ew.metadata.name, now);
      if (!f) continue;
      if (f.at + this.#capacityCooldownMs <= now.getTime()) {
        const err = await this.#w.deleteFailedPod(p.metadata!.namespace!, p.metadata!.name!);
        if (err)
          this.#log.warn(
            { pod: objectKey(p), err: apiErrorMessage(err) },
            'could not delete a failed unit pod',
          );
        continue;
      }
      failed.push(f);
    }
    return unitTroubles(failed, this.#capacityCooldownMs, now.getTime());
  }

  /** The spec units whose pod template no virtual node they may land on can run, by unit name. */
  #refusals(ew: ElasticWorkload, source: V1Deployment): Map<string, TemplateRefusal> {
    const out = new Map<string, TemplateRefusal>();
    const nodes = this.virtualNodes.list();
    if (nodes.length === 0) return out;
    for (const unit of ew.spec.elasticUnit ?? []) {
      const refusal = templateRefusal(unitPodTemplate(ew, source, unit), nodes);
      if (refusal) out.set(unit.name, refusal);
    }
    return out;
  }

  /** Seconds each Unschedulable pod of `source` has been waiting (unit pods excluded). */
  #unschedulable(source: V1Deployment, now: Date): number[] {
    const match = source.spec?.selector?.matchLabels ?? {};
    return this.pendingPods
      .list(source.metadata?.namespace)
      .filter((p) => {
        const labels = p.metadata?.labels ?? {};
        return !labels[LABEL_UNIT] && Object.entries(match).every(([k, v]) => labels[k] === v);
      })
      .flatMap((p) => {
        const c = p.status?.conditions?.find((x) => x.type === 'PodScheduled');
        if (c?.status !== 'False' || c.reason !== 'Unschedulable') return [];
        const since = c.lastTransitionTime ? new Date(c.lastTransitionTime).getTime() : now.getTime();
        return [Math.max(0, (now.getTime() - since) / 1000)];
      });
  }

  /** One level-based pass over the ElasticWorkload `key` (`namespace/name`). */
  async reconcile(key: string): Promise<{ requeueAfter?: number } | void> {
    const { namespace, name } = splitKey(key);
    const ew = this.ews.get(namespace, name) as unknown as ElasticWorkload | undefined;
    if (!ew) return;
    const deleting = Boolean(ew.metadata.deletionTimestamp);
    if (!deleting && !ew.metadata.finalizers?.includes(FINALIZER)) {
      await this.#w.patchEw(ew, {
        metadata: {
          finalizers: [...(ew.metadata.finalizers ?? []), FINALIZER],
          resourceVersion: ew.metadata.resourceVersion,
        },
      });
      return;
    }
    if (deleting && !ew.metadata.finalizers?.includes(FINALIZER)) return;
    const now = this.#now();
    const source = this.deployments.get(namespace, ew.spec.sourceTarget.name);
    const units = this.#units(ew);
    // One source, one owner: a second ElasticWorkload on the same Deployment would fight the first over its
    // replicas for ever. The oldest claim wins; the others say so and touch nothing.
    const rival = this.#list(namespace).find(
      (o) =>
        o.metadata.uid !== ew.metadata.uid &&
        o.spec.sourceTarget.name === ew.spec.sourceTarget.name &&
        olderThan(o, ew),
    );
    // A claim that lost never touched the source: deleting it folds nothing back (it would scale the
    // winner's source to the loser's replicas).
    if (rival && deleting) return this.#w.removeFinalizer(ew, units);
    if (rival) {
      const message = `Deployment ${ew.spec.sourceTarget.name} is already split by ElasticWorkload ${rival.metadata.name}: delete one of the two`;
      if (ew.status?.conditions?.find((c) => c.type === ConditionType.Ready)?.reason !== 'SourceClaimed') {
        void this.#w.event(ew, EventType.Warning, 'SourceClaimed', 'Claim', message);
      }
      await this.#w.writeStatus(ew, {
        ...ew.status,
        conditions: setCondition(
          ew.status?.conditions,
          { type: ConditionType.Ready, status: 'False', reason: 'SourceClaimed', message },
          now,
        ),
      });
      return;
    }
    if (!source) {
      if (deleting) return this.#w.removeFinalizer(ew, units);
      const onUnits = [...units.values()].reduce((n, d) => n + (d.spec?.replicas ?? 0), 0);
      // Once per transition (the stored Ready reason says whether it was already told).
      if (ew.status?.conditions?.find((c) => c.type === ConditionType.Ready)?.reason !== 'SourceNotFound') {
        void this.#w.event(
          ew,
          EventType.Warning,
          'SourceNotFound',
          'Scale',
          onUnits > 0
            ? `Deployment ${ew.spec.sourceTarget.name} is gone while ${onUnits} replicas still run on elastic units: re-create it, or delete this ElasticWorkload to remove the units`
            : `Deployment ${ew.spec.sourceTarget.name} not found in namespace ${namespace}: no replica is placed until it exists; create it or fix sourceTarget.name`,
        );
      }
      await this.#w.writeStatus(
        ew,
        elasticWorkloadStatus({ ew, source, units, plan: undefined, violations: [], now }),
      );
      return;
    }
    const violations = sandboxViolations(source.spec?.template?.spec, [], 'spec.template.spec');
    const troubles = await this.#troubles(ew, now);
    // Checked before any scaling: a unit whose template no provider can run never gets a replica to fail.
    const refusals = deleting ? new Map<string, TemplateRefusal>() : this.#refusals(ew, source);
    const lastOverflow = ew.status?.lastOverflowTime
      ? new Date(ew.status.lastOverflowTime).getTime()
      : undefined;
    const observed: Observation = {
      source: {
        desired: source.spec?.replicas ?? 1,
        ready: source.status?.readyReplicas ?? 0,
        unschedulableForSeconds: this.#unschedulable(source, now),
      },
      units: [
        ...[...units].map(([unit, d]) => ({
          name: unit,
          desired: d.spec?.replicas ?? 0,
          ready: d.status?.readyReplicas ?? 0,
          capacityLimited: troubles.has(unit),
          refused: refusals.has(unit),
        })),
        ...[...refusals.keys()]
          .filter((unit) => !units.has(unit))
          .map((unit) => ({ name: unit, desired: 0, ready: 0, refused: true })),
      ],
      blocked: violations.length > 0,
      ...(lastOverflow === undefined
        ? {}
        : { secondsSinceLastOverflow: (now.getTime() - lastOverflow) / 1000 }),
    };
    const plan = deleting ? foldBack(ew.spec, observed) : distribute(ew.spec, observed);
    await this.#w.scaleSource(ew, source, plan.source.replicas);
    for (const u of plan.units) await this.#w.applyUnit(ew, source, units.get(u.name), u);
    if (deleting && plan.units.every((u) => u.replicas === 0)) return this.#w.removeFinalizer(ew, units);
    const foldBackLeftMs = deleting ? this.#foldBackLeftMs(ew, now) : undefined;
    if (foldBackLeftMs !== undefined && foldBackLeftMs <= 0) {
      const onUnits = plan.units.reduce((n, u) => n + u.replicas, 0);
      void this.#w.event(
        ew,
        EventType.Warning,
        'FoldBackTimedOut',
        'Delete',
        `the source ran ${source.status?.readyReplicas ?? 0} of ${plan.source.replicas} replicas ${ew.spec.foldBackTimeoutSeconds ?? 600} s after the deletion: removing the units anyway, so ${onUnits} replicas wait as pending pods of the source`,
      );
      return this.#w.removeFinalizer(ew, units);
    }
    // An Event each time what blocks bursting changes (not on every reconcile while it holds).
    const blocked = burstBlocked(ew.spec.sourceTarget.name, violations, refusals, troubles);
    const stored = ew.status?.conditions?.find((c) => c.type === ConditionType.BurstBlocked);
    if (blocked.blocked && (stored?.status !== 'True' || stored.message !== blocked.message)) {
      void this.#w.event(
        ew,
        EventType.Warning,
        blocked.reason === 'UnsupportedPodSpec' ? 'BurstBlocked' : blocked.reason,
        'Block',
        blocked.reason === 'UnsupportedPodSpec'
          ? `no replica can burst: ${describeViolations(violations)}`
          : blocked.message,
      );
    }
    for (const [unit, { until, kind }] of troubles) {
      const fell = plan.units.find((u) => u.name === unit);
      const max = ew.spec.elasticUnit?.find((x) => x.name === unit)?.max ?? Infinity;
      if (kind === 'NoCapacity' && fell && fell.goal < max) {
        void this.#w.event(
          ew,
          EventType.Warning,
          'SpotFallback',
          'Scale',
          `unit ${unit} has no provider capacity (its pods failed with InsufficientCapacity): it keeps its ${fell.goal} ready replicas and the rest overflow into the next unit until ${new Date(until).toISOString()}`,
        );
      }
    }
    await this.#w.writeStatus(
      ew,
      elasticWorkloadStatus({
        ew,
        source,
        units,
        plan,
        violations,
        refusals,
        troubles,
        unschedulable: unschedulableUnitPods(this.pendingPods.list(namespace), ew.metadata.name),
        now,
      }),
    );
    const waits = [
      ...(plan.recheckAfterSeconds ? [plan.recheckAfterSeconds * 1000] : []),
      ...(foldBackLeftMs !== undefined ? [foldBackLeftMs + 100] : []),
      ...[...troubles.values()].map(({ until }) => until - now.getTime() + 1000),
    ];
    return waits.length > 0 ? { requeueAfter: Math.min(...waits) } : undefined;
  }

  /** How long a deletion may still wait for the fold-back (negative: past `foldBackTimeoutSeconds`). */
  #foldBackLeftMs(ew: ElasticWorkload, now: Date): number {
    const since = now.getTime() - new Date(ew.metadata.deletionTimestamp!).getTime();
    return (ew.spec.foldBackTimeoutSeconds ?? 600) * 1000 - since;
  }
}

/** Whether `a` claimed its source before `b` (creation time, then name, so that exactly one wins a tie). */
function olderThan(a: ElasticWorkload, b: ElasticWorkload): boolean {
  const at = (e: ElasticWorkload) => new Date(String(e.metadata.creationTimestamp ?? 0)).getTime();
  return at(a) < at(b) || (at(a) === at(b) && a.metadata.name < b.metadata.name);
}
