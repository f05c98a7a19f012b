/**
 * The pod controller driven directly, without a control plane (Karpenter's suite_test.go style): each test sets up
 * its own world (pod-world.fixtures.ts: pods, a recording Pod API, Events, the fake provider, a fake clock), makes one
 * change, calls `reconcile` or `syncStatus` and asserts the writes and Events. The integration tests prove that the
 * real apiserver and scheduler agree with what this fakes.
 */
import type { CoreV1Event, V1Container, V1Pod } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { ThrottledError } from '../providers/errors.ts';
import { FakeProvider } from '../providers/fake/fake-provider.ts';
import type { SandboxEvent, SandboxStatus } from '../providers/types.ts';
import { podStatusFrom } from './pod-status.ts';
import { podWorld, settle, type PodWorld } from './pod-world.fixtures.ts';

const pod = (
  name: string,
  container: Partial<V1Container> = {},
  spec: Partial<V1Pod['spec']> = {},
): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `uid-${name}` },
  spec: { nodeName: 'vn', containers: [{ name: 'app', image: 'nginx:1.27', ...container }], ...spec },
});

let world: PodWorld | undefined;
afterEach(async () => {
  await world?.controller.stop();
  world = undefined;
});

async function given(opts: Parameters<typeof podWorld>[0]): Promise<PodWorld> {
  world = await podWorld(opts);
  return world;
}

/** Binds `p` to the node and runs the sync reconcile, then the status reconcile once the provider reported. */
async function bindAndRun(w: PodWorld, p: V1Pod): Promise<void> {
  w.pods.put(p);
  await w.controller.reconcile(`shop/${p.metadata!.name}`);
  await settle();
  await w.controller.syncStatus(`shop/${p.metadata!.name}`);
  await settle();
}

describe('pod controller: create', () => {
  it('creates the instance of a pod bound to the node and writes Running, with the container Events', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    expect(provider.createCalls).toBe(1);
    expect(w.api.statuses).toHaveLength(1);
    const status = w.api.statuses[0]!;
    expect(status.phase).toBe('Running');
    expect(status.hostIP).toBe('10.0.0.1');
    expect(status.containerStatuses?.[0]?.state?.running).toBeDefined();
    expect(w.events.map((e) => [e.reason, e.fieldPath])).toEqual([
      ['Pulling', 'spec.containers{app}'],
      ['Pulled', 'spec.containers{app}'],
      ['Created', 'spec.containers{app}'],
      ['Started', 'spec.containers{app}'],
    ]);
    // Level-based: running both again changes nothing.
    await w.controller.reconcile('shop/web');
    await w.controller.syncStatus('shop/web');
    expect(provider.createCalls).toBe(1);
    expect(w.api.statuses).toHaveLength(1);
  });

  it('records the Events of a status only once it is written, and once', async () => {
    const w = await given({ provider: new FakeProvider() });
    w.pods.put(pod('web'));
    await w.controller.reconcile('shop/web');
    await settle();
    w.api.nextStatusError = new Error('apiserver unavailable');
    await expect(w.controller.syncStatus('shop/web')).rejects.toThrow('apiserver unavailable');
    await settle();
    expect(w.events).toEqual([]);
    await w.controller.syncStatus('shop/web');
    await w.controller.syncStatus('shop/web');
    await settle();
    expect(w.events.map((e) => e.reason)).toEqual(['Pulling', 'Pulled', 'Created', 'Started']);
  });

  it('derives no container Event for a provider whose own events are those (ECI), nor Killing', async () => {
    const provider = Object.assign(new FakeProvider(), { reportsContainerEvents: true });
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    expect(w.api.statuses.at(-1)).toMatchObject({ phase: 'Running' });
    const running = w.pods.get('shop', 'web')!;
    w.pods.put({ ...running, metadata: { ...running.metadata, deletionTimestamp: new Date() } });
    await w.controller.reconcile('shop/web');
    await settle();
    expect(w.events).toEqual([]);
  });

  it.each([
    {
      refusal: 'the provider refuses the spec',
      provider: () =>
        new FakeProvider({
          refuse: (s, base) =>
            s.containers.some((c) => c.image === 'gpu:1')
              ? [{ path: `${base}.containers[0].image`, message: 'no GPU' }]
              : [],
        }),
      image: 'gpu:1',
      reason: 'UnsupportedPodSpec',
      message: /^provider fake cannot run this pod: spec.containers\[0\].image: no GPU/,
    },
    {
      refusal: 'the provider has no capacity',
      provider: () => new FakeProvider({ capacity: { pods: '0' } }),
      image: 'nginx:1.27',
      reason: 'InsufficientCapacity',
      message: /^provider fake has no capacity for this pod: fake provider is full/,
    },
  ])(
    'fails the pod at once when $refusal, with terminated containers, and never creates it again',
    async (c) => {
      const provider = c.provider();
      const w = await given({ provider });
      w.pods.put(pod('web', { image: c.image }));
      expect(await w.controller.reconcile('shop/web')).toBeUndefined();
      const status = w.api.statuses.at(-1)!;
      expect(status).toMatchObject({ phase: 'Failed', reason: c.reason });
      expect(status.message).toMatch(c.message);
      expect(status.containerStatuses?.[0]?.state?.terminated).toMatchObject({
        exitCode: 128,
        reason: c.reason,
      });
      expect(w.events).toEqual([expect.objectContaining({ type: 'Warning', reason: c.reason })]);
      // Not even from a stale cache that still shows it Pending (a watch event from before the status write).
      w.pods.put(pod('web', { image: c.image }));
      await w.controller.reconcile('shop/web');
      expect(provider.createCalls).toBe(1);
    },
  );

  it('refuses what no sandbox runs (hostNetwork) without asking the provider', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    w.pods.put(pod('web', {}, { hostNetwork: true }));
    await w.controller.reconcile('shop/web');
    expect(provider.createCalls).toBe(0);
    expect(w.api.statuses.at(-1)).toMatchObject({ phase: 'Failed', reason: 'UnsupportedPodSpec' });
  });

  it('retries a refused create with exponential backoff, then fails the pod ProviderFailed', async () => {
    const provider = new FakeProvider();
    provider.errorHook = (method) => (method === 'create' ? new Error('connection reset') : undefined);
    const w = await given({ provider });
    w.pods.put(pod('web'));
    const delays = [];
    for (let i = 0; i < 4; i++) delays.push((await w.controller.reconcile('shop/web'))?.requeueAfter);
    expect(delays).toEqual([1000, 2000, 4000, 8000]);
    expect(w.api.writes).toEqual([]);
    expect(await w.controller.reconcile('shop/web')).toBeUndefined();
    const message = 'provider fake refused the create (attempt 5 of 5): connection reset';
    expect(w.api.statuses.at(-1)).toMatchObject({ phase: 'Failed', reason: 'ProviderFailed', message });
    expect(w.events.map((e) => e.reason)).toEqual([
      ...Array(5).fill('ProviderCreateFailed'),
      'ProviderFailed',
    ]);
    expect(w.events[0]!.note).toBe('provider fake refused the create (attempt 1 of 5): connection reset');
    await w.controller.reconcile('shop/web');
    expect(provider.createCalls).toBe(5);
  });

  it('waits out throttling as long as it lasts, without counting attempts or failing the pod', async () => {
    const provider = new FakeProvider();
    provider.errorHook = (method) =>
      method === 'create' ? new ThrottledError('slow down', { retryAfterMs: 3000 }) : undefined;
    const w = await given({ provider });
    w.pods.put(pod('web'));
    for (let i = 0; i < 8; i++)
      expect(await w.controller.reconcile('shop/web')).toEqual({ requeueAfter: 3000 });
    provider.errorHook = undefined;
    await w.controller.reconcile('shop/web');
    expect(provider.size).toBe(1);
    expect(w.events).toEqual([]);
  });

  it('reports a missing env Secret as CreateContainerConfigError until it exists, then creates', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    w.pods.put(
      pod('web', { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'k' } } }] }),
    );
    expect(await w.controller.reconcile('shop/web')).toEqual({ requeueAfter: 1000 });
    expect(await w.controller.reconcile('shop/web')).toEqual({ requeueAfter: 2000 });
    expect(w.api.statuses).toHaveLength(1);
    expect(w.api.statuses[0]).toMatchObject({ phase: 'Pending' });
    expect(w.api.statuses[0]!.containerStatuses?.[0]?.state).toEqual({
      waiting: { reason: 'CreateContainerConfigError', message: 'secret "creds" not found' },
    });
    await settle();
    const failed = { pod: 'web', type: 'Warning', reason: 'Failed', note: 'Error: secret "creds" not found' };
    expect(w.events).toEqual([
      { ...failed, fieldPath: 'spec.containers{app}' },
      { ...failed, fieldPath: 'spec.containers{app}' },
    ]);
    w.references.secrets.set('shop/creds', { k: Buffer.from('v') });
    expect(await w.controller.reconcile('shop/web')).toBeUndefined();
    expect(provider.createCalls).toBe(1);
  });

  it('reports a missing volume source as FailedMount, ContainerCreating, and never fails the pod', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    w.pods.put(pod('web', {}, { volumes: [{ name: 'conf', configMap: { name: 'cfg' } }] }));
    const delays = [];
    for (let i = 0; i < 8; i++) delays.push((await w.controller.reconcile('shop/web'))?.requeueAfter);
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(w.api.statuses).toHaveLength(1);
    expect(w.api.statuses[0]!.containerStatuses?.[0]?.state).toEqual({
      waiting: { reason: 'ContainerCreating' },
    });
    expect(new Set(w.events.map((e) => [e.reason, e.note, e.fieldPath].join('|')))).toEqual(
      new Set(['FailedMount|MountVolume.SetUp failed for volume "conf" : configmap "cfg" not found|']),
    );
    expect(provider.createCalls).toBe(0);
  });
});

describe('pod controller: delete', () => {
  it('deletes the instance within the grace period, then the Pod with grace 0, and forgets it', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    w.events.length = 0;
    const running = w.pods.get('shop', 'web')!;
    w.pods.put({
      ...running,
      metadata: { ...running.metadata, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 10 },
    });
    await w.controller.reconcile('shop/web');
    expect(w.api.writes.at(-1)).toEqual({
      verb: 'delete',
      pod: 'web',
      uid: 'uid-web',
      gracePeriodSeconds: 0,
      instanceGone: true,
    });
    await settle();
    expect(w.events.map((e) => [e.reason, e.fieldPath])).toEqual([['Killing', 'spec.containers{app}']]);
    await w.controller.reconcile('shop/web');
    expect(w.controller.knownPods).toBe(0);
  });

  it('does not tell Killing again for a delete a previous run began and recorded', async () => {
    const provider = new FakeProvider();
    const web = pod('web');
    const report = await provider.create(web);
    const terminating: V1Pod = {
      ...web,
      metadata: { ...web.metadata, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 10 },
      status: podStatusFrom(web, report, '10.0.0.1'),
    };
    const killing: CoreV1Event = {
      metadata: { name: 'web.2', namespace: 'shop' },
      involvedObject: { kind: 'Pod', uid: 'uid-web' },
      reason: 'Killing',
      message: 'Stopping container app',
      reportingInstance: 'vn',
      lastTimestamp: new Date(),
    };
    const w = await given({ provider, pods: [terminating], recorded: [killing] });
    await w.controller.reconcile('shop/web');
    await settle();
    expect(w.api.writes.at(-1)).toMatchObject({ verb: 'delete', pod: 'web', gracePeriodSeconds: 0 });
    expect(w.events.filter((e) => e.reason === 'Killing')).toEqual([]);
  });

  it('deletes the old instance of a pod re-created under the same name, and creates the new one', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    w.pods.remove('shop', 'web');
    w.pods.put({ ...pod('web'), metadata: { ...pod('web').metadata, uid: 'uid-web-2' } });
    await w.controller.reconcile('shop/web');
    expect(provider.sandbox('uid-web')).toBeUndefined();
    expect(provider.sandbox('uid-web-2')).toBeDefined();
    expect(w.controller.knownPods).toBe(1);
  });

  it('stops the instance of a pod that turned Failed, and never creates it again', async () => {
    const provider = new FakeProvider();
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    const running = w.pods.get('shop', 'web')!;
    w.pods.put({ ...running, status: { ...running.status, phase: 'Failed', reason: 'Evicted' } });
    await w.controller.reconcile('shop/web');
    expect(provider.size).toBe(0);
    await w.controller.reconcile('shop/web');
    expect(provider.createCalls).toBe(1);
  });
});

describe('pod controller: reclaim notice', () => {
  it('evicts a pod whose instance will be reclaimed, once, with a Warning saying why', async () => {
    const provider = new FakeProvider();
    let report: (s: SandboxStatus) => void = () => {};
    const subscribe = provider.onStatus.bind(provider);
    Object.assign(provider, { onStatus: (l: typeof report) => ((report = l), subscribe(l)) });
    const w = await given({ provider });
    await bindAndRun(w, pod('web'));
    const last = await provider.status({ uid: 'uid-web', namespace: 'shop', name: 'web' });
    const notice = {
      type: 'DisruptionTarget',
      status: 'True' as const,
      reason: 'Reclaim',
      message: 'spot released',
    };
    report({ ...last, conditions: [notice] });
    await w.controller.syncStatus('shop/web');
    await w.controller.syncStatus('shop/web');
    expect(w.api.writes.filter((x) => x.verb === 'evict')).toEqual([
      { verb: 'evict', pod: 'web', uid: 'uid-web' },
    ]);
    expect(w.events.filter((e) => e.reason === 'Evicting')).toEqual([
      expect.objectContaining({
        type: 'Warning',
        note: 'evicted before its instance is reclaimed: spot released',
      }),
    ]);
  });
});

describe('pod controller: restart', () => {
  it('adopts the instances the provider lists, with their listed status, and creates none again', async () => {
    const provider = new FakeProvider();
    const web = pod('web');
    await provider.create(web);
    const w = await given({ provider, pods: [web] });
    expect([provider.listCalls, provider.statusCalls]).toEqual([1, 0]);
    await w.controller.reconcile('shop/web');
    await w.controller.syncStatus('shop/web');
    expect(provider.createCalls).toBe(1);
    expect(w.api.statuses.at(-1)).toMatchObject({ phase: 'Running' });
  });

  it('deletes an instance whose pod is gone once it is older than the minimum age', async () => {
    const provider = new FakeProvider();
    await provider.create(pod('gone'));
    const w = await given({ provider });
    expect(await w.controller.collectOrphans()).toBe(0);
    w.clock.advance(31_000);
    expect(await w.controller.collectOrphans()).toBe(1);
    expect(provider.size).toBe(0);
    expect(w.controller.knownPods).toBe(0);
  });

  it('writes nothing and records no Event again for a pod whose status was written before the restart', async () => {
    const provider = new FakeProvider();
    const web = pod('web');
    const report = await provider.create(web);
    const w = await given({ provider, pods: [{ ...web, status: podStatusFrom(web, report, '10.0.0.1') }] });
    await w.controller.reconcile('shop/web');
    await w.controller.syncStatus('shop/web');
    await settle();
    expect(w.api.writes).toEqual([]);
    expect(w.events).toEqual([]);
  });

  it('records a provider event once: not again after a restart, nor one that expired before it', async () => {
    const provider = new FakeProvider();
    let emit: (e: SandboxEvent) => void = () => {};
    Object.assign(provider, { onEvent: (l: typeof emit) => ((emit = l), () => {}) });
    const web = pod('web');
    await provider.create(web);
    const seenAt = Date.now() - 60_000;
    const recorded: CoreV1Event = {
      metadata: { name: 'web.1', namespace: 'shop' },
      involvedObject: { kind: 'Pod', uid: 'uid-web' },
      reason: 'Pulled',
      message: 'pulled from the registry',
      reportingInstance: 'vn',
      lastTimestamp: new Date(seenAt),
    };
    const w = await given({ provider, pods: [web], recorded: [recorded] });
    const key = { uid: 'uid-web', namespace: 'shop', name: 'web' };
    const event = (message: string, at: number): SandboxEvent => ({
      key,
      type: 'Normal',
      reason: 'Pulled',
      message,
      timestamp: new Date(at),
    });
    emit(event('pulled from the registry', seenAt));
    emit(event('an occurrence from long ago', w.clock.now() - 2 * 3600_000));
    emit(event('pulled from the registry', seenAt + 30_000));
    await settle();
    expect(w.events.map((e) => [e.reason, e.note])).toEqual([['Pulled', 'pulled from the registry']]);
  });
});
