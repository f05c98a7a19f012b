/**
 * ElasticWorkload status that tells the truth, against the real control plane: a unit whose pod template the
 * provider refuses never gets a replica (BurstBlocked names the field, an Event says so); a unit whose pods keep
 * failing on the virtual node is held back instead of feeding a Failed-pod storm; a missing source is an Event and
 * a STATUS in `kubectl get ew`; unit pods Pending for lack of virtual-node room show in the Capped condition.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition, ElasticWorkload, ElasticWorkloadInput } from '../../api/elasticworkload.ts';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import {
  ElasticWorkloadController,
  elasticWorkloadController,
} from '../../operator/elasticworkload/controller.ts';
import { installCrd } from '../../operator/elasticworkload/install.ts';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { getCustomObject, getDeployment, kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

/** A node object that claims to be a local-provider virtual node (labels only: nothing runs on it). */
const localNodeName = 'spillway-refusals-local';
/**
 * A real virtual node with the fake provider: a few pods of room, refusing containers without command when a pod
 * reaches it (a refusal the fake provider's static rules do not know, so only the node finds out).
 */
const fakeNodeName = 'spillway-refusals-fake';

const onFakeNode = {
  nodeSelector: { 'kubernetes.io/hostname': fakeNodeName },
  tolerations: [
    { key: 'virtual-kubelet.io/provider', operator: 'Exists' as const, effect: 'NoSchedule' as const },
  ],
};

/**
 * A Deployment of nginx; without `command` (as examples/web) unless one is given; for Windows with `windows`
 * (which the local provider refuses: it runs Linux containers only).
 */
function deployment(
  name: string,
  replicas: number,
  { command, windows = false }: { command?: string[]; windows?: boolean } = {},
): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...(windows ? { os: { name: 'windows' } } : {}),
          containers: [
            {
              name: 'web',
              image: 'nginx:1.27',
              ...(command ? { command } : {}),
              resources: { requests: { cpu: '10m', memory: '16Mi' } },
            },
          ],
        },
      },
    },
  };
}

describe('ElasticWorkload status under refusals and missing capacity', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let controller: ElasticWorkloadController;
  let vn: RunningVirtualNode;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let objects: CustomObjectsApi;

  const ew = (name: string) =>
    getCustomObject<ElasticWorkload>(cluster.kc, GROUP, VERSION, PLURAL, ns.name, name);
  const condition = async (name: string, type: string): Promise<Condition | undefined> =>
    (await ew(name))?.status?.conditions?.find((c) => c.type === type);
  const createEw = (body: Omit<ElasticWorkloadInput, 'apiVersion' | 'kind'>) =>
    objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns.name,
      body: { apiVersion: 'elastic.spillway.dev/v1alpha1', kind: 'ElasticWorkload', ...body },
    });
  const unitPods = async (ewName: string): Promise<V1Pod[]> =>
    (
      await core.listNamespacedPod({
        namespace: ns.name,
        labelSelector: `spillway.dev/elastic-workload=${ewName},spillway.dev/unit`,
      })
    ).items;
  const eventsOf = async (name: string) =>
    (
      await core.listNamespacedEvent({
        namespace: ns.name,
        fieldSelector: `involvedObject.kind=ElasticWorkload,involvedObject.name=${name}`,
      })
    ).items;

  beforeAll(async () => {
    cluster = await testCluster();
    await installCrd(cluster.kc);
    core = cluster.kc.makeApiClient(CoreV1Api);
    apps = cluster.kc.makeApiClient(AppsV1Api);
    objects = cluster.kc.makeApiClient(CustomObjectsApi);
    ns = await createTestNamespace(cluster.kc, 'ew-refusals');
    await core.createNode({
      body: {
        metadata: {
          name: localNodeName,
          labels: {
            'spillway.dev/virtual-node': 'true',
            type: 'virtual-kubelet',
            'spillway.dev/provider': 'local',
          },
        },
        spec: {
          taints: [{ key: 'virtual-kubelet.io/provider', value: 'local', effect: 'NoSchedule' }],
          unschedulable: true,
        },
      },
    });
    const provider = new FakeProvider({
      capacity: { pods: '3' },
      refuse: (spec, base) =>
        spec.containers.some((c) => !c.command?.length)
          ? [{ path: `${base}.containers[0].command`, message: 'this provider runs commands only' }]
          : [],
    });
    vn = await startVirtualNode({
      kc: cluster.kc,
      provider,
      config: { name: fakeNodeName, internalIP: '127.0.0.1', kubeletPort: await freePort() },
    });
    controller = elasticWorkloadController(cluster.kc, { capacityCooldownSeconds: 600 });
    await controller.start();
    await waitFor(
      'the controller sees both virtual nodes',
      30_000,
      async () => controller.virtualNodes.list().length >= 2,
    );
  });
  afterAll(async () => {
    await controller?.stop();
    await vn?.stop();
    await ns?.remove();
    for (const name of [localNodeName, fakeNodeName]) await core?.deleteNode({ name }).catch(() => undefined);
  });

  it('gives no replica to a unit whose template the provider refuses, and names the field', async () => {
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: deployment('refused', 2, { windows: true }),
    });
    await createEw({
      metadata: { name: 'refused' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'refused', max: 2 },
        replicas: 5,
        elasticUnit: [
          {
            name: 'burst',
            labels: { 'spillway.dev/burst': 'always' },
            nodeSelector: { 'spillway.dev/provider': 'local' },
          },
        ],
      },
    });
    await waitFor(
      'BurstBlocked=True',
      60_000,
      async () => (await condition('refused', 'BurstBlocked'))?.status === 'True',
    );
    const blocked = (await condition('refused', 'BurstBlocked'))!;
    expect(blocked.reason).toBe('ProviderRefusesPodSpec');
    expect(blocked.message).toContain('unit burst gets no replica: provider local cannot run');
    expect(blocked.message).toContain(
      'spec.template.spec.os.name: the local provider runs Linux containers only: remove spec.os or set it to linux',
    );
    expect(await condition('refused', 'Ready')).toMatchObject({
      status: 'False',
      reason: 'ProviderRefusesPodSpec',
    });
    expect(await condition('refused', 'Capped')).toMatchObject({ status: 'True', reason: 'UnitsCannotRun' });
    expect((await getDeployment(cluster.kc, ns.name, 'refused-unit-burst'))?.spec?.replicas ?? 0).toBe(0);
    expect(await unitPods('refused')).toEqual([]);
    await waitFor('a ProviderRefusesPodSpec Event', 30_000, async () =>
      (await eventsOf('refused')).some((e) => e.reason === 'ProviderRefusesPodSpec' && e.type === 'Warning'),
    );

    // Fixed (a Linux pod, as the message says), the unit gets its replicas.
    await kubectl(
      cluster.kubeconfigPath,
      'patch',
      'deployment',
      'refused',
      '-n',
      ns.name,
      '--type=json',
      '-p',
      '[{"op":"remove","path":"/spec/template/spec/os"}]',
    );
    await waitFor(
      'the unit gets 3 replicas',
      60_000,
      async () => (await getDeployment(cluster.kc, ns.name, 'refused-unit-burst'))?.spec?.replicas === 3,
    );
    await waitFor(
      'BurstBlocked=False',
      30_000,
      async () => (await condition('refused', 'BurstBlocked'))?.status === 'False',
    );
  });

  it('holds back a unit whose pods keep failing on the node, and a Failed pod’s containers are terminated', async () => {
    // The fake provider's refusal is not among the static rules: only the node finds out, pod by pod.
    await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('failing', 1) });
    await createEw({
      metadata: { name: 'failing' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'failing', max: 1 },
        replicas: 4,
        elasticUnit: [{ name: 'burst', ...onFakeNode }],
      },
    });
    await waitFor(
      'BurstBlocked=True (UnitPodsFailing)',
      60_000,
      async () => (await condition('failing', 'BurstBlocked'))?.reason === 'UnitPodsFailing',
    );
    await waitFor(
      'the unit is scaled back to its 0 ready replicas',
      30_000,
      async () => (await getDeployment(cluster.kc, ns.name, 'failing-unit-burst'))?.spec?.replicas === 0,
    );
    expect(await condition('failing', 'BurstBlocked')).toMatchObject({
      status: 'True',
      message: expect.stringMatching(
        /^unit burst keeps only its ready replicas until .*: \d+ of its pods failed on the virtual node \(last: UnsupportedPodSpec: /,
      ),
    });
    expect(await condition('failing', 'Ready')).toMatchObject({ status: 'False', reason: 'UnitPodsFailing' });
    await waitFor('a UnitPodsFailing Event', 30_000, async () =>
      (await eventsOf('failing')).some((e) => e.reason === 'UnitPodsFailing'),
    );
    // No storm: once the unit is held back its last pods end (the ReplicaSet deletes those not started yet),
    // and what is left is a handful of Failed pods.
    await waitFor('every unit pod is Failed', 30_000, async () =>
      (await unitPods('failing')).every((p) => p.status?.phase === 'Failed'),
    );
    const failed = await unitPods('failing');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed.length).toBeLessThanOrEqual(30);
    for (const p of failed) {
      for (const c of p.status?.containerStatuses ?? []) {
        expect(c.state?.waiting).toBeUndefined();
        expect(c.state?.terminated).toMatchObject({ reason: 'UnsupportedPodSpec', exitCode: 128 });
      }
    }
    const listed = await kubectl(
      cluster.kubeconfigPath,
      'get',
      'pods',
      '-n',
      ns.name,
      '-l',
      'spillway.dev/elastic-workload=failing',
      '--no-headers',
    );
    expect(listed).toContain('UnsupportedPodSpec');
    expect(listed).not.toContain('ContainerCreating');
  });

  it('tells of a missing source with an Event and in kubectl get ew', async () => {
    await createEw({
      metadata: { name: 'orphan' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'not-there' },
        replicas: 2,
        elasticUnit: [{ name: 'burst' }],
      },
    });
    await waitFor('a SourceNotFound Event', 30_000, async () =>
      (await eventsOf('orphan')).some((e) => e.reason === 'SourceNotFound' && e.type === 'Warning'),
    );
    const row = await kubectl(cluster.kubeconfigPath, 'get', 'ew', 'orphan', '-n', ns.name);
    expect(row.split('\n')[0]).toMatch(/\bSTATUS\b/);
    expect(row.split('\n')[1]).toMatch(/^orphan\s+2\s+.*SourceNotFound/);
    const wide = await kubectl(cluster.kubeconfigPath, 'get', 'ew', 'orphan', '-n', ns.name, '-o', 'wide');
    expect(wide).toContain('Deployment not-there not found');
  });

  it('says so when unit pods are Pending for lack of virtual-node room', async () => {
    // The fake node has room for 3 pods; the unit wants 5.
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: deployment('crowded', 1, { command: ['sleep', 'infinity'] }),
    });
    await createEw({
      metadata: { name: 'crowded' },
      spec: {
        sourceTarget: { kind: 'Deployment', name: 'crowded', max: 1 },
        replicas: 6,
        elasticUnit: [{ name: 'burst', ...onFakeNode }],
      },
    });
    // The scheduler gives up on the two pods one at a time: wait for both.
    await waitFor('Capped=True (NoVirtualNodeCapacity) for the 2 pods without room', 90_000, async () => {
      const c = await condition('crowded', 'Capped');
      return c?.reason === 'NoVirtualNodeCapacity' && c.message.startsWith('2 ');
    });
    const capped = (await condition('crowded', 'Capped'))!;
    expect(capped.status).toBe('True');
    expect(capped.message).toMatch(
      /^2 unit pods are Pending: the scheduler finds no room for them \(.*Too many pods/,
    );
  });
});
