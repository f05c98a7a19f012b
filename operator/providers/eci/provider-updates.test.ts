/**
 * The ECI provider's incremental status polling, volume refresh (UpdateContainerGroup) and kube-proxy token
 * rotation, through the real Alibaba SDK against the fake ECI endpoint (signatures verified).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { groupFiles } from '../../../test/support/fake-eci/groups.ts';
import { isNotFound, sandboxKey, type SandboxStatus } from '../types.ts';
import { useFakeEci } from './provider.fixtures.ts';
import type { EciProvider, PodEvent } from './provider.ts';
import { jwt } from './volume-updates.fixtures.ts';

let uid = 0;
function pod(name: string, extra: Partial<V1Pod['spec']> = {}, labels?: Record<string, string>): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'default',
      uid: `00000000-0000-4000-9000-${String(++uid).padStart(12, '0')}`,
      labels,
    },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], ...extra },
  };
}

const eci = useFakeEci();
const provider = eci.provider;

function until<T>(fn: () => T | undefined, what: string): Promise<T> {
  return vi.waitFor(
    () => {
      const v = fn();
      if (v === undefined || v === false) throw new Error(`not yet: ${what}`);
      return v;
    },
    { timeout: 5000, interval: 10 },
  );
}

function running(p: EciProvider, uids: string[]): Promise<true> {
  const seen = new Set<string>();
  p.onStatus((s: SandboxStatus) => {
    if (s.phase === 'Running') seen.add(s.key.uid);
  });
  return until(() => uids.every((u) => seen.has(u)) || undefined, 'all Running');
}

/** DescribeContainerGroups calls that listed by tags (not by ids). */
const listings = () =>
  eci.fake.requests('DescribeContainerGroups').filter((r) => !r.has('ContainerGroupIds'));

describe('status polling', () => {
  it('after the first listing, a poll asks only what changed: no describe while nothing changes', async () => {
    const p = provider();
    const pods = Array.from({ length: 30 }, (_, i) => pod(`web-${i}`));
    const up = running(
      p,
      pods.map((x) => x.metadata!.uid!),
    );
    for (const x of pods) await p.create(x);
    await up;
    // Let the overlapping windows pass over the last changes, then count.
    const settled = eci.fake.calls('DescribeContainerGroupStatus') + 5;
    await until(() => eci.fake.calls('DescribeContainerGroupStatus') >= settled || undefined, 'polls');
    const describes = eci.fake.calls('DescribeContainerGroups');
    const statuses = eci.fake.calls('DescribeContainerGroupStatus');
    await until(() => eci.fake.calls('DescribeContainerGroupStatus') >= statuses + 10 || undefined, 'polls');
    expect(eci.fake.calls('DescribeContainerGroups')).toBe(describes);
    expect(eci.fake.calls('DescribeContainerGroupEvents')).toBeGreaterThanOrEqual(10);
    expect(listings()).toHaveLength(1);

    // A container restart is a status change: the group is described by id, alone.
    const events: PodEvent[] = [];
    p.onEvent((e) => events.push(e));
    const restarted: SandboxStatus[] = [];
    p.onStatus((s) => restarted.push(s));
    eci.fake.exitContainer(eci.fake.groupByUid(pods[7]!.metadata!.uid!)!.id, 'app', 1);
    await until(
      () => restarted.find((s) => s.key.name === 'web-7' && s.containers[0]!.restartCount === 1),
      'restart reported',
    );
    const byId = eci.fake.requests('DescribeContainerGroups').slice(-1)[0]!;
    expect(JSON.parse(byId.get('ContainerGroupIds')!)).toEqual([
      eci.fake.groupByUid(pods[7]!.metadata!.uid!)!.id,
    ]);
    expect(events).toContainEqual(expect.objectContaining({ reason: 'BackOff', type: 'Warning' }));
  });

  it('sees a spot release notice, an event without a status change, without listing everything', async () => {
    const p = provider();
    const spot = pod('executor', {}, { 'spillway.dev/capacity': 'spot' });
    const up = running(p, [spot.metadata!.uid!]);
    await p.create(spot);
    await up;
    const events: PodEvent[] = [];
    p.onEvent((e) => events.push(e));
    eci.fake.releaseSpot(eci.fake.groupByUid(spot.metadata!.uid!)!.id);
    await until(
      () => events.find((e) => e.reason === 'SpotToBeReleased'),
      'SpotToBeReleased reaches the pod events',
    );
    expect(listings()).toHaveLength(1);
  });

  it('lists all the node instances again every resyncIntervalMs', async () => {
    const p = provider({ resyncIntervalMs: 50 });
    await p.refresh();
    await until(() => listings().length >= 3 || undefined, 'three listings');
  });
});

/** A pod with a configMap volume `cfg`, and its materialised files. */
function withConfig(name: string, restartPolicy?: string): V1Pod {
  return pod(name, {
    restartPolicy,
    volumes: [{ name: 'cfg', configMap: { name: 'app-config' } }],
    containers: [
      { name: 'app', image: 'nginx:1.27', volumeMounts: [{ name: 'cfg', mountPath: '/etc/app' }] },
    ],
  });
}
const cfg = (text: string) => ({ cfg: { files: [{ path: 'app.conf', content: Buffer.from(text) }] } });

describe('updateVolumes', () => {
  it('writes a changed ConfigMap file into the running instance once, and nothing when nothing changed', async () => {
    const p = provider();
    const web = withConfig('web');
    const up = running(p, [web.metadata!.uid!]);
    await p.create(web, { volumes: cfg('v1') });
    await up;
    const group = eci.fake.groupByUid(web.metadata!.uid!)!;
    await p.updateVolumes(sandboxKey(web), cfg('v1'));
    expect(group.updates).toHaveLength(0);

    await p.updateVolumes(sandboxKey(web), cfg('v2'));
    expect(group.updates).toHaveLength(1);
    expect(eci.fake.requests('UpdateContainerGroup')[0]!.get('UpdateType')).toBe('IncrementalUpdate');
    expect(groupFiles(group, 'cfg')).toEqual({ 'app.conf': 'v2' });
    // The instance keeps running through the update.
    await until(() => group.status === 'Running' || undefined, 'Running after Updating');
    expect(group.containers[0]!.restartCount).toBe(0);

    await p.updateVolumes(sandboxKey(web), cfg('v2'));
    expect(group.updates).toHaveLength(1);
  });

  it('keeps a re-minted token while the instance token is fresh, and writes it past half its life', async () => {
    const p = provider();
    const web = pod('web', {
      volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } }],
    });
    const now = Math.floor(Date.now() / 1000);
    const tokenVolume = (t: string) => ({ token: { files: [{ path: 'token', content: Buffer.from(t) }] } });
    const up = running(p, [web.metadata!.uid!]);
    await p.create(web, { volumes: tokenVolume(jwt(now - 600, now + 3000)) });
    await up;
    const group = eci.fake.groupByUid(web.metadata!.uid!)!;
    await p.updateVolumes(sandboxKey(web), tokenVolume(jwt(now, now + 3600)));
    expect(group.updates).toHaveLength(0);

    const stale = withConfig('stale');
    const staleUp = running(p, [stale.metadata!.uid!]);
    await p.create(
      { ...stale, spec: { ...stale.spec!, volumes: web.spec!.volumes } },
      { volumes: tokenVolume(jwt(now - 3000, now + 600)) },
    );
    await staleUp;
    const fresh = jwt(now, now + 3600);
    await p.updateVolumes(sandboxKey(stale), tokenVolume(fresh));
    const staleGroup = eci.fake.groupByUid(stale.metadata!.uid!)!;
    expect(staleGroup.updates).toHaveLength(1);
    expect(groupFiles(staleGroup, 'token')).toEqual({ token: fresh });
  });

  it('leaves a restartPolicy Never instance alone and says so once on the pod', async () => {
    const p = provider();
    const job = withConfig('job', 'Never');
    const events: PodEvent[] = [];
    p.onEvent((e) => events.push(e));
    const up = running(p, [job.metadata!.uid!]);
    await p.create(job, { volumes: cfg('v1') });
    await up;
    await p.updateVolumes(sandboxKey(job), cfg('v2'));
    await p.updateVolumes(sandboxKey(job), cfg('v3'));
    expect(eci.fake.calls('UpdateContainerGroup')).toBe(0);
    expect(events.filter((e) => e.reason === 'EciVolumesNotRefreshed')).toHaveLength(1);
  });

  it('answers NotFound for a pod without an instance', async () => {
    await expect(provider().updateVolumes(sandboxKey(pod('ghost')), cfg('v1'))).rejects.toSatisfy(isNotFound);
  });
});

describe('kube-proxy credentials', () => {
  const serviceAccount = { namespace: 'spillway-system', name: 'spillway-kube-proxy' };
  const creds = (token: string) => ({
    token,
    expiresAt: new Date(Date.now() + 3600_000),
    server: 'https://10.0.0.1:6443',
    caPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  });

  it('names the ServiceAccount only when the sidecar uses minted tokens', () => {
    expect(provider().sidecarIdentity()).toBeUndefined();
    expect(
      provider({ kubeProxy: { enabled: true, kubeconfig: 'apiVersion: v1\n' } }).sidecarIdentity(),
    ).toBeUndefined();
    expect(
      provider({
        kubeProxy: { enabled: true, serviceAccount, tokenExpirationSeconds: 7200 },
      }).sidecarIdentity(),
    ).toEqual({ ...serviceAccount, expirationSeconds: 7200 });
  });

  it('refuses to create before a token is minted, saying why', async () => {
    const p = provider({ kubeProxy: { enabled: true, serviceAccount } });
    await expect(p.create(pod('web'))).rejects.toThrow(/kube-proxy sidecar has no credentials yet/);
    expect(eci.fake.calls('CreateContainerGroup')).toBe(0);
  });

  it('creates with a kubeconfig that reads the token file, and writes a renewed token in place', async () => {
    const p = provider({ kubeProxy: { enabled: true, serviceAccount } });
    const now = Math.floor(Date.now() / 1000);
    const first = jwt(now - 2900, now + 700);
    await p.setSidecarCredentials(creds(first));
    const web = pod('web');
    const up = running(p, [web.metadata!.uid!]);
    await p.create(web);
    await up;
    const group = eci.fake.groupByUid(web.metadata!.uid!)!;
    const sidecar = groupFiles(group, 'spillway-kube-proxy');
    expect(sidecar.token).toBe(first);
    expect(sidecar['ca.crt']).toContain('BEGIN CERTIFICATE');
    expect(parse(sidecar.kubeconfig!)).toMatchObject({
      clusters: [
        {
          cluster: {
            server: 'https://10.0.0.1:6443',
            'certificate-authority': '/var/lib/spillway-kube-proxy/ca.crt',
          },
        },
      ],
      users: [{ user: { tokenFile: '/var/lib/spillway-kube-proxy/token' } }],
    });

    const renewed = jwt(now, now + 3600);
    await p.setSidecarCredentials(creds(renewed));
    expect(group.updates).toHaveLength(1);
    expect(groupFiles(group, 'spillway-kube-proxy').token).toBe(renewed);
    // The pod's own volumes and containers are untouched.
    expect(group.containers.map((c) => c.name)).toEqual(['app', 'spillway-kube-proxy']);
  });
});
