import { KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { SupervisedInformer, type InformerLike } from './informer.ts';
import { NamespacedInformers, scopedInformer } from './namespaced-informers.ts';

/** Lists `initial` on start and can emit more; stands in for one namespace's ListWatch. */
class FakeInformer implements InformerLike<V1ConfigMap> {
  readonly handlers = new Map<string, ((o: V1ConfigMap) => void)[]>();
  readonly initial: V1ConfigMap[];
  constructor(initial: V1ConfigMap[]) {
    this.initial = initial;
  }
  on(verb: string, cb: (o: never) => void): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb as (o: V1ConfigMap) => void]);
  }
  async start(): Promise<void> {
    for (const o of this.initial) this.emit('add', o);
  }
  async stop(): Promise<void> {}
  emit(verb: 'add' | 'update' | 'delete', o: V1ConfigMap): void {
    for (const cb of this.handlers.get(verb) ?? []) cb(o);
  }
}

const cm = (namespace: string, name: string, rv = '1'): V1ConfigMap => ({
  metadata: { namespace, name, resourceVersion: rv },
});

describe('NamespacedInformers', () => {
  it('reads several namespaces as one cache and sends every namespace’s events to one handler', async () => {
    const fakes = { a: new FakeInformer([cm('a', 'x'), cm('a', 'y')]), b: new FakeInformer([cm('b', 'x')]) };
    const cache = new NamespacedInformers(
      new Map(
        Object.entries(fakes).map(([ns, fake]) => [
          ns,
          new SupervisedInformer<V1ConfigMap>({ name: ns, makeInformer: () => fake }),
        ]),
      ),
    );
    const seen: string[] = [];
    cache.onAdd((o) => seen.push(`add ${o.metadata!.namespace}/${o.metadata!.name}`));
    cache.onUpdate((o, old) => seen.push(`update ${o.metadata!.name} ${old?.metadata!.resourceVersion}`));
    expect(cache.hasSynced()).toBe(false);
    cache.start();
    await cache.synced;
    expect(cache.hasSynced()).toBe(true);
    expect(cache.namespaces).toEqual(['a', 'b']);

    expect(
      cache
        .list()
        .map((o) => `${o.metadata!.namespace}/${o.metadata!.name}`)
        .sort(),
    ).toEqual(['a/x', 'a/y', 'b/x']);
    expect(cache.list('a')).toHaveLength(2);
    expect(cache.list('elsewhere')).toEqual([]);
    expect(cache.get('b', 'x')?.metadata?.namespace).toBe('b');
    expect(cache.getByKey('a/y')?.metadata?.name).toBe('y');
    expect(cache.get('elsewhere', 'x')).toBeUndefined();

    fakes.b.emit('update', cm('b', 'x', '2'));
    expect(seen).toEqual(['add a/x', 'add a/y', 'add b/x', 'update x 1']);
    await cache.stop();
  });
});

describe('scopedInformer', () => {
  it('builds one cluster-wide informer without namespaces, one per namespace with them', () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const paths: (string | undefined)[] = [];
    const source = (ns?: string) => {
      paths.push(ns);
      return {
        path: ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods',
        list: async () => ({ items: [] }),
      };
    };
    expect(scopedInformer(kc, 'pods', undefined, source)).toBeInstanceOf(SupervisedInformer);
    expect(scopedInformer(kc, 'pods', [], source)).toBeInstanceOf(SupervisedInformer);
    const scoped = scopedInformer(kc, 'pods', ['a', 'b'], source);
    expect(scoped).toBeInstanceOf(NamespacedInformers);
    expect((scoped as NamespacedInformers<never>).namespaces).toEqual(['a', 'b']);
    expect(paths).toEqual([undefined, undefined, 'a', 'b']);
  });
});
