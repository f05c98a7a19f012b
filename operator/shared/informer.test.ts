import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, ListWatch, type V1ConfigMap, type Watch } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from './log.ts';
import {
  informerFor,
  LAST_APPLIED_ANNOTATION,
  objectKey,
  splitKey,
  stripForCache,
  SupervisedInformer,
  type InformerLike,
} from './informer.ts';

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

/** A ConfigMap as the apiserver sends it: with managedFields, and kubectl's last-applied copy when applied. */
const served = (name: string, rv: string, lastApplied = false): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: {
    name,
    namespace: 'ns',
    resourceVersion: rv,
    labels: { app: 'web' },
    annotations: {
      team: 'shop',
      ...(lastApplied ? { [LAST_APPLIED_ANNOTATION]: '{"apiVersion":"v1","kind":"ConfigMap"}' } : {}),
    },
    managedFields: [
      {
        manager: 'kubectl',
        operation: 'Apply',
        apiVersion: 'v1',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:data': { 'f:rv': {} } },
      },
    ],
  },
  data: { rv },
});

describe('stripForCache', () => {
  it('drops managedFields and the last-applied annotation, and keeps everything else', () => {
    const cm = stripForCache(served('a', '1', true));
    expect(JSON.parse(JSON.stringify(cm))).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: 'a',
        namespace: 'ns',
        resourceVersion: '1',
        labels: { app: 'web' },
        annotations: { team: 'shop' },
      },
      data: { rv: '1' },
    });
    expect(cm.metadata?.managedFields).toBeUndefined();
  });

  it.each([
    ['no metadata', { apiVersion: 'v1', kind: 'Status' }],
    ['no annotations', { metadata: { name: 'a' } }],
  ])('leaves an object with %s as it is', (_, obj) => {
    expect(stripForCache(structuredClone(obj))).toEqual(obj);
  });
});

/**
 * A fake apiserver on loopback for one collection: GET …?watch=true streams the events a test pushes; the list
 * is the informer's `list` function. Exercises client-node's real Watch (HTTP, line parsing) under the transform.
 */
async function fakeApiserver() {
  const streams: ServerResponse[] = [];
  const server = createServer((req, res) => {
    if (!req.url?.includes('watch=true')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    streams.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // Plain HTTP on loopback: client-node allows it only with skipTLSVerify.
    clusters: [
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return {
    kc,
    /** Sends one watch event to every open watch. */
    send: (type: string, object: object) => {
      for (const res of streams) res.write(`${JSON.stringify({ type, object })}\n`);
    },
    watches: () => streams.length,
    close: async () => {
      for (const res of streams) res.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('informerFor: the cache transform', () => {
  beforeEach(() => {
    vi.useRealTimers();
  });

  async function started(options: Parameters<typeof informerFor<V1ConfigMap>>[3] = {}) {
    const api = await fakeApiserver();
    const informer = informerFor<V1ConfigMap>(
      api.kc,
      'configmaps',
      {
        path: '/api/v1/namespaces/ns/configmaps',
        list: async () => ({ metadata: { resourceVersion: '10' }, items: [served('listed', '10', true)] }),
      },
      { logger: silent, ...options },
    );
    const seen: string[] = [];
    informer.onAdd((o) =>
      seen.push(`add ${o.metadata?.name} ${o.metadata?.managedFields ? 'full' : 'trimmed'}`),
    );
    informer.onUpdate((o, old) =>
      seen.push(`update ${old?.data?.rv}→${o.data?.rv} ${o.metadata?.managedFields ? 'full' : 'trimmed'}`),
    );
    informer.onDelete((o) => seen.push(`delete ${o.metadata?.name}`));
    informer.start();
    await informer.synced;
    await vi.waitFor(() => expect(api.watches()).toBe(1));
    return { api, informer, seen };
  }

  it('caches listed and watched objects without managedFields or last-applied, and events still flow', async () => {
    const { api, informer, seen } = await started();
    try {
      api.send('ADDED', served('watched', '11'));
      api.send('MODIFIED', served('watched', '12', true));
      api.send('ADDED', served('gone', '13'));
      api.send('DELETED', served('gone', '14'));
      await vi.waitFor(() => expect(seen).toHaveLength(5));
      expect(seen).toEqual([
        'add listed trimmed',
        'add watched trimmed',
        'update 11→12 trimmed',
        'add gone trimmed',
        'delete gone',
      ]);
      for (const cm of informer.list()) {
        expect(cm.metadata?.managedFields).toBeUndefined();
        expect(cm.metadata?.annotations).toEqual({ team: 'shop' });
      }
      expect(informer.keys().sort()).toEqual(['ns/listed', 'ns/watched']);
      expect(informer.get('ns', 'watched')?.data).toEqual({ rv: '12' });
      expect(informer.get('ns', 'gone')).toBeUndefined();
    } finally {
      await informer.stop();
      await api.close();
    }
  });

  it('keeps objects whole with transform: null, and applies a custom transform', async () => {
    const whole = await started({ transform: null });
    try {
      whole.api.send('ADDED', served('watched', '11'));
      await vi.waitFor(() => expect(whole.seen).toEqual(['add listed full', 'add watched full']));
      expect(
        whole.informer.get('ns', 'listed')?.metadata?.annotations?.[LAST_APPLIED_ANNOTATION],
      ).toBeDefined();
    } finally {
      await whole.informer.stop();
      await whole.api.close();
    }
    const custom = await started({
      transform: (cm) => ({ ...cm, data: { rv: `seen ${cm.data?.rv}` } }),
    });
    try {
      custom.api.send('ADDED', served('watched', '11'));
      await vi.waitFor(() => expect(custom.informer.get('ns', 'watched')).toBeDefined());
      expect(custom.informer.list().map((cm) => cm.data?.rv)).toEqual(['seen 10', 'seen 11']);
    } finally {
      await custom.informer.stop();
      await custom.api.close();
    }
  });
});
