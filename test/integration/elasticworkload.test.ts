import {
  AppsV1Api,
  AutoscalingV2Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ElasticWorkload, ElasticWorkloadInput } from '../../api/elasticworkload.ts';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import {
  ElasticWorkloadController,
  elasticWorkloadController,
} from '../../operator/elasticworkload/controller.ts';
import { installCrd } from '../../operator/elasticworkload/install.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { getCustomObject, getDeployment, kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';

const cpu = (m: string) => ({ requests: { cpu: m, memory: '64Mi' } });

function sourceDeployment(name: string, replicas: number, cpuRequest = '100m'): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'web', image: 'nginx:1.27', resources: cpu(cpuRequest) }] },
      },
    },
  };
}

describe('ElasticWorkload controller on the local control plane', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let controller: ElasticWorkloadController;
  let apps: AppsV1Api;
  let objects: CustomObjectsApi;

  const ew = (name: string) =>
    getCustomObject<ElasticWorkload>(cluster.kc, GROUP, VERSION, PLURAL, ns.name, name);
  const replicasOf = async (name: string) => (await getDeployment(cluster.kc, ns.name, name))?.spec?.replicas;
  const expectSplit = (source: string, unit: string, s: number, u: number | undefined) =>
    waitFor(`${source}=${s} and ${unit}=${u}`, 60_000, async () => {
      const [a, b] = await Promise.all([replicasOf(source), replicasOf(unit)]);
      return a === s && b === u;
    });
  const createEw = (body: ElasticWorkloadInput) =>
    objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      body,
    });

  beforeAll(async () => {
    cluster = await testCluster();
    await installCrd(cluster.kc);
    ns = await createTestNamespace(cluster.kc, 'ew');
    apps = cluster.kc.makeApiClient(AppsV1Api);
    objects = cluster.kc.makeApiClient(CustomObjectsApi);
    controller = elasticWorkloadController(cluster.kc);
    await controller.start();
  });
  afterAll(async () => {
    await controller?.stop();
    await ns?.remove();
  });

  it('splits an ACK-style ElasticWorkload 4 + 2, follows kubectl scale to 4 + 6 and 3 + 0, and reports it', async () => {
    await apps.createNamespacedDeployment({ namespace: ns.name, body: sourceDeployment('web', 2) });
    await createEw({
      apiVersion: 'elastic.spillway.dev/v1alpha1',
      kind: 'ElasticWorkload',
      metadata: { name: 'web' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'web', min: 2, max: 4 },
        replicas: 6,
        elasticUnit: [{ name: 'burst', labels: { 'alibabacloud.com/eci': 'true' } }],
      },
    });
    await expectSplit('web', 'web-unit-burst', 4, 2);
    const unit = (await getDeployment(cluster.kc, ns.name, 'web-unit-burst'))!;
    expect(unit.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ElasticWorkload',
      name: 'web',
      controller: true,
    });
    expect(unit.spec?.template.metadata?.labels).toMatchObject({
      app: 'web',
      'alibabacloud.com/eci': 'true',
      'spillway.dev/elastic-workload': 'web',
      'spillway.dev/unit': 'burst',
    });
    const source = (await getDeployment(cluster.kc, ns.name, 'web'))!;
    expect(source.metadata?.annotations?.['spillway.dev/original-replicas']).toBe('2');

    // "where are my replicas": the printer columns.
    await waitFor('status to show 4 on source, 2 on units, 6 ready', 60_000, async () => {
      const out = await kubectl(cluster.kubeconfigPath, 'get', 'ew', 'web', '-n', ns.name, '--no-headers');
      return /^web\s+6\s+4\s+2\s+6\s+/.test(out);
    });
    const header = await kubectl(cluster.kubeconfigPath, 'get', 'ew', '-n', ns.name);
    expect(header.split('\n')[0]).toMatch(/NAME\s+DESIRED\s+SOURCE\s+UNITS\s+READY\s+STATUS\s+AGE/);

    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', ns.name, '--replicas=10');
    await expectSplit('web', 'web-unit-burst', 4, 6);
    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', ns.name, '--replicas=3');
    await expectSplit('web', 'web-unit-burst', 3, 0);

    await waitFor('Bursting=False after scale-in', 30_000, async () => {
      const got = await ew('web');
      return got?.status?.conditions?.find((c) => c.type === 'Bursting')?.status === 'False';
    });
    const events = await cluster.kc
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: ns.name, fieldSelector: 'involvedObject.kind=ElasticWorkload' });
    expect(events.items.map((e) => e.reason)).toEqual(expect.arrayContaining(['ScaledSource', 'ScaledUnit']));
  });

  it('rolls a change of the source pod template out to the units', async () => {
    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', ns.name, '--replicas=6');
    await expectSplit('web', 'web-unit-burst', 4, 2);
    await kubectl(cluster.kubeconfigPath, 'set', 'env', 'deployment/web', '-n', ns.name, 'GREETING=hello');
    await waitFor('unit template carries GREETING', 60_000, async () => {
      const unit = await getDeployment(cluster.kc, ns.name, 'web-unit-burst');
      return (
        unit?.spec?.template.spec?.containers[0]?.env?.some(
          (e) => e.name === 'GREETING' && e.value === 'hello',
        ) === true
      );
    });
  });

  it('is a scale target for kubectl and a HorizontalPodAutoscaler', async () => {
    const scale = JSON.parse(
      await kubectl(
        cluster.kubeconfigPath,
        'get',
        '--raw',
        `/apis/${GROUP}/${VERSION}/namespaces/${ns.name}/${PLURAL}/web/scale`,
      ),
    ) as { spec: { replicas: number }; status: { replicas: number; selector: string } };
    expect(scale.spec.replicas).toBe(6);
    expect(scale.status.selector).toBe('app=web');
    const hpa = await cluster.kc.makeApiClient(AutoscalingV2Api).createNamespacedHorizontalPodAutoscaler({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: {
          scaleTargetRef: { apiVersion: `${GROUP}/${VERSION}`, kind: 'ElasticWorkload', name: 'web' },
          minReplicas: 2,
          maxReplicas: 20,
          metrics: [
            {
              type: 'Resource',
              resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } },
            },
          ],
        },
      },
    });
    expect(hpa.spec?.scaleTargetRef.kind).toBe('ElasticWorkload');
  });

  it('refuses min > max with the CEL message', async () => {
    await expect(
      createEw({
        apiVersion: 'elastic.spillway.dev/v1alpha1',
        kind: 'ElasticWorkload',
        metadata: { name: 'bad' },
        spec: {
          sourceTarget: { kind: 'Deployment', name: 'web', min: 5, max: 4 },
          replicas: 6,
          elasticUnit: [],
        },
      }),
    ).rejects.toThrow(/sourceTarget.min must not exceed sourceTarget.max/);
  });

  it('blocks bursting of a template a sandbox cannot run and names the field', async () => {
    const d = sourceDeployment('hostnet', 1);
    d.spec!.template.spec!.hostNetwork = true;
    await apps.createNamespacedDeployment({ namespace: ns.name, body: d });
    await createEw({
      apiVersion: 'elastic.spillway.dev/v1alpha1',
      kind: 'ElasticWorkload',
      metadata: { name: 'hostnet' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'hostnet', max: 2 },
        replicas: 5,
        elasticUnit: [{ name: 'burst' }],
      },
    });
    await waitFor('BurstBlocked naming spec.template.spec.hostNetwork', 60_000, async () => {
      const c = (await ew('hostnet'))?.status?.conditions?.find((x) => x.type === 'BurstBlocked');
      return c?.status === 'True' && c.message.includes('spec.template.spec.hostNetwork');
    });
    expect(await replicasOf('hostnet')).toBe(2);
    expect(await getDeployment(cluster.kc, ns.name, 'hostnet-unit-burst')).toBeUndefined();
  });

  it('refuses a second ElasticWorkload on a source that is already split, and says which one has it', async () => {
    await createEw({
      apiVersion: 'elastic.spillway.dev/v1alpha1',
      kind: 'ElasticWorkload',
      metadata: { name: 'web-again' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'web', max: 1 },
        replicas: 9,
        elasticUnit: [{ name: 'other' }],
      },
    });
    await waitFor('web-again Ready=False SourceClaimed', 30_000, async () => {
      const c = (await ew('web-again'))?.status?.conditions?.find((x) => x.type === 'Ready');
      return (
        c?.status === 'False' && c.reason === 'SourceClaimed' && c.message.includes('ElasticWorkload web')
      );
    });
    expect(await replicasOf('web')).toBe(4);
    expect(await getDeployment(cluster.kc, ns.name, 'web-unit-other')).toBeUndefined();
    await objects.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      name: 'web-again',
    });
    await waitFor('web-again gone', 30_000, async () => (await ew('web-again')) === undefined);
    expect(await replicasOf('web')).toBe(4);
  });

  it('folds every replica back into the source when the ElasticWorkload is deleted', async () => {
    await objects.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      name: 'web',
    });
    await waitFor('ElasticWorkload web gone', 60_000, async () => (await ew('web')) === undefined);
    expect(await replicasOf('web')).toBe(6);
    expect(await getDeployment(cluster.kc, ns.name, 'web-unit-burst')).toBeUndefined();
  });

  it('removes the units after foldBackTimeoutSeconds when the source cannot run its replicas again', async () => {
    // The source's pods can schedule nowhere; the unit's run on a kwok node.
    const stuck = sourceDeployment('stuck', 1);
    stuck.spec!.template.spec!.nodeSelector = { 'kubernetes.io/hostname': 'no-such-node' };
    await apps.createNamespacedDeployment({ namespace: ns.name, body: stuck });
    await createEw({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ElasticWorkload',
      metadata: { name: 'stuck' },
      spec: {
        sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'stuck', max: 1 },
        replicas: 3,
        elasticUnit: [{ name: 'burst', nodeSelector: { 'kubernetes.io/hostname': 'kwok-node-0' } }],
        foldBackTimeoutSeconds: 3,
      },
    });
    await expectSplit('stuck', 'stuck-unit-burst', 1, 2);
    await waitFor('2 unit replicas ready', 60_000, async () => {
      const unit = await getDeployment(cluster.kc, ns.name, 'stuck-unit-burst');
      return unit?.status?.readyReplicas === 2;
    });
    await objects.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      name: 'stuck',
    });
    // The fold-back keeps the ready unit replicas while the source cannot run them...
    await waitFor('source scaled to 3', 30_000, async () => (await replicasOf('stuck')) === 3);
    expect((await ew('stuck'))?.metadata.deletionTimestamp).toBeDefined();
    expect(await replicasOf('stuck-unit-burst')).toBe(2);
    // ...until the timeout, then removes the units and says so.
    await waitFor('ElasticWorkload stuck gone', 60_000, async () => (await ew('stuck')) === undefined);
    expect(await getDeployment(cluster.kc, ns.name, 'stuck-unit-burst')).toBeUndefined();
    expect(await replicasOf('stuck')).toBe(3);
    const events = await cluster.kc
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: ns.name, fieldSelector: 'involvedObject.name=stuck' });
    expect(events.items.find((e) => e.reason === 'FoldBackTimedOut')?.message).toMatch(
      /ran 0 of 3 replicas 3 s after the deletion: removing the units anyway, so 2 replicas wait/,
    );
  });
});
