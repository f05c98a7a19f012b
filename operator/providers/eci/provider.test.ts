/**
 * The ECI provider through the real Alibaba SDK against the fake ECI endpoint on loopback (signatures verified).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it, vi } from 'vitest';
import { isInsufficientCapacity, isNotFound, isThrottled, sandboxKey, type SandboxStatus } from '../types.ts';
import { fakeEciConfig } from '../../../test/support/fake-eci/provider-config.ts';
import { createLogger } from '../../shared/log.ts';
import { eciEndpoint, parseEciConfig } from './config.ts';
import { useFakeEci } from './provider.fixtures.ts';
import { EciProvider, type PodEvent } from './provider.ts';

const silent = createLogger({ level: 'silent' });
let uid = 0;
function pod(name: string, extra: { labels?: Record<string, string>; restartPolicy?: string } = {}): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'default',
      uid: `00000000-0000-4000-8000-${String(++uid).padStart(12, '0')}`,
      labels: extra.labels,
    },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], restartPolicy: extra.restartPolicy },
  };
}

const eci = useFakeEci();
const provider = eci.provider;

/** Collects what the provider reports, and waits until a report matches. */
function watch(p: EciProvider) {
  const seen: SandboxStatus[] = [];
  p.onStatus((s) => seen.push(s));
  return {
    seen,
    until: (uidOf: string, match: (s: SandboxStatus) => boolean) =>
      vi.waitFor(
        () => {
          const hit = seen.find((s) => s.key.uid === uidOf && match(s));
          if (!hit) throw new Error(`no matching status for ${uidOf} yet`);
          return hit;
        },
        { timeout: 5000, interval: 10 },
      ),
  };
}

describe('creating and running pods', () => {
  it('creates one tagged container group per pod and reports it Running with its IP', async () => {
    const p = provider();
    const w = watch(p);
    const web = pod('web');
    const accepted = await p.create(web);
    expect(accepted.phase).toBe('Pending');
    const running = await w.until(web.metadata!.uid!, (s) => s.phase === 'Running');
    expect(running.podIP).toMatch(/^192\.168\./);
    expect(running.containers).toMatchObject([
      { name: 'app', ready: true, restartCount: 0, state: { kind: 'running' } },
    ]);
    const group = eci.fake.groupByUid(web.metadata!.uid!)!;
    expect(group.request.ClientToken).toBe(`spillway-${web.metadata!.uid}`);
    expect(group.request.VSwitchId).toBe('vsw-a,vsw-b');
    expect((await p.status(sandboxKey(web))).phase).toBe('Running');
    expect(await p.list()).toMatchObject([{ key: sandboxKey(web), providerID: group.id }]);
  });

  it('reports restarts: a container that exits under restartPolicy Always counts a restart', async () => {
    const p = provider();
    const w = watch(p);
    const web = pod('web');
    await p.create(web);
    await w.until(web.metadata!.uid!, (s) => s.phase === 'Running');
    eci.fake.exitContainer(eci.fake.groupByUid(web.metadata!.uid!)!.id, 'app', 2);
    const restarted = await w.until(web.metadata!.uid!, (s) => s.containers[0]!.restartCount === 1);
    expect(restarted.containers[0]!.lastState).toMatchObject({
      kind: 'terminated',
      exitCode: 2,
      reason: 'Error',
    });
  });

  it('reports a finished job as Succeeded with exit code 0', async () => {
    const p = provider();
    const w = watch(p);
    const job = pod('job', { restartPolicy: 'Never' });
    await p.create(job);
    await w.until(job.metadata!.uid!, (s) => s.phase === 'Running');
    eci.fake.exitContainer(eci.fake.groupByUid(job.metadata!.uid!)!.id, 'app', 0);
    const done = await w.until(job.metadata!.uid!, (s) => s.phase === 'Succeeded');
    expect(done.containers[0]!.state).toMatchObject({ kind: 'terminated', exitCode: 0, reason: 'Completed' });
  });
});

describe('idempotency across retries and restarts', () => {
  it('deletes idempotently: twice, and for a pod that never had an instance', async () => {
    const p = provider();
    const web = pod('web');
    await p.create(web);
    await p.delete(sandboxKey(web));
    await p.delete(sandboxKey(web));
    await p.delete(sandboxKey(pod('never-created')));
    expect(eci.fake.groups()).toEqual([]);
    await expect(p.status(sandboxKey(web))).rejects.toSatisfy(isNotFound);
    expect(await p.list()).toEqual([]);
  });

  it('a new provider instance (operator restart) finds the existing group instead of creating a second', async () => {
    const web = pod('web');
    const before = provider();
    await before.create(web);
    await before.close();
    const after = provider();
    const status = await after.create(web);
    expect(eci.fake.calls('CreateContainerGroup')).toBe(1);
    expect(eci.fake.groups()).toHaveLength(1);
    expect(status.key.uid).toBe(web.metadata!.uid);
  });

  it('two creates in flight for one pod (a replay racing the original) make one group, through the ClientToken', async () => {
    const web = pod('web');
    await Promise.all([provider().create(web), provider().create(web)]);
    expect(eci.fake.groups()).toHaveLength(1);
  });

  it('lists only this node’s instances, so orphan collection never touches another node’s', async () => {
    const mine = provider();
    const other = provider({ nodeName: 'vn-other' });
    const a = pod('a');
    await mine.create(a);
    await other.create(pod('b'));
    expect((await mine.list()).map((i) => i.key.uid)).toEqual([a.metadata!.uid]);
  });
});

describe('capacity and API faults', () => {
  it('no spot stock: InsufficientCapacityError for spot, while on-demand still runs', async () => {
    const p = provider();
    eci.fake.noStock.spot = true;
    const err = await p
      .create(pod('spot', { labels: { 'spillway.dev/capacity': 'spot' } }))
      .catch((e: unknown) => e);
    expect(isInsufficientCapacity(err)).toBe(true);
    expect(err).toMatchObject({
      capacityType: 'spot',
      message: expect.stringContaining('OperationDenied.NoStock'),
    });
    expect(eci.fake.groups()).toEqual([]);
    await p.create(pod('regular'));
    expect(eci.fake.groups()).toHaveLength(1);
  });

  it('throttling is retried with back-off and the create succeeds once', async () => {
    const p = provider();
    eci.fake.failNext('CreateContainerGroup', 'Throttling.User', { count: 2 });
    await p.create(pod('web'));
    expect(eci.fake.calls('CreateContainerGroup')).toBe(3);
    expect(eci.fake.groups()).toHaveLength(1);
    expect(p.api.stats.throttled).toBe(2);
  });

  it('persistent throttling gives up after the configured attempts with ThrottledError, not a storm', async () => {
    const p = provider({ retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 20 } });
    await p.list();
    eci.fake.failNext('CreateContainerGroup', 'Throttling.User', { count: 100 });
    const err = await p.create(pod('web')).catch((e: unknown) => e);
    expect(isThrottled(err)).toBe(true);
    expect(eci.fake.calls('CreateContainerGroup')).toBe(4);
  });

  it('a burst under the client-side limit never meets ECI’s quota', async () => {
    eci.fake.setQuota('CreateContainerGroup', 100, 10);
    const p = provider({ rateLimits: { CreateContainerGroup: { qps: 50, burst: 5 } } });
    await Promise.all(Array.from({ length: 30 }, (_, i) => p.create(pod(`burst-${i}`))));
    expect(eci.fake.groups()).toHaveLength(30);
    expect(eci.fake.rejectedWith('Throttling.User')).toBe(0);
  });

  it('5xx answers are retried', async () => {
    const p = provider();
    eci.fake.failNext('DescribeContainerGroups', 'ServiceUnavailable', { status: 503, count: 2 });
    expect(await p.list()).toEqual([]);
    expect(eci.fake.rejectedWith('ServiceUnavailable')).toBe(2);
  });

  it('a wrong secret is rejected by the signature check, and ping fails', async () => {
    const p = provider({
      credentials: {
        type: 'access_key',
        accessKeyId: eci.fake.accessKeyId,
        accessKeySecret: 'not-the-secret',
      },
    });
    await expect(p.ping()).rejects.toThrow(/SignatureDoesNotMatch/);
    expect(eci.fake.rejectedWith('SignatureDoesNotMatch')).toBe(1);
    await provider().ping();
  });

  it('defaults to the region endpoint the SDK cannot pick itself: public, or VPC when asked', () => {
    const { endpoint: _e, protocol: _p, ...production } = fakeEciConfig(eci.fake);
    const p = new EciProvider({ config: production, logger: silent });
    expect(eciEndpoint(p.config)).toBe(`eci.${eci.fake.regionId}.aliyuncs.com`);
    const vpc = new EciProvider({ config: { ...production, network: 'vpc' }, logger: silent });
    expect(eciEndpoint(vpc.config)).toBe(`eci-vpc.${eci.fake.regionId}.aliyuncs.com`);
    expect(eciEndpoint(parseEciConfig(fakeEciConfig(eci.fake)))).toBe(eci.fake.endpoint);
  });

  it('refuses a configuration without region, with plain http to the default endpoint, and never echoes secrets', () => {
    const base = fakeEciConfig(eci.fake);
    const { regionId: _r, ...noRegion } = base;
    expect(() => new EciProvider({ config: noRegion, logger: silent })).toThrow(/eci\.regionId/);
    const { endpoint: _e, ...noEndpoint } = base;
    expect(() => new EciProvider({ config: noEndpoint, logger: silent })).toThrow(
      /eci\.protocol: plain http is only allowed/,
    );
    const bad = {
      ...base,
      vSwitchIds: ['nope'],
      credentials: { type: 'access_key', accessKeyId: 'AK', accessKeySecret: 42 },
    };
    expect(() => new EciProvider({ config: bad, logger: silent })).toThrow(
      /eci\.vSwitchIds\.0: must be a vSwitch ID/,
    );
    expect(() => new EciProvider({ config: bad, logger: silent })).toThrow(
      /eci\.credentials\.accessKeySecret: .*expected string/,
    );
    expect(() => new EciProvider({ config: { ...base, vSwitchIds: [] }, logger: silent })).not.toThrow(
      new RegExp(eci.fake.accessKeySecret),
    );
  });
});

describe('spot release', () => {
  it('SpotToBeReleased becomes a DisruptionTarget condition and an event; the reclaim fails the pod', async () => {
    const p = provider();
    const w = watch(p);
    const events: PodEvent[] = [];
    p.onEvent((e) => events.push(e));
    const spot = pod('executor', { labels: { 'spillway.dev/capacity': 'spot' } });
    await p.create(spot);
    expect(eci.fake.groupByUid(spot.metadata!.uid!)!.request.SpotStrategy).toBe('SpotAsPriceGo');
    await w.until(spot.metadata!.uid!, (s) => s.phase === 'Running');
    const id = eci.fake.groupByUid(spot.metadata!.uid!)!.id;
    eci.fake.releaseSpot(id);
    const notice = await w.until(spot.metadata!.uid!, (s) =>
      (s.conditions ?? []).some((c) => c.type === 'DisruptionTarget'),
    );
    expect(notice.phase).toBe('Running');
    expect(notice.conditions).toContainEqual(
      expect.objectContaining({ type: 'DisruptionTarget', status: 'True', reason: 'SpotInstanceReclaim' }),
    );
    expect(events).toContainEqual(expect.objectContaining({ reason: 'SpotToBeReleased', type: 'Warning' }));
    eci.fake.expire(id);
    const reclaimed = await w.until(spot.metadata!.uid!, (s) => s.phase === 'Failed');
    expect(reclaimed.reason).toBe('SpotInstanceReclaimed');
  });
});
