import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalNodes, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';

describe('the local control plane', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };

  beforeAll(async () => {
    cluster = await testCluster();
    ns = await createTestNamespace(cluster.kc, 'cluster');
  });
  afterAll(async () => ns?.remove());

  it('has two Ready kwok nodes labelled type=normal with 4 CPU, 8 GiB and 110 pods', async () => {
    const nodes = await cluster.kc.makeApiClient(CoreV1Api).listNode({ labelSelector: 'type=normal' });
    expect(nodes.items.map((n) => n.metadata?.name).sort()).toEqual(normalNodes);
    for (const node of nodes.items) {
      expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(node.status?.allocatable).toMatchObject({ cpu: '4', memory: '8Gi', pods: '110' });
    }
  });

  it('runs a Deployment of 3 replicas to Available with its pods scheduled onto the kwok nodes', async () => {
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    const core = cluster.kc.makeApiClient(CoreV1Api);
    const labels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              containers: [
                {
                  name: 'web',
                  image: 'nginx:1.27',
                  resources: { requests: { cpu: '100m', memory: '64Mi' } },
                },
              ],
            },
          },
        },
      },
    });
    await waitFor('Deployment web Available', 60_000, async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace: ns.name });
      return (
        d.status?.availableReplicas === 3 &&
        d.status.conditions?.some((c) => c.type === 'Available' && c.status === 'True') === true
      );
    });
    const pods = await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' });
    expect(pods.items).toHaveLength(3);
    for (const pod of pods.items) {
      expect(normalNodes).toContain(pod.spec?.nodeName);
      expect(pod.status?.phase).toBe('Running');
    }
  });
});
