/**
 * An Event recorder (events.k8s.io/v1), so that users see what spillway did with `kubectl describe` and
 * `kubectl events`. Repeats of the same event on the same object within ten minutes update one Event's
 * `series` instead of creating new objects, as client-go's recorder does; recording never throws.
 */
import { randomBytes } from 'node:crypto';
import {
  PatchStrategy,
  V1MicroTime,
  setHeaderOptions,
  type EventsV1Api,
  type EventsV1Event,
  type V1ObjectReference,
} from '@kubernetes/client-node';

/** Event types a user filters on. */
export const EventType = { Normal: 'Normal', Warning: 'Warning' } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/** The object an Event is about. */
export interface Regarding {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  first: number;
  last: number;
}

const seriesWindowMs = 10 * 60_000;
const maxTracked = 4096;

/** Writes Events for one controller; failures are reported to `onError` and otherwise ignored. */
export class EventRecorder {
  #api: Pick<EventsV1Api, 'createNamespacedEvent' | 'patchNamespacedEvent'>;
  #controller: string;
  #instance: string;
  #seen = new Map<string, Seen>();
  #onError: (err: unknown) => void;
  #now: () => number;

  /**
   * @param controller the reporting controller, e.g. `spillway.dev/elasticworkload-controller`
   * @param instance this process, e.g. the pod name
   */
  constructor(opts: {
    api: Pick<EventsV1Api, 'createNamespacedEvent' | 'patchNamespacedEvent'>;
    controller: string;
    instance: string;
    onError?: (err: unknown) => void;
    now?: () => number;
  }) {
    this.#api = opts.api;
    this.#controller = opts.controller;
    this.#instance = opts.instance;
    this.#onError = opts.onError ?? (() => {});
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Records `reason`/`note` on `regarding`. `action` says what the controller did (e.g. `Scale`, `Create`).
   * Resolves once written (or once the failure was reported); never rejects.
   */
  async record(
    regarding: Regarding,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    const namespace = regarding.namespace ?? 'default';
    const key = [namespace, regarding.kind, regarding.name, regarding.uid, type, reason, action, note].join(
      '\u0000',
    );
    const now = this.#now();
    const seen = this.#seen.get(key);
    try {
      if (seen && now - seen.last < seriesWindowMs) {
        seen.count += 1;
        seen.last = now;
        await this.#api.patchNamespacedEvent(
          {
            name: seen.name,
            namespace: seen.namespace,
            body: { series: { count: seen.count, lastObservedTime: new V1MicroTime(now) } },
          },
          // Typed patch methods default to JSON Patch; this body is a merge patch.
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        return;
      }
      const event: EventsV1Event = {
        // client-go's naming: `<object>.<hex time><random>`; a generateName ending in '.' is invalid.
        metadata: {
          name: `${regarding.name}.${now.toString(16)}${randomBytes(3).toString('hex')}`,
          namespace,
        },
        eventTime: new V1MicroTime(now),
        regarding: regarding as V1ObjectReference,
        type,
        reason,
        action,
        note: note.slice(0, 1024),
        reportingController: this.#controller,
        reportingInstance: this.#instance,
      };
      const created = await this.#api.createNamespacedEvent({ namespace, body: event });
      if (this.#seen.size >= maxTracked) this.#seen.delete(this.#seen.keys().next().value!);
      this.#seen.set(key, { name: created.metadata!.name!, namespace, count: 1, first: now, last: now });
    } catch (err) {
      // A lost Event must never fail a reconcile; a vanished Event simply starts a new series next time.
      this.#seen.delete(key);
      this.#onError(err);
    }
  }
}
