/**
 * An in-memory world for the pod controller's direct tests (pod-controller.test.ts), as Karpenter's suites have
 * an in-memory API: the pods bound to the node (an informer fed by the test), a Pod API that records every write
 * and applies it to those pods as the apiserver and its watch would, an Event recorder that records, the fake
 * provider and a clock the test moves. The controller is prepared (cache synced, instances adopted) but runs no
 * worker: a test makes one change, calls `reconcile` or `syncStatus` itself and asserts the writes and Events.
 */
import type { CoreV1Event, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { FakeProvider } from '../providers/fake/fake-provider.ts';
import type { EventType } from '../shared/events.ts';
import { objectKey, SupervisedInformer, type InformerLike } from '../shared/informer.ts';
import { createLogger } from '../shared/log.ts';
import type { PodControllerOptions } from './pod-controller-options.ts';
import type { PodClient } from './pod-writes.ts';
import { PodController } from './pods.ts';
import type { RecordedEventLister } from './provider-events.ts';
import type { ConfigMapContent, ResolverSource } from './resolve.ts';

/** The pods of the node, as a watch would deliver them. */
export class MemoryPods implements InformerLike<V1Pod> {
  readonly #handlers = new Map<string, ((obj: V1Pod) => void)[]>();
  readonly #pods = new Map<string, V1Pod>();

  constructor(pods: V1Pod[]) {
    for (const p of pods) this.#pods.set(objectKey(p), p);
  }
  on(verb: string, cb: (obj: never) => void): void {
    this.#handlers.set(verb, [...(this.#handlers.get(verb) ?? []), cb as (obj: V1Pod) => void]);
  }
  async start(): Promise<void> {
    for (const p of this.#pods.values()) this.#emit('add', p);
  }
  async stop(): Promise<void> {}

  /** The pod as the API has it now. */
  get(namespace: string, name: string): V1Pod | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }
  /** A pod is created or changed (bound to the node, its status written, its deletion asked for). */
  put(pod: V1Pod): void {
    const key = objectKey(pod);
    const verb = this.#pods.has(key) ? 'update' : 'add';
    this.#pods.set(key, pod);
    this.#emit(verb, pod);
  }
  /** A pod is gone from the API. */
  remove(namespace: string, name: string): void {
    const pod = this.#pods.get(`${namespace}/${name}`);
    if (!pod) return;
    this.#pods.delete(`${namespace}/${name}`);
    this.#emit('delete', pod);
  }
  #emit(verb: string, pod: V1Pod): void {
    for (const cb of this.#handlers.get(verb) ?? []) cb(pod);
  }
}

/** A write the controller made to a Pod. */
export type PodWrite =
  | { verb: 'status'; pod: string; status: V1PodStatus }
  | { verb: 'delete'; pod: string; uid: string; gracePeriodSeconds?: number; instanceGone: boolean }
  | { verb: 'evict'; pod: string; uid: string };

/** An Event the controller recorded. */
export interface RecordedEvent {
  pod: string;
  type: EventType;
  reason: string;
  note: string;
  fieldPath?: string;
}

/** The Pod API and Event list of the world: every write is recorded, then applied to the pods. */
export class FakePodApi implements PodClient, RecordedEventLister {
  readonly writes: PodWrite[] = [];
  /** Events a previous run recorded, listed at start-up. */
  readonly recorded: CoreV1Event[];
  /** The next status write throws this (once). */
  nextStatusError: Error | undefined;
  readonly #pods: MemoryPods;
  readonly #provider: FakeProvider;

  constructor(pods: MemoryPods, provider: FakeProvider, recorded: CoreV1Event[]) {
    this.#pods = pods;
    this.#provider = provider;
    this.recorded = recorded;
  }

  patchNamespacedPodStatus: PodClient['patchNamespacedPodStatus'] = async (req) => {
    const err = this.nextStatusError;
    this.nextStatusError = undefined;
    if (err) throw err;
    const pod = this.#pods.get(req.namespace, req.name)!;
    // A merge patch: an explicit null clears the field.
    const patch = (req.body as { status: Record<string, unknown> }).status;
    const status = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== null)) as V1PodStatus;
    this.writes.push({ verb: 'status', pod: req.name, status });
    this.#pods.put({ ...pod, status });
    return pod;
  };

  deleteNamespacedPod: PodClient['deleteNamespacedPod'] = async (req) => {
    const uid = req.body?.preconditions?.uid ?? '';
    const instanceGone = this.#provider.sandbox(uid) === undefined;
    this.writes.push({
      verb: 'delete',
      pod: req.name,
      uid,
      gracePeriodSeconds: req.body?.gracePeriodSeconds,
      instanceGone,
    });
    this.#pods.remove(req.namespace, req.name);
    return {};
  };

  createNamespacedPodEviction: PodClient['createNamespacedPodEviction'] = async (req) => {
    this.writes.push({ verb: 'evict', pod: req.name, uid: req.body.deleteOptions?.preconditions?.uid ?? '' });
    return {};
  };

  listEventForAllNamespaces: RecordedEventLister['listEventForAllNamespaces'] = async () => ({
    items: this.recorded,
    metadata: {},
  });

  /** The status writes, in order. */
  get statuses(): V1PodStatus[] {
    return this.writes.flatMap((w) => (w.verb === 'status' ? [w.status] : []));
  }
}

/** ConfigMaps and Secrets a test may add while the world runs. */
export class MemoryReferences implements ResolverSource {
  readonly configMaps = new Map<string, ConfigMapContent>();
  readonly secrets = new Map<string, Record<string, Buffer>>();
  async configMap(namespace: string, name: string): Promise<ConfigMapContent | undefined> {
    return this.configMaps.get(`${namespace}/${name}`);
  }
  async secret(namespace: string, name: string): Promise<Record<string, Buffer> | undefined> {
    return this.secrets.get(`${namespace}/${name}`);
  }
  async services(): Promise<[]> {
    return [];
  }
  async kubernetesService(): Promise<undefined> {
    return undefined;
  }
  async token(): Promise<string> {
    return 'token';
  }
}

/** A clock the test moves. */
export class FakeClock {
  #now: number;
  constructor(start = Date.now()) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}

/** One world: its pods, API, Events, clock and the controller over them (prepared, no workers). */
export interface PodWorld {
  controller: PodController;
  pods: MemoryPods;
  api: FakePodApi;
  events: RecordedEvent[];
  references: MemoryReferences;
  clock: FakeClock;
}

/** Builds a world over `pods` and `provider` and prepares its controller. */
export async function podWorld(opts: {
  provider: FakeProvider;
  pods?: V1Pod[];
  recorded?: CoreV1Event[];
  clock?: FakeClock;
  tuning?: Pick<PodControllerOptions, 'maxCreateAttempts' | 'orphanMinAgeMs'>;
}): Promise<PodWorld> {
  const pods = new MemoryPods(opts.pods ?? []);
  const api = new FakePodApi(pods, opts.provider, opts.recorded ?? []);
  const events: RecordedEvent[] = [];
  const references = new MemoryReferences();
  const clock = opts.clock ?? new FakeClock();
  const silent = createLogger({ level: 'silent' });
  const controller = new PodController({
    nodeName: 'vn',
    hostIP: '10.0.0.1',
    provider: opts.provider,
    pods: new SupervisedInformer<V1Pod>({ name: 'pods', makeInformer: () => pods, logger: silent }),
    podClient: api,
    recordedEvents: api,
    events: {
      record: async (regarding, type, reason, _action, note) => {
        const fieldPath = (regarding as { fieldPath?: string }).fieldPath;
        events.push({ pod: regarding.name, type, reason, note, ...(fieldPath && { fieldPath }) });
      },
    },
    resolver: references,
    clock,
    logger: silent,
    ...opts.tuning,
  });
  await controller.prepare();
  return { controller, pods, api, events, references, clock };
}

/** Lets queued notifications, Event writes and provider events run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}
