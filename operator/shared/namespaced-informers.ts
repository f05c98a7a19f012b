/**
 * One cache over a list of namespaces: a supervised informer per namespace (a namespaced list and watch, which
 * a Role in that namespace allows), read through the same API as one cluster-wide informer. A controller
 * restricted to some namespaces (the chart's `controller.watchNamespaces`) builds its caches with
 * {@link scopedInformer} and reads them without caring which kind it got.
 */
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import {
  informerFor,
  splitKey,
  type InformerForOptions,
  type ListWatchSource,
  type SupervisedInformer,
  type UpdateHandler,
} from './informer.ts';

/** What readers of an informer cache use; {@link SupervisedInformer} and {@link NamespacedInformers} have it. */
export type CachedInformer<T extends KubernetesObject> = Pick<
  SupervisedInformer<T>,
  'synced' | 'hasSynced' | 'start' | 'stop' | 'onAdd' | 'onUpdate' | 'onDelete' | 'get' | 'getByKey' | 'list'
>;

/** Several per-namespace informers read as one cache; objects of other namespaces are never seen. */
export class NamespacedInformers<T extends KubernetesObject> implements CachedInformer<T> {
  readonly #byNamespace: Map<string, CachedInformer<T>>;
  readonly synced: Promise<void>;

  /** @param informers one informer per namespace, each listing and watching only its namespace */
  constructor(informers: Map<string, CachedInformer<T>>) {
    this.#byNamespace = informers;
    this.synced = Promise.all([...informers.values()].map((i) => i.synced)).then(() => undefined);
    this.synced.catch(() => {});
  }

  /** The namespaces this cache covers. */
  get namespaces(): string[] {
    return [...this.#byNamespace.keys()];
  }

  hasSynced(): boolean {
    return [...this.#byNamespace.values()].every((i) => i.hasSynced());
  }

  start(): void {
    for (const i of this.#byNamespace.values()) i.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#byNamespace.values()].map((i) => i.stop()));
  }

  onAdd(handler: (obj: T) => void): () => void {
    return this.#each((i) => i.onAdd(handler));
  }

  onUpdate(handler: UpdateHandler<T>): () => void {
    return this.#each((i) => i.onUpdate(handler));
  }

  onDelete(handler: (obj: T) => void): () => void {
    return this.#each((i) => i.onDelete(handler));
  }

  get(namespace: string, name: string): T | undefined {
    return this.#byNamespace.get(namespace)?.get(namespace, name);
  }

  getByKey(key: string): T | undefined {
    const { namespace, name } = splitKey(key);
    return this.get(namespace, name);
  }

  list(namespace?: string): T[] {
    if (namespace !== undefined) return this.#byNamespace.get(namespace)?.list(namespace) ?? [];
    return [...this.#byNamespace.values()].flatMap((i) => i.list());
  }

  #each(register: (i: CachedInformer<T>) => () => void): () => void {
    const removers = [...this.#byNamespace.values()].map(register);
    return () => removers.forEach((r) => r());
  }
}

/**
 * An informer over every namespace (`namespaces` undefined or empty) or one per listed namespace.
 * `source(namespace)` gives the collection to list and watch: cluster-wide when `namespace` is undefined.
 */
export function scopedInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  name: string,
  namespaces: readonly string[] | undefined,
  source: (namespace?: string) => ListWatchSource<T>,
  options: InformerForOptions<T> = {},
): CachedInformer<T> {
  if (!namespaces?.length) return informerFor(kc, name, source(), options);
  return new NamespacedInformers(
    new Map(namespaces.map((ns) => [ns, informerFor(kc, `${name}/${ns}`, source(ns), options)])),
  );
}
