/**
 * What the kill-soak counts on the Kubernetes side, and the contract each provider's side fulfils
 * (bench/lib/soak-eci.ts, bench/lib/soak-local.ts). The decisions are pure functions over listed objects so that
 * the numbers in the table say exactly what was counted.
 */
import type { CoreV1Api, CoreV1Event, KubeConfig, V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { VIRTUAL_NODE_CONTROLLER } from '../../operator/virtualnode/provider-events.ts';
import { isRunningReady } from './pod-progress.ts';
import { ObjectWatch } from './watch.ts';

/** The label spillway puts on an elastic unit's pods. */
export const UNIT_LABEL = 'spillway.dev/unit';

/** One provider as the soak drives and inspects it. */
export interface SoakProvider {
  name: 'eci' | 'local';
  nodeName: string;
  /** `spillway run` flags and environment. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** The pod spec's container (the local provider runs the command on the host). */
  command: string[];
  /** Live instances per pod UID, right now. */
  instances(): Map<string, number>;
  /** Instances created for a pod beyond its first (over the whole soak), and create calls made. */
  creates(): { instancesCreated: number; extraInstances: number; createCalls: number | null };
  /** Container runs live at once beyond one per container (local), or null where not observable. */
  duplicateRuns(): number | null;
  /** Running pods whose instance is not whole (local: network), with why. */
  broken(pods: V1Pod[]): { pod: string; fault: string }[];
  /** What is left of the provider's resources once the workload is deleted (all should be 0). */
  leftovers(): Record<string, number>;
  /** Provider-specific numbers for the result file. */
  details(): Record<string, unknown>;
  /** Releases what the harness made (fake endpoint, host state); returns what it had to remove. */
  close(): Promise<string[]>;
}

/** Records every pod UID that was ever bound to the virtual node. */
export class PodLedger {
  readonly bound = new Set<string>();
  readonly #watch: ObjectWatch<V1Pod>;

  constructor(kc: KubeConfig, namespace: string, nodeName: string) {
    this.#watch = new ObjectWatch<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, {}, (_type, pod) => {
      if (pod.spec?.nodeName === nodeName && pod.metadata?.uid) this.bound.add(pod.metadata.uid);
    });
  }

  start(): Promise<void> {
    return this.#watch.start();
  }

  stop(): void {
    this.#watch.stop();
  }
}

/** A pod the workload still has after the settle time that is not Running and Ready, or is stuck terminating. */
export function stuckPods(pods: V1Pod[]): { pod: string; state: string }[] {
  return pods.flatMap((p) => {
    if (!p.metadata?.labels?.[UNIT_LABEL]) return [];
    const name = p.metadata.name ?? '?';
    if (p.metadata.deletionTimestamp) return [{ pod: name, state: `Terminating (${p.status?.phase})` }];
    if (isRunningReady(p)) return [];
    const waiting = p.status?.containerStatuses?.find((c) => c.state?.waiting)?.state?.waiting?.reason;
    return [{ pod: name, state: `${p.status?.phase ?? 'no phase'}${waiting ? ` ${waiting}` : ''}` }];
  });
}

/** Whether the unit's pods are what the workload asks for: `expected` pods, all Running and Ready, and current. */
export function settled(pods: V1Pod[], expected: number, current: (p: V1Pod) => boolean): boolean {
  const unit = pods.filter((p) => p.metadata?.labels?.[UNIT_LABEL]);
  return (
    unit.length === expected &&
    unit.every((p) => !p.metadata?.deletionTimestamp && isRunningReady(p) && current(p))
  );
}

/** Polls until {@link settled} or `timeoutMs`; returns the seconds it took, or null. */
export async function waitSettled(
  core: CoreV1Api,
  namespace: string,
  expected: number,
  current: (p: V1Pod) => boolean,
  timeoutMs: number,
): Promise<number | null> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const pods = (await core.listNamespacedPod({ namespace }).catch(() => undefined))?.items;
    if (pods && settled(pods, expected, current)) return Number(((Date.now() - t0) / 1000).toFixed(1));
    await sleep(1000);
  }
  return null;
}

/**
 * Pod Events the virtual node recorded more than once: the same reason and message for the same pod UID,
 * counting an Event's `count` (an updated Event is a repeat too). `extra` is every emission past the first.
 */
export function repeatedEvents(events: CoreV1Event[]): {
  keys: number;
  extra: number;
  examples: string[];
} {
  const seen = new Map<string, number>();
  for (const e of events) {
    if (e.reportingComponent !== VIRTUAL_NODE_CONTROLLER || e.involvedObject?.kind !== 'Pod') continue;
    const key = `${e.involvedObject.name}/${e.involvedObject.uid} ${e.reason}: ${e.message}`;
    seen.set(key, (seen.get(key) ?? 0) + Math.max(1, e.count ?? 1, e.series?.count ?? 1));
  }
  const repeated = [...seen].filter(([, n]) => n > 1);
  return {
    keys: repeated.length,
    extra: repeated.reduce((s, [, n]) => s + n - 1, 0),
    examples: repeated.slice(0, 5).map(([k, n]) => `${n}× ${k.slice(0, 200)}`),
  };
}

/** Instances whose pod no longer exists (orphans), and pods with more than one live instance (duplicates). */
export function orphansAndDuplicates(
  instances: Map<string, number>,
  podUids: Set<string>,
): { orphans: number; duplicates: number } {
  let orphans = 0;
  let duplicates = 0;
  for (const [uid, n] of instances) {
    if (!podUids.has(uid)) orphans += n;
    else if (n > 1) duplicates += n - 1;
  }
  return { orphans, duplicates };
}
