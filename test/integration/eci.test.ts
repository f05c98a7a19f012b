/**
 * The ECI provider on the local control plane, pointed at the fake ECI endpoint (the official SDK's real,
 * signed requests over loopback): a burst reaches Running, a spot release is replaced before the reclaim,
 * no spot stock moves an ElasticWorkload's replicas to its next unit, and a restart makes no second
 * container group.
 */
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elasticWorkloadController } from '../../operator/elasticworkload/controller.ts';
import { installCrd } from '../../operator/elasticworkload/install.ts';
import { EciProvider } from '../../operator/providers/eci/provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { FakeEci } from '../support/fake-eci/server.ts';
import { fakeEciConfig } from '../support/fake-eci/provider-config.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment as oneContainer } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-eci';
const onVirtualNode = {
  nodeSelector: { 'spillway.dev/virtual-node': 'true', 'spillway.dev/provider': 'eci' },
  tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' as const }],
};

describe('the ECI provider against the fake ECI endpoint', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let fake: FakeEci;
  let provider: EciProvider;
  let vn: RunningVirtualNode;
  let core: CoreV1Api;
  let port: number;

  const start = async () => {
    provider = new EciProvider({ config: fakeEciConfig(fake, { nodeName, clusterId: 'spillway-test' }) });
    vn = await startVirtualNode({
      kc: cluster.kc,
      provider,
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: port },
    });
  };
  const stop = async () => {
    await vn.stop();
    await provider.close();
  };
  const podsOf = async (selector: string) =>
    (await core.listNamespacedPod({ namespace: ns.name, labelSelector: selector })).items;
  const running = (p: V1Pod) =>
    p.status?.phase === 'Running' && p.spec?.nodeName === nodeName && !p.metadata?.deletionTimestamp;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'eci');
    fake = await FakeEci.start({ timings: { schedulingMs: 50, pendingMs: 50 } });
    port = await freePort();
    await start();
  });
  afterAll(async () => {
    await stop().catch(() => undefined);
    await fake?.close();
    await ns?.remove();
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
  });

  const deployment = (name: string, replicas: number, labels: Record<string, string> = {}) =>
    cluster.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name },
        spec: {
          replicas,
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name, ...labels } },
            spec: {
              ...onVirtualNode,
              containers: [
                { name: 'app', image: 'nginx:1.27', resources: { requests: { cpu: '1', memory: '2Gi' } } },
              ],
            },
          },
        },
      },
    });

  it('runs a burst Deployment as container groups and reports their addresses', async () => {
    await deployment('web', 4);
    await waitFor(
      '4 pods Running on the ECI node',
      60_000,
      async () => (await podsOf('app=web')).filter(running).length === 4,
    );
    const pods = (await podsOf('app=web')).filter(running);
    for (const p of pods) {
      const group = fake.groupByUid(p.metadata!.uid!);
      expect(group?.status).toBe('Running');
      expect(p.status?.podIP).toBe(group?.intranetIp);
      expect(group?.tags).toEqual(expect.arrayContaining([expect.objectContaining({ Value: ns.name })]));
    }
  });

  it('makes no second container group when the operator restarts mid-burst', async () => {
    await cluster.kc.makeApiClient(AppsV1Api).patchNamespacedDeploymentScale({
      namespace: ns.name,
      name: 'web',
      body: [{ op: 'replace', path: '/spec/replicas', value: 12 }],
    });
    await stop();
    await start();
    await waitFor(
      '12 pods Running',
      90_000,
      async () => (await podsOf('app=web')).filter(running).length === 12,
    );
    const uids = new Set((await podsOf('app=web')).map((p) => p.metadata?.uid));
    const groupsForPods = fake.groups().filter((g) => g.tags.some((t) => uids.has(t.Value)));
    expect(groupsForPods).toHaveLength(12);
  });

  it('adopts its instances at a restart from the listing, with no call per instance', async () => {
    const n = fake.groups().length;
    // Let the fleet settle: a group that changed in the last seconds is described once more by the first poll.
    await waitFor('no group changed for 4 s', 30_000, async () =>
      fake.groups().every((g) => Date.now() - g.changedAt.getTime() > 4000),
    );
    await stop();
    const before = fake.calls('DescribeContainerGroups');
    await start();
    // 12 instances: one listing page. It was 13 calls: the page, then one per adopted instance.
    expect(fake.calls('DescribeContainerGroups') - before).toBeLessThanOrEqual(Math.ceil(n / 100));
    await waitFor(
      '12 pods Running after the restart',
      60_000,
      async () => (await podsOf('app=web')).filter(running).length === 12,
    );
  });

  it('records each ECI event of a pod once, across restarts', async () => {
    const pods = (await podsOf('app=web')).filter(running);
    const victim = pods[0]!;
    const group = fake.groupByUid(victim.metadata!.uid!)!;
    await stop();
    await start();
    // An event after the restart is recorded (and, being later, marks that the earlier ones had their chance).
    fake.exitContainer(group.id, 'app', 1);
    const nodeEvents = async () =>
      (await core.listNamespacedEvent({ namespace: ns.name })).items.filter(
        (e) => e.reportingComponent === 'spillway.dev/virtual-node',
      );
    await waitFor('the BackOff after the restart recorded', 30_000, async () =>
      (await nodeEvents()).some(
        (e) => e.reason === 'BackOff' && e.involvedObject.uid === victim.metadata!.uid,
      ),
    );
    const times = new Map<string, number>();
    for (const e of await nodeEvents()) {
      if (e.reason !== 'Scheduled' && e.reason !== 'Started') continue;
      const key = `${e.involvedObject.uid}/${e.reason}`;
      times.set(key, (times.get(key) ?? 0) + (e.series?.count ?? 1));
    }
    // Every start of the node listed these instances again; each occurrence is recorded once.
    for (const p of pods) {
      expect(times.get(`${p.metadata!.uid}/Scheduled`)).toBe(1);
      expect(times.get(`${p.metadata!.uid}/Started`)).toBe(1);
    }
  });

  it('adopts the one instance of a create whose answer was lost and whose replay has another body', async () => {
    // ECI makes the group, but no answer reaches the node (the SDK's retries included), and its listings lag
    // past the node's first retry (after 1 s), so that the retry is a create replayed under the same ClientToken.
    fake.store.timings.listingLagMs = 2500;
    fake.loseNextResponses('CreateContainerGroup', 5);
    try {
      await deployment('replay', 1);
      await waitFor(
        'the pod Running',
        60_000,
        async () => (await podsOf('app=replay')).filter(running).length === 1,
      );
    } finally {
      fake.store.timings.listingLagMs = 0;
    }
    const pods = await podsOf('app=replay');
    expect(pods.filter((p) => p.status?.phase === 'Failed')).toEqual([]);
    expect(pods).toHaveLength(1);
    const uid = pods[0]!.metadata!.uid!;
    expect(fake.groups().filter((g) => g.tags.some((t) => t.Value === uid))).toHaveLength(1);
    // The replay carried a freshly minted service-account token: ECI refused it, and the node adopted the group.
    expect(fake.rejectedWith('ResponseLost')).toBe(5);
    expect(fake.rejectedWith('IdempotentParameterMismatch')).toBeGreaterThanOrEqual(1);
  });

  it('replaces a spot pod whose instance is about to be released, before the reclaim', async () => {
    await deployment('executor', 1, { 'spillway.dev/capacity': 'spot' });
    await waitFor(
      'spot executor Running',
      60_000,
      async () => (await podsOf('app=executor')).filter(running).length === 1,
    );
    const [victim] = (await podsOf('app=executor')).filter(running);
    const group = fake.groupByUid(victim!.metadata!.uid!)!;
    expect(group.spotStrategy).toBe('SpotAsPriceGo');
    // ECI announces the release minutes ahead; the reclaim here comes after 60 s, well after the wait below.
    fake.releaseSpot(group.id, 60_000);
    await waitFor('a replacement Running and the released pod gone, before the reclaim', 50_000, async () => {
      const pods = await podsOf('app=executor');
      return (
        pods.filter(running).some((p) => p.metadata?.uid !== victim!.metadata!.uid) &&
        !pods.some((p) => p.metadata?.uid === victim!.metadata!.uid)
      );
    });
    // The instance was deleted by spillway (gracefully), not reclaimed by ECI.
    expect(fake.calls('DeleteContainerGroup')).toBeGreaterThan(0);
    expect(fake.groupByUid(victim!.metadata!.uid!)?.status ?? 'deleted').not.toBe('Expired');
    const events = await core.listNamespacedEvent({
      namespace: ns.name,
      fieldSelector: `involvedObject.name=${victim!.metadata!.name}`,
    });
    expect(events.items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['SpotToBeReleased', 'Evicting']),
    );
  });

  it('moves replicas of a spot unit without stock to the next unit', async () => {
    await installCrd(cluster.kc);
    const controller = elasticWorkloadController(cluster.kc, { capacityCooldownSeconds: 600 });
    await controller.start();
    try {
      fake.noStock.spot = true;
      await createDeployment(cluster.kc, ns.name, oneContainer('batch', 1, { image: 'busybox' }));
      const unit = (name: string, labels: Record<string, string>) => ({
        name,
        labels,
        nodeSelector: onVirtualNode.nodeSelector,
        tolerations: onVirtualNode.tolerations,
      });
      await createElasticWorkload(cluster.kc, ns.name, 'batch', {
        sourceTarget: { kind: 'Deployment', name: 'batch', max: 1 },
        replicas: 5,
        elasticUnit: [
          unit('spot', { 'spillway.dev/capacity': 'spot' }),
          unit('on-demand', { 'spillway.dev/capacity': 'on-demand' }),
        ],
      });
      await waitFor('4 replicas Running on the on-demand unit', 90_000, async () => {
        const onDemand = (await podsOf('app=batch,spillway.dev/unit=on-demand')).filter(running);
        return onDemand.length === 4;
      });
      const failed = (await podsOf('app=batch,spillway.dev/unit=spot')).filter(
        (p) => p.status?.phase === 'Failed',
      );
      expect(failed.length).toBeGreaterThan(0);
      expect(failed.every((p) => p.status?.reason === 'InsufficientCapacity')).toBe(true);
      const events = await core.listNamespacedEvent({
        namespace: ns.name,
        fieldSelector: 'involvedObject.kind=ElasticWorkload,involvedObject.name=batch',
      });
      expect(events.items.some((e) => e.reason === 'SpotFallback')).toBe(true);
    } finally {
      fake.noStock.spot = false;
      await controller.stop();
    }
  });
});
