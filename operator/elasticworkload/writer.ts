/**
 * What the ElasticWorkload controller writes, and how: the source's replicas (recording the original count once),
 * unit Deployments applied server-side and deleted with background propagation, the ElasticWorkload's finalizer and
 * status (merge patches; a 404 means it is already gone), and the Events users read with `kubectl describe ew`.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { applyObject } from '../shared/apply.ts';
import { apiErrorMessage, isApiError, type Clients } from '../shared/client.ts';
import { EventType, type EventRecorder } from '../shared/events.ts';
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

/**
 * The apiserver calls the controller makes, each one request: the seam a unit test replaces with a recording fake.
 * Errors are the client's (a 404 is an ApiException with code 404).
 */
export interface ElasticWorkloadApi {
  /** A merge patch of a Deployment. */
  patchDeployment(namespace: string, name: string, body: object): Promise<void>;
  /** A server-side apply of a whole Deployment (forced, this controller's field manager). */
  applyDeployment(d: V1Deployment): Promise<void>;
  /** Deletes a Deployment with background propagation. */
  deleteDeployment(namespace: string, name: string): Promise<void>;
  /** A merge patch of an ElasticWorkload, or of its status subresource. */
  patchElasticWorkload(namespace: string, name: string, body: object, subresource?: 'status'): Promise<void>;
  /** Deletes a pod. */
  deletePod(namespace: string, name: string): Promise<void>;
}

/** Where the controller's Events go: an {@link EventRecorder}, or a recording fake. */
export type EventSink = Pick<EventRecorder, 'record'>;

/** The {@link ElasticWorkloadApi} of real clients. */
export function clientsApi(c: Clients): ElasticWorkloadApi {
  const ew = (namespace: string, name: string, body: object) => ({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    namespace,
    name,
    body,
  });
  return {
    async patchDeployment(namespace, name, body) {
      await c.apps.patchNamespacedDeployment(
        { name, namespace, body, fieldManager: FIELD_MANAGER },
        mergePatch,
      );
    },
    async applyDeployment(d) {
      await applyObject(c.objects, d, { fieldManager: FIELD_MANAGER, force: true });
    },
    async deleteDeployment(namespace, name) {
      // Background propagation: an orphaned unit ReplicaSet would be adopted by the source.
      await c.apps.deleteNamespacedDeployment({ name, namespace, propagationPolicy: 'Background' });
    },
    async patchElasticWorkload(namespace, name, body, subresource) {
      await (subresource === 'status'
        ? c.customObjects.patchNamespacedCustomObjectStatus(ew(namespace, name, body), mergePatch)
        : c.customObjects.patchNamespacedCustomObject(ew(namespace, name, body), mergePatch));
    },
    async deletePod(namespace, name) {
      await c.core.deleteNamespacedPod({ name, namespace });
    },
  };
}

/** The ElasticWorkload controller's writes: each skips what is already so, and records the Events they cause. */
export class ElasticWorkloadWriter {
  readonly #api: ElasticWorkloadApi;
  readonly #events: EventSink;

  constructor(api: ElasticWorkloadApi, events: EventSink) {
    this.#api = api;
    this.#events = events;
  }

  async scaleSource(ew: ElasticWorkload, source: V1Deployment, replicas: number): Promise<void> {
    const current = source.spec?.replicas ?? 1;
    const original = source.metadata?.annotations?.[ANNOTATION_ORIGINAL_REPLICAS];
    if (current === replicas && original !== undefined) return;
    await this.#api.patchDeployment(source.metadata!.namespace!, source.metadata!.name!, {
      // The replicas the source had before spillway managed it, for the record.
      metadata:
        original === undefined ? { annotations: { [ANNOTATION_ORIGINAL_REPLICAS]: String(current) } } : {},
      spec: { replicas },
    });
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
      await this.#api.applyDeployment(desired);
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
      await this.#api.deleteDeployment(unit.metadata!.namespace!, unit.metadata!.name!);
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
    try {
      await this.#api.patchElasticWorkload(ew.metadata.namespace!, ew.metadata.name, body, subresource);
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async writeStatus(ew: ElasticWorkload, status: ElasticWorkload['status']): Promise<void> {
    if (!sameStatus(status, ew.status)) await this.patchEw(ew, { status }, 'status');
  }

  /** Deletes a Failed pod (already gone: fine); a failure is returned for the caller to log, never thrown. */
  async deleteFailedPod(namespace: string, name: string): Promise<unknown> {
    try {
      await this.#api.deletePod(namespace, name);
      return undefined;
    } catch (err) {
      return isApiError(err, 404) ? undefined : err;
    }
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
