/**
 * An in-memory world for the ElasticWorkload controller's direct reconcile suite: informer fakes the test fills,
 * an apiserver fake that records every write, an Event sink that records every Event, and a clock the test sets.
 * The controller under test is the real one, built on these (Karpenter's suite_test.go style: each test builds
 * its own world, makes one change, reconciles once and asserts the writes and Events).
 */
import type { KubernetesObject, V1Deployment, V1Node, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { expect } from 'vitest';
import type { EventType, Regarding } from '../shared/events.ts';
import type { UpdateHandler } from '../shared/informer.ts';
import type { CachedInformer } from '../shared/namespaced-informers.ts';
import {
  API_VERSION,
  ElasticWorkloadSpecSchema,
  KIND,
  type ElasticWorkload,
} from '../../api/elasticworkload.ts';
import { FINALIZER } from '../../api/labels.ts';
import { ElasticWorkloadController } from './controller.ts';
import { unitDeployment } from './units.ts';
import { ElasticWorkloadWriter, type ElasticWorkloadApi, type EventSink } from './writer.ts';

/** The namespace every world lives in. */
export const NS = 'team';

/** An informer cache the test fills; handlers are kept but never needed by a direct reconcile. */
export class FakeInformer<T extends KubernetesObject> implements CachedInformer<T> {
  readonly #objects = new Map<string, T>();
  readonly synced = Promise.resolve();

  constructor(objects: readonly T[] = []) {
    for (const o of objects) this.set(o);
  }

  /** Adds or replaces `obj` in the cache. */
  set(obj: T): void {
    const ns = obj.metadata?.namespace;
    this.#objects.set(ns ? `${ns}/${obj.metadata?.name}` : `${obj.metadata?.name}`, obj);
  }

  hasSynced(): boolean {
    return true;
  }
  start(): void {}
  async stop(): Promise<void> {}
  onAdd(_handler: (obj: T) => void): () => void {
    return () => {};
  }
  onUpdate(_handler: UpdateHandler<T>): () => void {
    return () => {};
  }
  onDelete(_handler: (obj: T) => void): () => void {
    return () => {};
  }
  get(namespace: string, name: string): T | undefined {
    return this.#objects.get(namespace ? `${namespace}/${name}` : name);
  }
  getByKey(key: string): T | undefined {
    return this.#objects.get(key);
  }
  list(namespace?: string): T[] {
    return [...this.#objects.values()].filter((o) => !namespace || o.metadata?.namespace === namespace);
  }
}

/** One request the controller made. */
export type Write =
  | { verb: 'patch'; kind: 'Deployment'; name: string; body: object }
  | { verb: 'apply'; kind: 'Deployment'; name: string; body: V1Deployment }
  | { verb: 'delete'; kind: 'Deployment' | 'Pod'; name: string }
  | { verb: 'patch'; kind: 'ElasticWorkload'; name: string; body: object; subresource?: 'status' };

/** An apiserver that records every write and answers success, or the error `failWith` returns for it. */
export class RecordingApi implements ElasticWorkloadApi {
  readonly writes: Write[] = [];
  /** The error a write fails with (recorded all the same), or undefined: it succeeds. */
  failWith: (w: Write) => unknown = () => undefined;

  #record(w: Write): Promise<void> {
    this.writes.push(w);
    const err = this.failWith(w);
    return err === undefined ? Promise.resolve() : Promise.reject(err);
  }
  patchDeployment(_ns: string, name: string, body: object): Promise<void> {
    return this.#record({ verb: 'patch', kind: 'Deployment', name, body });
  }
  applyDeployment(d: V1Deployment): Promise<void> {
    return this.#record({ verb: 'apply', kind: 'Deployment', name: d.metadata!.name!, body: d });
  }
  deleteDeployment(_ns: string, name: string): Promise<void> {
    return this.#record({ verb: 'delete', kind: 'Deployment', name });
  }
  patchElasticWorkload(_ns: string, name: string, body: object, subresource?: 'status'): Promise<void> {
    return this.#record({
      verb: 'patch',
      kind: 'ElasticWorkload',
      name,
      body,
      ...(subresource ? { subresource } : {}),
    });
  }
  deletePod(_ns: string, name: string): Promise<void> {
    return this.#record({ verb: 'delete', kind: 'Pod', name });
  }
}

/** One recorded Event. */
export interface RecordedEvent {
  regarding: Regarding;
  type: EventType;
  reason: string;
  action: string;
  note: string;
}

/** An Event sink that keeps what it is given. */
export class RecordingEvents implements EventSink {
  readonly events: RecordedEvent[] = [];
  async record(regarding: Regarding, type: EventType, reason: string, action: string, note: string) {
    this.events.push({ regarding, type, reason, action, note });
  }
}

/** The time every world starts at. */
export const T0 = new Date('2026-01-01T00:00:00Z');

/** A world: the fakes, the controller on them, and the clock (`clock.now` may be moved). */
export interface World {
  ews: FakeInformer<KubernetesObject>;
  deployments: FakeInformer<V1Deployment>;
  pendingPods: FakeInformer<V1Pod>;
  failedPods: FakeInformer<V1Pod>;
  virtualNodes: FakeInformer<V1Node>;
  api: RecordingApi;
  events: RecordingEvents;
  clock: { now: Date };
  controller: ElasticWorkloadController;
  /** Reconciles `name` once and returns its result. */
  reconcile(name?: string): Promise<{ requeueAfter?: number } | void>;
}

/** A new world holding `objects` (ElasticWorkloads, Deployments, pods by phase, virtual nodes by kind). */
export function world(
  objects: {
    ews?: ElasticWorkload[];
    deployments?: V1Deployment[];
    pendingPods?: V1Pod[];
    failedPods?: V1Pod[];
    virtualNodes?: V1Node[];
  } = {},
  tuning: { capacityCooldownSeconds?: number } = {},
): World {
  const w = {
    ews: new FakeInformer<KubernetesObject>(objects.ews as unknown as KubernetesObject[]),
    deployments: new FakeInformer(objects.deployments),
    pendingPods: new FakeInformer(objects.pendingPods),
    failedPods: new FakeInformer(objects.failedPods),
    virtualNodes: new FakeInformer(objects.virtualNodes),
    api: new RecordingApi(),
    events: new RecordingEvents(),
    clock: { now: T0 },
  };
  const controller = new ElasticWorkloadController({
    informers: w,
    writer: new ElasticWorkloadWriter(w.api, w.events),
    now: () => w.clock.now,
    ...tuning,
  });
  return { ...w, controller, reconcile: (name = 'web') => controller.reconcile(`${NS}/${name}`) };
}

/** A container a sandbox runs and every provider accepts (a command: the local provider needs one). */
export const runnable: V1PodSpec = {
  containers: [{ name: 'web', image: 'nginx:1.27', command: ['nginx', '-g', 'daemon off;'] }],
};

/** The source Deployment `web` with `replicas` desired and `ready` ready. */
export function source(replicas: number, ready = replicas, spec: V1PodSpec = runnable): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      namespace: NS,
      uid: 'uid-web',
      annotations: { 'spillway.dev/original-replicas': String(replicas) },
    },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec },
    },
    status: { readyReplicas: ready },
  };
}

/**
 * The ElasticWorkload `name` on source `web` (finalizer set, as after its first reconcile), its spec parsed with
 * the real schema's defaults.
 */
export function elasticWorkload(
  spec: {
    replicas: number;
    /** The source's max; default 2. */
    sourceMax?: number;
    units?: Array<{ name: string; max?: number; labels?: Record<string, string> }>;
    foldBackTimeoutSeconds?: number;
  },
  o: {
    name?: string;
    created?: string;
    finalizers?: string[];
    deletedAt?: Date;
    status?: ElasticWorkload['status'];
  } = {},
): ElasticWorkload {
  const name = o.name ?? 'web';
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      namespace: NS,
      uid: `uid-ew-${name}`,
      resourceVersion: '7',
      creationTimestamp: (o.created ?? '2025-12-01T00:00:00Z') as never,
      finalizers: o.finalizers ?? [FINALIZER],
      ...(o.deletedAt ? { deletionTimestamp: o.deletedAt.toISOString() as never } : {}),
    },
    spec: ElasticWorkloadSpecSchema.parse({
      sourceTarget: { kind: 'Deployment', name: 'web', max: spec.sourceMax ?? 2 },
      replicas: spec.replicas,
      elasticUnit: spec.units ?? [{ name: 'burst' }],
      ...(spec.foldBackTimeoutSeconds ? { foldBackTimeoutSeconds: spec.foldBackTimeoutSeconds } : {}),
    }),
    ...(o.status ? { status: o.status } : {}),
  } as ElasticWorkload;
}

/** The unit Deployment of `ew`'s unit `unit`, as the controller applied it, with `replicas` (all ready). */
export function unit(ew: ElasticWorkload, name: string, replicas: number, src = source(0)): V1Deployment {
  const spec = ew.spec.elasticUnit!.find((u) => u.name === name)!;
  const d = unitDeployment(ew, src, spec, replicas);
  return { ...d, status: { readyReplicas: replicas } };
}

/** A virtual node of `provider`. */
export function virtualNode(provider: string): V1Node {
  return {
    metadata: {
      name: `vn-${provider}`,
      labels: {
        'spillway.dev/virtual-node': 'true',
        type: 'virtual-kubelet',
        'spillway.dev/provider': provider,
      },
    },
    spec: { taints: [{ key: 'virtual-kubelet.io/provider', value: provider, effect: 'NoSchedule' }] },
  };
}

/** A pod of unit `unitName` of ElasticWorkload `web`. */
export function unitPod(name: string, unitName: string, status: V1Pod['status']): V1Pod {
  return {
    metadata: {
      name,
      namespace: NS,
      labels: { app: 'web', 'spillway.dev/elastic-workload': 'web', 'spillway.dev/unit': unitName },
    },
    spec: runnable,
    status,
  };
}

/** Asserts the source was scaled to `replicas` (and not otherwise). */
export function expectScaledSource(w: World, replicas: number): void {
  const scales = w.api.writes.filter((x) => x.kind === 'Deployment' && x.verb === 'patch');
  expect(
    scales.map((x) => [x.name, (x as { body: { spec: { replicas: number } } }).body.spec.replicas]),
  ).toEqual([['web', replicas]]);
}

/** Asserts exactly these unit Deployments were applied, with these replicas: `{ 'web-unit-burst': 3 }`. */
export function expectApplied(w: World, units: Record<string, number>): void {
  const applied = w.api.writes.flatMap((x) => (x.verb === 'apply' ? [[x.name, x.body.spec?.replicas]] : []));
  expect(Object.fromEntries(applied)).toEqual(units);
}

/** The names of the Deployments and pods deleted. */
export function deleted(w: World): string[] {
  return w.api.writes.flatMap((x) => (x.verb === 'delete' ? [`${x.kind}/${x.name}`] : []));
}

/** The status last written, if any. */
export function writtenStatus(w: World): ElasticWorkload['status'] | undefined {
  const patches = w.api.writes.filter((x) => x.kind === 'ElasticWorkload' && 'subresource' in x);
  return (patches.at(-1) as { body: { status: ElasticWorkload['status'] } } | undefined)?.body.status;
}

/** The written status's condition `type`, as `[status, reason]`. */
export function condition(w: World, type: string): [string, string] | undefined {
  const c = writtenStatus(w)?.conditions?.find((x) => x.type === type);
  return c ? [c.status, c.reason] : undefined;
}

/** Whether the finalizer was removed (a metadata patch whose finalizers lack it). */
export function finalizerRemoved(w: World): boolean {
  return w.api.writes.some(
    (x) =>
      x.kind === 'ElasticWorkload' &&
      !('subresource' in x) &&
      !((x.body as { metadata: { finalizers: string[] } }).metadata.finalizers ?? []).includes(FINALIZER),
  );
}

/** The reasons of the Events recorded, in order. */
export function eventReasons(w: World): string[] {
  return w.events.events.map((e) => e.reason);
}

/** The one Event of `reason` (fails if there is none or more). */
export function eventOf(w: World, reason: string): RecordedEvent {
  const found = w.events.events.filter((e) => e.reason === reason);
  expect(found, `Events: ${eventReasons(w).join(', ')}`).toHaveLength(1);
  return found[0]!;
}
