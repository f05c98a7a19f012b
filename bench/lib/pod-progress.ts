/**
 * Pods of one namespace followed through a watch from the benchmark's side: when each was first seen, seen
 * bound to a node, and seen Running and Ready, on the host clock. What bench/sandbox.ts and bench/eci.ts
 * measure (bench/burst.ts has its own copy of the same bookkeeping, with provider timings added).
 */
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Container,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs, summarize, type Summary } from './stats.ts';
import { ObjectWatch } from './watch.ts';

/** Running, and Ready: what a Service or a `kubectl rollout status` waits for. */
export const isRunningReady = (p: V1Pod) =>
  p.status?.phase === 'Running' &&
  (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** When one pod was seen in each state (epoch ms). */
export interface PodTimes {
  added: number;
  bound?: number;
  running?: number;
}

/** The summary of a run, from the Deployment create (`t0`) on. */
export interface ProgressSummary {
  running: number;
  allRunningSeconds: number | null;
  podsPerSecond: number | null;
  /** Deployment created → each pod seen Running (ms). */
  createToRunningMs: Summary;
  /** Each pod first seen (its creation by the ReplicaSet controller) → seen Running (ms). */
  podCreatedToRunningMs: Summary;
  /** Pod seen bound → seen Running (ms): the virtual node's and provider's share. */
  boundToRunningMs: Summary;
  /** Pods Running over time (seconds since `t0`), thinned to about 300 points, for plots. */
  runningOverTime: [number, number][];
  /** Times the watch ended and was re-established (pods created in a gap are first seen late). */
  watchRestarts: number;
  /** Why the watch ended (the first few reasons). */
  watchEndings: string[];
  /** Pods first seen already Running (created and started within one watch delivery, or in a gap). */
  firstSeenRunning: number;
}

/** Follows the pods of `namespace`. */
export class PodProgress {
  readonly pods = new Map<string, PodTimes>();
  readonly #watch: ObjectWatch<V1Pod>;
  readonly #runningTimes: number[] = [];
  running = 0;

  constructor(kc: KubeConfig, namespace: string) {
    this.#watch = new ObjectWatch<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, {}, (type, pod, at) => {
      const uid = pod.metadata?.uid;
      if (!uid || type === 'DELETED') return;
      let rec = this.pods.get(uid);
      if (!rec) this.pods.set(uid, (rec = { added: at }));
      if (rec.bound === undefined && pod.spec?.nodeName) rec.bound = at;
      if (rec.running === undefined && isRunningReady(pod)) {
        rec.running = at;
        this.running++;
        this.#runningTimes.push(at);
      }
    });
  }

  /** Resolves once the watch is established. */
  start(): Promise<void> {
    return this.#watch.start();
  }

  stop(): void {
    this.#watch.stop();
  }

  /** Waits until `count` pods are Running (true) or `timeoutMs` passes (false), logging every 5 s. */
  async waitRunning(count: number, timeoutMs: number, log: (line: string) => void): Promise<boolean> {
    const t0 = nowMs();
    const deadline = Date.now() + timeoutMs;
    let lastLog = Date.now();
    while (this.running < count && Date.now() < deadline) {
      await sleep(50);
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(`${this.running}/${count} Running after ${((nowMs() - t0) / 1000).toFixed(1)} s`);
      }
    }
    return this.running >= count;
  }

  /** The numbers of a run of `count` pods started at `t0` (epoch ms). */
  summary(t0: number, count: number): ProgressSummary {
    const recs = [...this.pods.values()];
    const done = this.running >= count;
    const last = this.#runningTimes.at(-1);
    const allRunningSeconds = done && last !== undefined ? (last - t0) / 1000 : null;
    const step = Math.max(1, Math.floor(this.#runningTimes.length / 300));
    const runningOverTime: [number, number][] = [[0, 0]];
    this.#runningTimes.forEach((t, i) => {
      if (i % step === 0 || i === this.#runningTimes.length - 1)
        runningOverTime.push([(t - t0) / 1000, i + 1]);
    });
    const span = (from: (r: PodTimes) => number | undefined) =>
      recs.flatMap((r) => {
        const f = from(r);
        return r.running !== undefined && f !== undefined ? [r.running - f] : [];
      });
    return {
      running: this.running,
      allRunningSeconds: allRunningSeconds === null ? null : Number(allRunningSeconds.toFixed(3)),
      podsPerSecond: allRunningSeconds ? Number((count / allRunningSeconds).toFixed(1)) : null,
      createToRunningMs: summarize(span(() => t0)),
      podCreatedToRunningMs: summarize(span((r) => r.added)),
      boundToRunningMs: summarize(span((r) => r.bound)),
      runningOverTime,
      watchRestarts: this.#watch.restarts,
      watchEndings: [...new Set(this.#watch.endings)].slice(0, 3),
      firstSeenRunning: recs.filter((r) => r.running === r.added).length,
    };
  }

  /** Raw bound → Running samples (ms), for a CDF. */
  boundToRunning(): number[] {
    return [...this.pods.values()].flatMap((r) =>
      r.running !== undefined && r.bound !== undefined ? [r.running - r.bound] : [],
    );
  }
}

/** Waits until node `name` reports Ready. */
export async function waitNodeReady(kc: KubeConfig, name: string, timeoutMs = 60_000): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const node = await core.readNode({ name }).catch(() => undefined);
    if (node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
    if (Date.now() > deadline) throw new Error(`node ${name} not Ready after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Deletes `namespace`'s Deployment `name` and waits until the namespace has no pods; seconds taken, or null. */
export async function deleteAndDrain(
  kc: KubeConfig,
  namespace: string,
  name: string,
  timeoutMs = 240_000,
): Promise<number | null> {
  const core = kc.makeApiClient(CoreV1Api);
  const t0 = nowMs();
  await kc
    .makeApiClient(AppsV1Api)
    .deleteNamespacedDeployment({ namespace, name, propagationPolicy: 'Background' });
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    const left = await core.listNamespacedPod({ namespace, limit: 1 });
    if (left.items.length === 0) return Number(((nowMs() - t0) / 1000).toFixed(2));
    await sleep(500);
  }
  return null;
}

/**
 * A Deployment of `replicas` `burst: always` pods pinned to node `nodeName`: the tolerations and nodeSelector
 * the placement webhook would give them (webhooks are not part of these benchmarks).
 */
export function pinnedDeployment(
  namespace: string,
  name: string,
  nodeName: string,
  replicas: number,
  container: V1Container,
): V1Deployment {
  const labels = { app: name, 'spillway.dev/burst': 'always' };
  return {
    metadata: { name, namespace },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels },
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': nodeName },
          tolerations: [
            { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
            { key: 'spillway.dev/virtual-node', operator: 'Exists', effect: 'PreferNoSchedule' },
          ],
          terminationGracePeriodSeconds: 0,
          containers: [container],
        },
      },
    },
  };
}
