/**
 * The informer supervisor: a client-node ListWatch kept alive.
 *
 * client-node 2.x's informer handles 410 Gone (relist) and clean watch closes (reconnect) itself, but on any
 * other error — apiserver restarting, connection refused, 5xx, 403 while RBAC propagates — it calls its `error`
 * handlers and stops for good. A controller whose informer silently stopped keeps running on a frozen cache.
 * The supervisor restarts the same informer with exponential backoff; since the informer keeps its
 * resourceVersion, a restart resumes the watch where it left off instead of relisting everything.
 *
 * It also keeps its own index of the objects (by `namespace/name` key) so that update handlers get the old
 * object too, and so that readers have one typed cache API: `get`, `getByKey`, `list`.
 *
 * Cached objects are trimmed by a transform before anything stores them (controller-runtime's cache
 * `TransformStripManagedFields`): by default `metadata.managedFields` and kubectl's last-applied annotation go,
 * which are a third to a half of a typical object and which no reader of a cache needs (server-side apply
 * builds its own patches, see apply.ts). With 5000 pods on a virtual node that is tens of MiB of heap.
 */
import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { apiErrorMessage } from './client.ts';
import { componentLogger, type Logger } from './log.ts';
import { informerRestarts } from './metrics.ts';

/**
 * The part of client-node's informer the supervisor drives; `ListWatch` implements it, and tests pass a fake
 * that emits errors.
 */
export interface InformerLike<T extends KubernetesObject> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  on(verb: 'error', cb: (err?: unknown) => void): void;
  /** Lists (when it has no resourceVersion) and starts watching; resolves once the watch request is sent. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Rewrites an object as it arrives from a list or a watch event, before any cache stores it or any handler sees
 * it. It may change the object in place (nothing else holds it yet) and returns what to store.
 */
export type CacheTransform<T extends KubernetesObject> = (obj: T) => T;

/** kubectl's client-side-apply copy of the whole object, as an annotation on it. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The default {@link CacheTransform}: drops `metadata.managedFields` (server-side apply bookkeeping, read by no
 * controller here) and the {@link LAST_APPLIED_ANNOTATION}. Changes `obj` in place and returns it.
 */
export function stripForCache<T extends KubernetesObject>(obj: T): T {
  const meta = obj.metadata;
  if (!meta) return obj;
  // Assigning rather than deleting keeps the object's hidden class (V8 turns an object whose property is
  // deleted from the middle into a slower, larger dictionary); JSON leaves undefined out.
  if (meta.managedFields !== undefined) meta.managedFields = undefined;
  if (meta.annotations?.[LAST_APPLIED_ANNOTATION] !== undefined)
    delete meta.annotations[LAST_APPLIED_ANNOTATION];
  return obj;
}

/** A client-node Watch whose events carry transformed objects (errors and bookmarks pass unchanged). */
class TransformingWatch<T extends KubernetesObject> extends Watch {
  readonly #transform: CacheTransform<T>;

  constructor(kc: KubeConfig, transform: CacheTransform<T>) {
    super(kc);
    this.#transform = transform;
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const transform = this.#transform;
    return super.watch(
      path,
      queryParams,
      (phase, obj: T, watchObj) =>
        callback(phase, phase === 'ERROR' || phase === 'BOOKMARK' ? obj : transform(obj), watchObj),
      done,
    );
  }
}

/** What to list and watch, for {@link listWatch}. */
export interface ListWatchSource<T extends KubernetesObject> {
  /** The collection's API path, e.g. `/api/v1/namespaces/ns/configmaps` or `/apis/apps/v1/deployments`. */
  path: string;
  /** Lists the same collection (same path and selectors), e.g. `() => core.listNamespacedConfigMap({namespace})`. */
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
}

/**
 * Builds client-node's ListWatch for `source`, not yet started: the default informer factory. `transform`
 * (default {@link stripForCache}; null for none) applies to every listed item and watched object before the
 * ListWatch stores it, so that its own index and ours hold the same trimmed objects.
 */
export function listWatch<T extends KubernetesObject>(
  kc: KubeConfig,
  source: ListWatchSource<T>,
  transform: CacheTransform<T> | null = stripForCache,
): InformerLike<T> {
  if (!transform) {
    return new ListWatch<T>(
      source.path,
      new Watch(kc),
      source.list,
      false,
      source.labelSelector,
      source.fieldSelector,
    );
  }
  const list = async () => {
    const result = await source.list();
    result.items = result.items.map(transform);
    return result;
  };
  return new ListWatch<T>(
    source.path,
    new TransformingWatch(kc, transform),
    list,
    false,
    source.labelSelector,
    source.fieldSelector,
  );
}

/** Options of {@link informerFor}. */
export interface InformerForOptions<T extends KubernetesObject> extends Omit<
  SupervisedInformerOptions<T>,
  'name' | 'makeInformer'
> {
  /**
   * Trims each object before it is cached (see {@link CacheTransform}); default {@link stripForCache}. Pass null
   * to cache objects exactly as the apiserver sends them (a reader that needs `managedFields` from the cache).
   */
  transform?: CacheTransform<T> | null;
}

/**
 * A supervised informer over `source`, not yet started: `informerFor(kc, 'configmaps', {path, list}).start()`.
 * Its cache holds objects without managedFields unless `options.transform` says otherwise.
 */
export function informerFor<T extends KubernetesObject>(
  kc: KubeConfig,
  name: string,
  source: ListWatchSource<T>,
  options: InformerForOptions<T> = {},
): SupervisedInformer<T> {
  const { transform, ...rest } = options;
  return new SupervisedInformer<T>({
    ...rest,
    name,
    makeInformer: () => listWatch(kc, source, transform === undefined ? stripForCache : transform),
  });
}

/** The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects (client-go's rule). */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

/** Splits a cache key back into namespace ('' for cluster-scoped) and name. */
export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** How a {@link SupervisedInformer} is built. */
export interface SupervisedInformerOptions<T extends KubernetesObject> {
  /** Names the informer in logs and metrics, e.g. `pods`. */
  name: string;
  /** Creates the informer once; use `() => listWatch(kc, source)` (tests inject a fake). */
  makeInformer: () => InformerLike<T>;
  /** First restart delay; doubled per failed restart up to `maxBackoffMs`, reset after a successful start. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  logger?: Logger;
}

/** Called with the object as now stored; `old` is the previous version when the cache had one. */
export type UpdateHandler<T> = (obj: T, old: T | undefined) => void;

/** A ListWatch kept running: restarted with backoff after errors, with a typed cache and handlers. */
export class SupervisedInformer<T extends KubernetesObject> {
  readonly name: string;
  /** Resolves after the first successful list (its objects are in the cache and were sent to add handlers). */
  readonly synced: Promise<void>;
  readonly #informer: InformerLike<T>;
  readonly #initialBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #log: Logger;
  readonly #cache = new Map<string, T>();
  readonly #handlers = {
    add: new Set<(o: T) => void>(),
    update: new Set<UpdateHandler<T>>(),
    delete: new Set<(o: T) => void>(),
  };
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;
  #hasSynced = false;
  #started = false;
  #stopped = false;
  #backoffMs: number;
  #restartTimer: NodeJS.Timeout | undefined;
  /** Set by the error handler; tells a `start()` that resolved whether it really succeeded. */
  #failedSinceStart = false;
  #restarts = 0;

  constructor(options: SupervisedInformerOptions<T>) {
    this.name = options.name;
    this.#initialBackoffMs = options.initialBackoffMs ?? 200;
    this.#maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.#backoffMs = this.#initialBackoffMs;
    this.#log = options.logger ?? componentLogger('informer', { informer: options.name });
    this.synced = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    // Stopping before the first sync rejects `synced`; nobody awaiting it must not crash the process.
    this.synced.catch(() => {});
    this.#informer = options.makeInformer();
    this.#informer.on('add', (obj) => this.#store(obj));
    this.#informer.on('update', (obj) => this.#store(obj));
    this.#informer.on('delete', (obj) => {
      this.#cache.delete(objectKey(obj));
      this.#emit(this.#handlers.delete, obj);
    });
    this.#informer.on('error', (err) => this.#onError(err));
  }

  /** True after the first successful list. */
  hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** How many times the informer was restarted after an error. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Starts listing and watching; idempotent. Await {@link synced} to know the cache is filled. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    void this.#run();
  }

  /** Stops watching for good; handlers are not called afterwards. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    if (!this.#hasSynced) this.#rejectSynced(new Error(`informer ${this.name} stopped before it synced`));
    await this.#informer.stop();
  }

  /** Calls `handler` for each object added to the cache (including those of the initial list). */
  onAdd(handler: (obj: T) => void): () => void {
    this.#handlers.add.add(handler);
    return () => this.#handlers.add.delete(handler);
  }

  /** Calls `handler` when an object changes (a new resourceVersion). */
  onUpdate(handler: UpdateHandler<T>): () => void {
    this.#handlers.update.add(handler);
    return () => this.#handlers.update.delete(handler);
  }

  /** Calls `handler` with the last known state of a deleted object (also for deletions noticed by a relist). */
  onDelete(handler: (obj: T) => void): () => void {
    this.#handlers.delete.add(handler);
    return () => this.#handlers.delete.delete(handler);
  }

  /** The cached object; `namespace` is '' for cluster-scoped objects. Treat it as read-only: it is shared. */
  get(namespace: string, name: string): T | undefined {
    return this.#cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** The cached object under a `namespace/name` key (as a workqueue holds it). */
  getByKey(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /** Every cached object, or those of one namespace. Read-only, like {@link get}. */
  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.#cache.values()];
    // Handlers call this per event: no copy of the whole cache just to filter it.
    const out: T[] = [];
    for (const o of this.#cache.values()) if ((o.metadata?.namespace ?? '') === namespace) out.push(o);
    return out;
  }

  /** Every cache key. */
  keys(): string[] {
    return [...this.#cache.keys()];
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    this.#failedSinceStart = false;
    try {
      await this.#informer.start();
    } catch (err) {
      // ListWatch reports most failures through `error`, but a throwing add handler during the list rejects here.
      this.#onError(err);
      return;
    }
    if (this.#stopped || this.#failedSinceStart) return;
    this.#backoffMs = this.#initialBackoffMs;
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#log.debug({ objects: this.#cache.size }, 'informer synced');
      this.#resolveSynced();
    }
  }

  #onError(err: unknown): void {
    this.#failedSinceStart = true;
    if (this.#stopped || this.#restartTimer) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#maxBackoffMs);
    this.#log.warn({ err: apiErrorMessage(err), retryInMs: delay }, 'informer failed; restarting');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.#restarts++;
      informerRestarts().inc({ name: this.name });
      void this.#run();
    }, delay);
  }

  #store(obj: T): void {
    const key = objectKey(obj);
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (old === undefined) this.#emit(this.#handlers.add, obj);
    else this.#emitUpdate(obj, old);
  }

  #emit(handlers: Set<(o: T) => void>, obj: T): void {
    if (this.#stopped) return;
    for (const h of handlers) {
      // ListWatch calls us inside its watch-line parser, whose catch-all would swallow a handler's exception
      // (and leave its cache half-updated): isolate each handler and log instead.
      try {
        h(obj);
      } catch (err) {
        this.#log.error({ err, key: objectKey(obj) }, 'informer handler threw');
      }
    }
  }

  #emitUpdate(obj: T, old: T): void {
    if (this.#stopped) return;
    for (const h of this.#handlers.update) {
      try {
        h(obj, old);
      } catch (err) {
        this.#log.error({ err, key: objectKey(obj) }, 'informer handler threw');
      }
    }
  }
}
