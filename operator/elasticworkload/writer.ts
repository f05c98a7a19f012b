/**
 * What the ElasticWorkload controller writes, and how: the source's replicas (recording the original count once),
 * unit Deployments applied server-side and deleted with background propagation, the ElasticWorkload's finalizer and
 * status (merge patches; a 404 means it is already gone), and the Events users read with `kubectl describe ew`.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { applyObject } from '../shared/apply.ts';
import { apiErrorMessage, isApiError, type Clients } from '../shared/client.ts';
import type { EventRecorder } from '../shared/events.ts';
import { ANNOTATION_ORIGINAL_REPLICAS, FINALIZER } from '../../api/labels.ts';
import {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
  type ElasticWorkload,
} from '../../api/elasticworkload.ts';
import type { DistributionPlan } from './distribute.ts';
import { deletedUnit, scaledSource, scaledUnit, unitApplyFailed, type WorkloadEvent } from './events.ts';
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

/** `err` wrapped with what was being done ("scaling source Deployment ns/name: …"), the original as its cause. */
export function wrapError(doing: string, err: unknown): Error {
  return new Error(`${doing}: ${apiErrorMessage(err)}`, { cause: err });
}

/** The ElasticWorkload controller's writes: each skips what is already so, and records the Events they cause. */
export class ElasticWorkloadWriter {
  readonly #api: ElasticWorkloadApi;
  readonly #events: EventSink;

  constructor(api: ElasticWorkloadApi, events: EventSink) {
    this.#api = api;
    this.#events = events;
  }

  /** Sets the source's replicas, recording the count it had before spillway managed it (once). */
  async scaleSource(ew: ElasticWorkload, source: V1Deployment, replicas: number): Promise<void> {
    const current = source.spec?.replicas ?? 1;
    const original = source.metadata?.annotations?.[ANNOTATION_ORIGINAL_REPLICAS];
    if (current === replicas && original !== undefined) return;
    const { namespace, name } = source.metadata as { namespace: string; name: string };
    try {
      await this.#api.patchDeployment(namespace, name, {
        // The replicas the source had before spillway managed it, for the record.
        metadata:
          original === undefined ? { annotations: { [ANNOTATION_ORIGINAL_REPLICAS]: String(current) } } : {},
        spec: { replicas },
      });
    } catch (err) {
      throw wrapError(`scaling source Deployment ${namespace}/${name} to ${replicas}`, err);
    }
    if (current !== replicas) void this.event(ew, scaledSource(name, current, replicas));
  }

  /** Applies (or deletes) one unit's Deployment as the plan says; nothing when it is already so. */
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
    const name = desired.metadata!.name!;
    try {
      await this.#api.applyDeployment(desired);
    } catch (err) {
      void this.event(ew, unitApplyFailed(name, apiErrorMessage(err)));
      throw wrapError(`applying unit Deployment ${desired.metadata?.namespace}/${name}`, err);
    }
    const before = existing?.spec?.replicas ?? 0;
    if (before !== u.replicas) void this.event(ew, scaledUnit(u.name, name, before, u.replicas));
  }

  /** Deletes a unit Deployment (already gone: fine). */
  async deleteUnit(ew: ElasticWorkload, unit: V1Deployment): Promise<void> {
    const { namespace, name } = unit.metadata as { namespace: string; name: string };
    try {
      await this.#api.deleteDeployment(namespace, name);
      void this.event(ew, deletedUnit(name));
    } catch (err) {
      if (!isApiError(err, 404)) throw wrapError(`deleting unit Deployment ${namespace}/${name}`, err);
    }
  }

  /** Deletes the units, then releases the ElasticWorkload's finalizer. */
  async removeFinalizer(ew: ElasticWorkload, units: Map<string, V1Deployment>): Promise<void> {
    for (const d of units.values()) await this.deleteUnit(ew, d);
    await this.patchEw(ew, {
      metadata: {
        finalizers: (ew.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        resourceVersion: ew.metadata.resourceVersion,
      },
    });
  }

  /** Adds the finalizer (preconditioned on the version read). */
  async addFinalizer(ew: ElasticWorkload): Promise<void> {
    await this.patchEw(ew, {
      metadata: {
        finalizers: [...(ew.metadata.finalizers ?? []), FINALIZER],
        resourceVersion: ew.metadata.resourceVersion,
      },
    });
  }

  /** A merge patch of the ElasticWorkload (or its status subresource); a 404 means it is already gone. */
  async patchEw(ew: ElasticWorkload, body: object, subresource?: 'status'): Promise<void> {
    try {
      await this.#api.patchElasticWorkload(ew.metadata.namespace!, ew.metadata.name, body, subresource);
    } catch (err) {
      if (!isApiError(err, 404))
        throw wrapError(
          `patching ElasticWorkload ${ew.metadata.namespace}/${ew.metadata.name}${subresource ? ' status' : ''}`,
          err,
        );
    }
  }

  /** Writes `status` unless it is what is stored. */
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

  /** Records `e` on the ElasticWorkload; never rejects (a failure is the recorder's to report). */
  event(ew: ElasticWorkload, e: WorkloadEvent): Promise<void> {
    return this.#events.record(
      {
        apiVersion: API_VERSION,
        kind: KIND,
        namespace: ew.metadata.namespace,
        name: ew.metadata.name,
        uid: ew.metadata.uid,
      },
      e.type,
      e.reason,
      e.action,
      e.message,
    );
  }
}
