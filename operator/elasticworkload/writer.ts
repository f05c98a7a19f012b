/**
 * What the ElasticWorkload controller writes, and how: the source's replicas (recording the original count once),
 * unit Deployments applied server-side and deleted with background propagation, the ElasticWorkload's finalizer and
 * status (merge patches; a 404 means it is already gone), and the Events users read with `kubectl describe ew`.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { applyObject } from '../shared/apply.ts';
import { apiErrorMessage, isApiError, type Clients } from '../shared/client.ts';
import { type EventRecorder, EventType } from '../shared/events.ts';
import {
  ANNOTATION_ORIGINAL_REPLICAS,
  API_VERSION,
  FINALIZER,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
  type ElasticWorkload,
} from './api.ts';
import type { DistributionPlan } from './distribute.ts';
import { sameStatus } from './status.ts';
import { unitDeployment, unitIsCurrent } from './units.ts';

/** The field manager of everything this controller writes. */
export const FIELD_MANAGER = 'spillway-elasticworkload';
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The ElasticWorkload controller's writes. */
export class ElasticWorkloadWriter {
  readonly #c: Clients;
  readonly #events: EventRecorder;

  constructor(clients: Clients, events: EventRecorder) {
    this.#c = clients;
    this.#events = events;
  }

  async scaleSource(ew: ElasticWorkload, source: V1Deployment, replicas: number): Promise<void> {
    const current = source.spec?.replicas ?? 1;
    const original = source.metadata?.annotations?.[ANNOTATION_ORIGINAL_REPLICAS];
    if (current === replicas && original !== undefined) return;
    await this.#c.apps.patchNamespacedDeployment(
      {
        name: source.metadata!.name!,
        namespace: source.metadata!.namespace!,
        body: {
          // The replicas the source had before spillway managed it, for the record.
          metadata:
            original === undefined
              ? { annotations: { [ANNOTATION_ORIGINAL_REPLICAS]: String(current) } }
              : {},
          spec: { replicas },
        },
        fieldManager: FIELD_MANAGER,
      },
      mergePatch,
    );
    if (current !== replicas) {
      void this.event(
        ew,
        EventType.Normal,
        'ScaledSource',
        'Scale',
        `scaled source Deployment ${source.metadata?.name} from ${current} to ${replicas}`,
      );
    }
  }

  async applyUnit(
    ew: ElasticWorkload,
    source: V1Deployment,
    existing: V1Deployment | undefined,
    u: DistributionPlan['units'][number],
  ): Promise<void> {
    const unit = ew.spec.elasticUnit?.find((x) => x.name === u.name);
    if (!unit || (!u.inSpec && u.replicas === 0)) {
      if (existing && u.replicas === 0) await this.deleteUnit(ew, existing);
      return;
    }
    if (!existing && u.replicas === 0) return;
    const desired = unitDeployment(ew, source, unit, u.replicas);
    if (existing && existing.spec?.replicas === u.replicas && unitIsCurrent(existing, desired)) return;
    try {
      await applyObject(this.#c.objects, desired, { fieldManager: FIELD_MANAGER, force: true });
    } catch (err) {
      void this.event(
        ew,
        EventType.Warning,
        'UnitApplyFailed',
        'Apply',
        `could not apply unit Deployment ${desired.metadata?.name}: ${apiErrorMessage(err)}`,
      );
      throw err;
    }
    const before = existing?.spec?.replicas ?? 0;
    if (before !== u.replicas) {
      void this.event(
        ew,
        EventType.Normal,
        'ScaledUnit',
        'Scale',
        `scaled unit ${u.name} (Deployment ${desired.metadata?.name}) from ${before} to ${u.replicas}`,
      );
    }
  }

  async deleteUnit(ew: ElasticWorkload, unit: V1Deployment): Promise<void> {
    try {
      // Background propagation: an orphaned unit ReplicaSet would be adopted by the source.
      await this.#c.apps.deleteNamespacedDeployment({
        name: unit.metadata!.name!,
        namespace: unit.metadata!.namespace!,
        propagationPolicy: 'Background',
      });
      void this.event(
        ew,
        EventType.Normal,
        'DeletedUnit',
        'Delete',
        `deleted unit Deployment ${unit.metadata?.name}`,
      );
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async removeFinalizer(ew: ElasticWorkload, units: Map<string, V1Deployment>): Promise<void> {
    for (const d of units.values()) await this.deleteUnit(ew, d);
    await this.patchEw(ew, {
      metadata: {
        finalizers: (ew.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        resourceVersion: ew.metadata.resourceVersion,
      },
    });
  }

  /** A merge patch of the ElasticWorkload (or its status subresource); a 404 means it is already gone. */
  async patchEw(ew: ElasticWorkload, body: object, subresource?: 'status'): Promise<void> {
    const params = {
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ew.metadata.namespace!,
      name: ew.metadata.name,
      body,
    };
    try {
      await (subresource === 'status'
        ? this.#c.customObjects.patchNamespacedCustomObjectStatus(params, mergePatch)
        : this.#c.customObjects.patchNamespacedCustomObject(params, mergePatch));
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async writeStatus(ew: ElasticWorkload, status: ElasticWorkload['status']): Promise<void> {
    if (!sameStatus(status, ew.status)) await this.patchEw(ew, { status }, 'status');
  }

  event(ew: ElasticWorkload, type: EventType, reason: string, action: string, note: string): Promise<void> {
    return this.#events.record(
      {
        apiVersion: API_VERSION,
        kind: KIND,
        namespace: ew.metadata.namespace,
        name: ew.metadata.name,
        uid: ew.metadata.uid,
      },
      type,
      reason,
      action,
      note,
    );
  }
}
