import { ListWatch, type V1ConfigMap, type Watch } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from './log.ts';
import { objectKey, splitKey, SupervisedInformer, type InformerLike } from './informer.ts';

/**
 * Behaves like client-node's ListWatch as far as the supervisor can tell: `start()` lists (sending adds) or fails
 * by calling its error handlers and resolving; once started it can be made to emit events or die with an error.
 */
class FakeInformer implements InformerLike<V1ConfigMap> {
  readonly handlers = new Map<string, ((arg: never) => void)[]>();
  /** Outcome of each coming start(): an Error to fail the list with, or 'ok'. */
  readonly script: (Error | 'ok')[] = [];
  starts: number[] = [];
  stopped = false;
  initial: V1ConfigMap[] = [];

  on(verb: string, cb: (arg: never) => void): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }

  async start(): Promise<void> {
    this.starts.push(Date.now());
    const outcome = this.script.shift() ?? 'ok';
    if (outcome !== 'ok') {
      this.fail(outcome);
      return;
    }
    for (const cm of this.initial) this.emit('add', cm);
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  emit(verb: 'add' | 'update' | 'delete', obj: V1ConfigMap): void {
    for (const cb of this.handlers.get(verb) ?? []) (cb as (o: V1ConfigMap) => void)(obj);
  }

  /** What ListWatch does on a non-410 error: tell the error handlers, then stop for good. */
  fail(err: Error): void {
    for (const cb of this.handlers.get('error') ?? []) (cb as (e: Error) => void)(err);
  }
}

const cm = (name: string, rv: string, namespace = 'ns'): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace, resourceVersion: rv },
  data: { rv },
});

const silent = createLogger({ level: 'silent' });

function setup(options: { initialBackoffMs?: number; maxBackoffMs?: number } = {}) {
  const fake = new FakeInformer();
  const informer = new SupervisedInformer<V1ConfigMap>({
    name: 'configmaps',
    makeInformer: () => fake,
    logger: silent,
    ...options,
  });
  return { fake, informer };
}

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('SupervisedInformer', () => {
  it('is synced after the first list, with the listed objects cached and announced', async () => {
    const { fake, informer } = setup();
    fake.initial = [cm('a', '1'), cm('b', '2', 'other')];
    const added: string[] = [];
    informer.onAdd((o) => added.push(objectKey(o)));
    expect(informer.hasSynced()).toBe(false);
    informer.start();
    await informer.synced;
    expect(informer.hasSynced()).toBe(true);
    expect(added).toEqual(['ns/a', 'other/b']);
    expect(informer.get('ns', 'a')?.data).toEqual({ rv: '1' });
    expect(informer.getByKey('other/b')?.metadata?.name).toBe('b');
    expect(informer.list('ns').map((o) => o.metadata?.name)).toEqual(['a']);
    expect(informer.list()).toHaveLength(2);
  });

  it('restarts after an error, with backoff, and handlers keep firing', async () => {
    const { fake, informer } = setup();
    const added: string[] = [];
    informer.onAdd((o) => added.push(o.metadata!.name!));
    informer.start();
    await informer.synced;
    const t0 = Date.now();

    fake.fail(refused()); // the watch died: ListWatch has stopped for good
    await vi.advanceTimersByTimeAsync(199);
    expect(fake.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fake.starts.map((t) => t - t0)).toEqual([0, 200]);
    expect(informer.restarts).toBe(1);

    fake.emit('add', cm('after-restart', '7'));
    expect(added).toEqual(['after-restart']);
    expect(informer.get('ns', 'after-restart')).toBeDefined();
  });

  it('doubles the delay while restarts keep failing, caps it, and resets after a success', async () => {
    const { fake, informer } = setup({ initialBackoffMs: 200, maxBackoffMs: 1_000 });
    fake.script.push(refused(), refused(), refused(), refused(), refused(), 'ok');
    informer.start();
    await vi.advanceTimersByTimeAsync(10_000);
    const gaps = fake.starts.slice(1).map((t, i) => t - fake.starts[i]!);
    expect(gaps).toEqual([200, 400, 800, 1_000, 1_000]);
    expect(informer.hasSynced()).toBe(true);

    const before = fake.starts.length;
    fake.fail(refused());
    await vi.advanceTimersByTimeAsync(200);
    expect(fake.starts).toHaveLength(before + 1);
  });

  it('is not synced while the first list keeps failing', async () => {
    const { fake, informer } = setup();
    fake.script.push(refused(), refused());
    informer.start();
    await vi.advanceTimersByTimeAsync(500);
    expect(informer.hasSynced()).toBe(false);
    await vi.advanceTimersByTimeAsync(500);
    expect(informer.hasSynced()).toBe(true);
  });

  it('hands update handlers the old object and delete handlers the last state', async () => {
    const { fake, informer } = setup();
    fake.initial = [cm('a', '1')];
    const seen: string[] = [];
    informer.onUpdate((obj, old) => seen.push(`update ${old?.data?.rv}→${obj.data?.rv}`));
    informer.onDelete((obj) => seen.push(`delete ${obj.data?.rv}`));
    informer.start();
    await informer.synced;
    fake.emit('update', cm('a', '2'));
    fake.emit('delete', cm('a', '2'));
    expect(seen).toEqual(['update 1→2', 'delete 2']);
    expect(informer.get('ns', 'a')).toBeUndefined();
  });

  it('isolates a throwing handler from the others', async () => {
    const { fake, informer } = setup();
    const seen: string[] = [];
    informer.onAdd(() => {
      throw new Error('bug in a handler');
    });
    informer.onAdd((o) => seen.push(o.metadata!.name!));
    informer.start();
    await informer.synced;
    fake.emit('add', cm('a', '1'));
    expect(seen).toEqual(['a']);
  });

  it('unsubscribes a handler', async () => {
    const { fake, informer } = setup();
    const handler = vi.fn();
    const off = informer.onAdd(handler);
    informer.start();
    await informer.synced;
    off();
    fake.emit('add', cm('a', '1'));
    expect(handler).not.toHaveBeenCalled();
  });

  it('stops for good: no restarts, no handlers, and synced rejects if it never synced', async () => {
    const { fake, informer } = setup();
    fake.script.push(refused());
    const handler = vi.fn();
    informer.onAdd(handler);
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    await informer.stop();
    await expect(informer.synced).rejects.toThrow('informer configmaps stopped before it synced');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fake.starts).toHaveLength(1);
    expect(fake.stopped).toBe(true);
    fake.emit('add', cm('late', '9'));
    expect(handler).not.toHaveBeenCalled();
  });
});

/** Stands in for client-node's Watch under the real ListWatch: records each watch and lets the test drive it. */
class FakeWatch {
  readonly watches: {
    resourceVersion: string;
    event: (type: string, obj: V1ConfigMap) => void;
    done: (err: unknown) => void;
  }[] = [];

  async watch(
    _path: string,
    query: Record<string, string>,
    event: (type: string, obj: V1ConfigMap) => void,
    done: (err: unknown) => void,
  ) {
    this.watches.push({ resourceVersion: query.resourceVersion!, event, done });
    return new AbortController();
  }
}

describe('SupervisedInformer around the real ListWatch', () => {
  it('revives it after a non-410 error and resumes the watch from the last resourceVersion', async () => {
    const watch = new FakeWatch();
    const list = vi.fn(async () => ({ metadata: { resourceVersion: '10' }, items: [cm('a', '10')] }));
    const informer = new SupervisedInformer<V1ConfigMap>({
      name: 'configmaps',
      makeInformer: () =>
        new ListWatch<V1ConfigMap>(
          '/api/v1/namespaces/ns/configmaps',
          watch as unknown as Watch,
          list,
          false,
        ),
      logger: silent,
    });
    const added: string[] = [];
    informer.onAdd((o) => added.push(o.metadata!.name!));
    informer.start();
    await informer.synced;
    expect(watch.watches.map((w) => w.resourceVersion)).toEqual(['10']);

    watch.watches[0]!.event('ADDED', cm('b', '11'));
    watch.watches[0]!.done(refused());
    // ListWatch on its own never comes back from this.
    await vi.advanceTimersByTimeAsync(199);
    expect(watch.watches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(watch.watches.map((w) => w.resourceVersion)).toEqual(['10', '11']);
    expect(list).toHaveBeenCalledTimes(1);

    watch.watches[1]!.event('ADDED', cm('c', '12'));
    expect(added).toEqual(['a', 'b', 'c']);
    await informer.stop();
  });
});

describe('keys', () => {
  it.each([
    [cm('web', '1', 'team-a'), 'team-a/web', { namespace: 'team-a', name: 'web' }],
    [{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'vk-1' } }, 'vk-1', { namespace: '', name: 'vk-1' }],
  ])('%#: objectKey and splitKey are inverse', (obj, key, parts) => {
    expect(objectKey(obj)).toBe(key);
    expect(splitKey(key)).toEqual(parts);
  });
});
