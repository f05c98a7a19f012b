/**
 * Provider events (ECI's Scheduled, Started, BackOff, SpotToBeReleased...) outlive the operator process: the
 * provider lists them again with every instance it adopts after a restart. This module decides which of them
 * the virtual node already recorded as pod Events, so that a restart records none twice.
 *
 * Why read the node's own Events back instead of keeping a mark of our own (an annotation per pod): a kubelet
 * keeps no private ledger either; after a restart it rebuilds its view from the runtime and the apiserver. The
 * Events the node recorded are already in the apiserver with the pod's UID, the reason, the message and when
 * they were last observed; reading them once at start costs one paged LIST, where a per-pod mark would cost a
 * write for every event of every pod, in the middle of a burst, on an object users own. Events expire (the
 * apiserver's `--event-ttl`, one hour by default): an occurrence older than that before this start is history
 * whose Event is gone, and is not recorded again either.
 */
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import type { SandboxEvent } from '../providers/types.ts';

/** The reporting controller of the virtual node's Events (the EventRecorder that run.ts builds). */
export const VIRTUAL_NODE_CONTROLLER = 'spillway.dev/virtual-node';

/** The apiserver's default `--event-ttl`: Events older than this are gone. */
export const EVENT_TTL_MS = 60 * 60_000;

/** When the node last recorded each pod event, by {@link eventKey}, in ms since the epoch. */
export type RecordedEvents = Map<string, number>;

/**
 * What identifies "the same event on the same pod": the pod's UID, the reason and the message (as far as an
 * Event keeps it: the recorder cuts notes at 1,024 characters).
 */
export function eventKey(uid: string, reason: string, message: string): string {
  return `${uid}\u0000${reason}\u0000${message.slice(0, 1024)}`;
}

const time = (v: Date | string | undefined | null): number | undefined => {
  if (!v) return undefined;
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? undefined : t;
};

/** When `e` was last observed: its series' last observation, else its own time. */
function lastObserved(e: CoreV1Event): number | undefined {
  return (
    time(e.series?.lastObservedTime as Date | string | undefined) ??
    time(e.lastTimestamp as Date | string | undefined) ??
    time(e.eventTime as Date | string | undefined) ??
    time(e.metadata?.creationTimestamp as Date | string | undefined)
  );
}

/** Indexes the pod Events that `instance` (the node's name) recorded; the latest time per key wins. */
export function indexRecordedEvents(events: CoreV1Event[], instance: string): RecordedEvents {
  const index: RecordedEvents = new Map();
  for (const e of events) {
    const uid = e.involvedObject?.uid;
    const at = lastObserved(e);
    if (!uid || at === undefined || e.reportingInstance !== instance) continue;
    const key = eventKey(uid, e.reason ?? '', e.message ?? '');
    index.set(key, Math.max(at, index.get(key) ?? 0));
  }
  return index;
}

/** The one call {@link loadRecordedEvents} makes (tests pass a fake). */
export type RecordedEventLister = Pick<CoreV1Api, 'listEventForAllNamespaces'>;

/** Reads the pod Events the node `instance` recorded, every page. */
export async function loadRecordedEvents(
  core: RecordedEventLister,
  instance: string,
): Promise<RecordedEvents> {
  const items: CoreV1Event[] = [];
  let _continue: string | undefined;
  do {
    const page = await core.listEventForAllNamespaces({
      fieldSelector: `involvedObject.kind=Pod,reportingComponent=${VIRTUAL_NODE_CONTROLLER}`,
      limit: 500,
      ...(_continue && { _continue }),
    });
    items.push(...page.items);
    _continue = page.metadata?._continue || undefined;
  } while (_continue);
  return indexRecordedEvents(items, instance);
}

/**
 * Whether a provider event is news for pod `uid`: not an occurrence the node already recorded (the provider's
 * timestamp is not after the recorded Event's last observation), and not an occurrence from before `startedAt`
 * so old that its Event would have expired. An event without a timestamp happened when it was delivered.
 */
export function isNewProviderEvent(
  event: Pick<SandboxEvent, 'reason' | 'message' | 'timestamp'>,
  uid: string,
  recorded: RecordedEvents,
  startedAt: number,
  ttlMs = EVENT_TTL_MS,
): boolean {
  const t = event.timestamp?.getTime();
  if (t === undefined) return true;
  const last = recorded.get(eventKey(uid, event.reason, event.message));
  if (last !== undefined) return t > last;
  return t >= startedAt - ttlMs;
}
