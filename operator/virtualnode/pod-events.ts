/**
 * The pod controller's Event writing: every Event regards a Pod (a container's, by `fieldPath`, as a kubelet
 * does), and container lifecycle Events go through a small bounded backlog so that a burst never crowds out the
 * status writes.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { EventRecorder, EventType } from '../shared/events.ts';
import type { ContainerEvent } from './container-events.ts';

/** The part of the {@link EventRecorder} the pod controller uses (tests pass a recording fake). */
export type PodEventRecorder = Pick<EventRecorder, 'record'>;

/** Container Events written at once, and how many may wait before more are dropped. */
const EVENT_WRITERS = 4;
const EVENT_BACKLOG = 1000;

/** Records Events on the pods of one virtual node. */
export class PodEvents {
  readonly #recorder: PodEventRecorder;
  /** Container Events waiting to be written (see {@link container}). */
  readonly #backlog: (() => Promise<void>)[] = [];
  #writers = 0;

  constructor(recorder: PodEventRecorder) {
    this.#recorder = recorder;
  }

  /** Records an Event regarding `pod` (or one of its containers, by `fieldPath`). */
  record(
    pod: V1Pod,
    type: EventType,
    reason: string,
    action: string,
    note: string,
    fieldPath?: string,
  ): Promise<void> {
    return this.#recorder.record(
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
   * Records a container's lifecycle Event, regarding the container (fieldPath) as a kubelet does. A burst makes
   * four per container at once: they are written by a few writers in order, so that they never crowd out the
   * status writes, and past a backlog of 1,000 dropped (as the kubelet's event broadcaster drops).
   */
  container(pod: V1Pod, e: ContainerEvent): void {
    if (this.#backlog.length >= EVENT_BACKLOG) return;
    this.#backlog.push(() => this.record(pod, e.type, e.reason, e.reason, e.message, e.fieldPath));
    this.#drain();
  }

  #drain(): void {
    while (this.#writers < EVENT_WRITERS && this.#backlog.length > 0) {
      const write = this.#backlog.shift()!;
      this.#writers += 1;
      void write().finally(() => {
        this.#writers -= 1;
        this.#drain();
      });
    }
  }
}
