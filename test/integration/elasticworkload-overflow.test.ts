/**
 * Capacity-aware overflow and drain-back against the real scheduler: the normal kwok nodes are filled by a
 * blocker, source pods go Unschedulable, their replicas move to a unit whose pods run on a separate, tainted
 * kwok node (standing in for elastic capacity); when the blocker goes, replicas drain back to the source.
 */
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ElasticWorkloadInput } from '../../api/elasticworkload.ts';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import {
  ElasticWorkloadController,
  elasticWorkloadController,
} from '../../operator/elasticworkload/controller.ts';
import { installCrd } from '../../operator/elasticworkload/install.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { getDeployment } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';

const burstNode = 'kwok-elastic-pool';

function deployment(
  name: string,
  replicas: number,
  cpu: string,
  labels: Record<string, string> = {},
): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, ...labels } },
        spec: {
          nodeSelector: { type: 'normal' },
          containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu, memory: '64Mi' } } }],
        },
      },
    },
  };
}

describe('WhenUnschedulable overflow and drain-back', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let controller: ElasticWorkloadController;
  let apps: AppsV1Api;
  let core: CoreV1Api;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    apps = cluster.kc.makeApiClient(AppsV1Api);
    await installCrd(cluster.kc);
    ns = await createTestNamespace(cluster.kc, 'overflow');
    const resources = { cpu: '32', memory: '64Gi', pods: '110' };
    await core.createNode({
      body: {
        metadata: {
          name: burstNode,
          annotations: { 'kwok.x-k8s.io/node': 'fake' },
          labels: { pool: 'elastic', 'kubernetes.io/hostname': burstNode },
        },
        spec: { taints: [{ key: 'pool', value: 'elastic', effect: 'NoSchedule' }] },
        status: { capacity: resources, allocatable: resources },
      },
    });
    controller = elasticWorkloadController(cluster.kc);
    await controller.start();
  });
  afterAll(async () => {
    await controller?.stop();
    await ns?.remove();
    await core?.deleteNode({ name: burstNode }).catch(() => undefined);
  });

  it('moves replicas of Unschedulable source pods to the unit and drains them back when capacity frees', async () => {
    // The blocker takes 2 of the 4 CPUs of each normal node: one 1500m source pod fits per node.
    const blocker = deployment('blocker', 2, '2');
    blocker.spec!.template.spec!.topologySpreadConstraints = [
      {
        maxSkew: 1,
        topologyKey: 'kubernetes.io/hostname',
        whenUnsatisfiable: 'DoNotSchedule',
        labelSelector: { matchLabels: { app: 'blocker' } },
      },
    ];
    await apps.createNamespacedDeployment({ namespace: ns.name, body: blocker });
    await waitFor(
      'blocker ready',
      60_000,
      async () => (await getDeployment(cluster.kc, ns.name, 'blocker'))?.status?.readyReplicas === 2,
    );

    await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('app', 1, '1500m') });
    const body: ElasticWorkloadInput = {
      apiVersion: 'elastic.spillway.dev/v1alpha1',
      kind: 'ElasticWorkload',
      metadata: { name: 'app' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'app', min: 1, max: 4 },
        replicas: 4,
        overflow: { policy: 'WhenUnschedulable', unschedulableSeconds: 2 },
        elasticUnit: [
          {
            name: 'elastic',
            nodeSelector: { pool: 'elastic', type: 'elastic' },
            tolerations: [{ key: 'pool', operator: 'Equal', value: 'elastic', effect: 'NoSchedule' }],
          },
        ],
      },
    };
    // The unit's nodeSelector overrides the source's type=normal per key, so the pool node is type=elastic.
    await core.patchNode({
      name: burstNode,
      body: [{ op: 'add', path: '/metadata/labels/type', value: 'elastic' }],
    });
    await cluster.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      body,
    });

    await waitFor('2 on the source, 2 overflowed to the unit, all ready', 90_000, async () => {
      const [s, u] = await Promise.all([
        getDeployment(cluster.kc, ns.name, 'app'),
        getDeployment(cluster.kc, ns.name, 'app-unit-elastic'),
      ]);
      return (
        s?.spec?.replicas === 2 &&
        s.status?.readyReplicas === 2 &&
        u?.spec?.replicas === 2 &&
        u.status?.readyReplicas === 2
      );
    });
    const unitPods = await core.listNamespacedPod({
      namespace: ns.name,
      labelSelector: 'spillway.dev/unit=elastic',
    });
    expect(unitPods.items.map((p) => p.spec?.nodeName)).toEqual([burstNode, burstNode]);

    // Capacity frees: every replica returns to the source, and the total ready count never drops.
    await apps.deleteNamespacedDeployment({ namespace: ns.name, name: 'blocker' });
    let minReady = Infinity;
    await waitFor('4 on the source, 0 on the unit', 90_000, async () => {
      const [s, u] = await Promise.all([
        getDeployment(cluster.kc, ns.name, 'app'),
        getDeployment(cluster.kc, ns.name, 'app-unit-elastic'),
      ]);
      minReady = Math.min(minReady, (s?.status?.readyReplicas ?? 0) + (u?.status?.readyReplicas ?? 0));
      return s?.spec?.replicas === 4 && s.status?.readyReplicas === 4 && (u?.spec?.replicas ?? 0) === 0;
    });
    expect(minReady).toBeGreaterThanOrEqual(4);
  });
});
