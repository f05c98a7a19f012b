/**
 * The admission webhooks registered with the real kube-apiserver (dev mode: `url: https://127.0.0.1:PORT`)
 * and placement checked against the real kube-scheduler, with a kwok-simulated node that carries the
 * virtual node's labels and taints.
 */
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeClients } from '../../operator/shared/client.ts';
import { PROVIDER_TOLERATION, virtualNodeTaints } from '../../api/taints.ts';
import { VIRTUAL_NODE_LABELS } from '../../api/labels.ts';
import { startWebhooks, type RunningWebhooks } from '../../webhooks/run.ts';
import { normalNodes, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';

const virtualNode = 'kwok-virtual-webhooks';
const pause = { name: 'app', image: 'registry.k8s.io/pause:3.10' };

function pod(name: string, labels: Record<string, string>, spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return { metadata: { name, labels }, spec: { containers: [{ ...pause }], ...spec } };
}

describe('admission webhooks against the real apiserver and scheduler', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let burstNs: { name: string; remove: () => Promise<void> };
  let webhooks: RunningWebhooks;
  let core: CoreV1Api;
  let apps: AppsV1Api;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    apps = cluster.kc.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: 'spillway-system' } } }).catch(() => undefined);
    // A Ready node that looks like a virtual node to the webhooks and the scheduler; kwok runs its pods.
    const resources = { cpu: '1000', memory: '4Ti', pods: '1000' };
    await core.createNode({
      body: {
        metadata: {
          name: virtualNode,
          annotations: { 'kwok.x-k8s.io/node': 'fake' },
          labels: {
            ...VIRTUAL_NODE_LABELS,
            'kubernetes.io/hostname': virtualNode,
            'spillway.dev/provider': 'kwok',
          },
        },
        spec: { taints: virtualNodeTaints('kwok') },
        status: { capacity: resources, allocatable: resources },
      },
    });
    webhooks = await startWebhooks({
      clients: makeClients(cluster.kc),
      namespace: 'spillway-system',
      devMode: true,
      register: true,
    });
    ns = await createTestNamespace(cluster.kc, 'webhooks');
    burstNs = await createTestNamespace(cluster.kc, 'burst-ns', { 'spillway.dev/burst': 'always' });
  });
  afterAll(async () => {
    await webhooks?.stop();
    await ns?.remove();
    await burstNs?.remove();
    await core?.deleteNode({ name: virtualNode }).catch(() => undefined);
  });

  const created = async (namespace: string, p: V1Pod) => core.createNamespacedPod({ namespace, body: p });
  /** The apiserver's refusal (the webhook's message), or undefined when the call succeeded. */
  const refusal = (call: Promise<unknown>) =>
    call.then(
      () => undefined,
      (e: unknown) => String((e as { body?: string }).body ?? e),
    );
  const nodeOf = async (namespace: string, name: string) => {
    let node: string | undefined;
    await waitFor(`${namespace}/${name} scheduled`, 60_000, async () => {
      node = (await core.readNamespacedPod({ namespace, name })).spec?.nodeName;
      return node !== undefined;
    });
    return node;
  };

  it('places a burst: always pod on the virtual node, keeping every field the user wrote', async () => {
    const stored = await created(
      ns.name,
      pod(
        'always',
        { 'spillway.dev/burst': 'always', 'team.example.com/owner': 'x' },
        { tolerations: [{ key: 'mine', operator: 'Exists' }] },
      ),
    );
    expect(stored.metadata?.labels?.['team.example.com/owner']).toBe('x');
    expect(stored.spec?.tolerations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 'mine' }),
        expect.objectContaining({ key: 'virtual-kubelet.io/provider', operator: 'Exists' }),
      ]),
    );
    const terms =
      stored.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
    expect(
      terms?.every((t) =>
        t.matchExpressions?.some((e) => e.key === 'spillway.dev/virtual-node' && e.operator === 'In'),
      ),
    ).toBe(true);
    expect(await nodeOf(ns.name, 'always')).toBe(virtualNode);
  });

  it('treats ACK’s alibabacloud.com/eci label and a labelled namespace as burst: always', async () => {
    await created(ns.name, pod('eci', { 'alibabacloud.com/eci': 'true' }));
    await created(burstNs.name, pod('from-namespace', {}));
    expect(await nodeOf(ns.name, 'eci')).toBe(virtualNode);
    expect(await nodeOf(burstNs.name, 'from-namespace')).toBe(virtualNode);
  });

  it('adds the provider annotations for spot capacity', async () => {
    const stored = await created(
      ns.name,
      pod('spot', { 'spillway.dev/burst': 'always', 'spillway.dev/capacity': 'spot' }),
    );
    expect(stored.metadata?.annotations?.['k8s.aliyun.com/eci-spot-strategy']).toBe('SpotAsPriceGo');
  });

  it('denies a burst: always pod a sandbox cannot run, naming every field and what to do', async () => {
    const bad = pod(
      'bad',
      { 'spillway.dev/burst': 'always' },
      {
        hostNetwork: true,
        containers: [
          {
            ...pause,
            securityContext: { privileged: true },
            ports: [{ containerPort: 8080, hostPort: 8080 }],
          },
        ],
        volumes: [{ name: 'logs', hostPath: { path: '/var/log' } }],
      },
    );
    const err = await created(ns.name, bad).then(
      () => undefined,
      (e: unknown) => String((e as { body?: string }).body ?? e),
    );
    expect(err).toBeDefined();
    for (const path of [
      'spec.hostNetwork',
      'spec.containers[0].securityContext.privileged',
      'spec.containers[0].ports[0].hostPort',
      'spec.volumes[0].hostPath',
    ]) {
      expect(err).toContain(path);
    }
  });

  it('lets a burst: overflow pod with hostPort in, but never onto the virtual node', async () => {
    const stored = await created(
      ns.name,
      pod(
        'overflow-hostport',
        { 'spillway.dev/burst': 'overflow' },
        { containers: [{ ...pause, ports: [{ containerPort: 80, hostPort: 8081 }] }] },
      ),
    );
    expect(stored.spec?.tolerations?.some((t) => t.key === 'virtual-kubelet.io/provider')).toBeFalsy();
    expect(normalNodes).toContain(await nodeOf(ns.name, 'overflow-hostport'));
  });

  it('fills the normal nodes with burst: overflow pods before any spills to the virtual node', async () => {
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'overflow' },
        spec: {
          replicas: 30,
          selector: { matchLabels: { app: 'overflow' } },
          template: {
            metadata: { labels: { app: 'overflow', 'spillway.dev/burst': 'overflow' } },
            spec: { containers: [{ ...pause, resources: { requests: { cpu: '500m', memory: '64Mi' } } }] },
          },
        },
      },
    });
    let pods: V1Pod[] = [];
    await waitFor('30 overflow pods scheduled', 90_000, async () => {
      pods = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=overflow' })).items;
      return pods.length === 30 && pods.every((p) => p.spec?.nodeName);
    });
    const onVirtual = pods.filter((p) => p.spec?.nodeName === virtualNode).length;
    expect(onVirtual).toBeGreaterThan(0);
    // Every normal node is full: no further 500m pod fits on either of them.
    const all = (await core.listPodForAllNamespaces()).items.filter(
      (p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed',
    );
    for (const node of normalNodes) {
      const requested = all
        .filter((p) => p.spec?.nodeName === node)
        .flatMap((p) => p.spec?.containers ?? [])
        .reduce((sum, c) => sum + milliCpu(c.resources?.requests?.cpu), 0);
      expect(4000 - requested, `free CPU on ${node}`).toBeLessThan(500);
    }
  });

  it('keeps a DaemonSet that tolerates every taint off the virtual node', async () => {
    await apps.createNamespacedDaemonSet({
      namespace: ns.name,
      body: {
        metadata: { name: 'agent' },
        spec: {
          selector: { matchLabels: { app: 'agent' } },
          template: {
            metadata: { labels: { app: 'agent' } },
            spec: { tolerations: [{ operator: 'Exists' }], containers: [{ ...pause }] },
          },
        },
      },
    });
    let nodes: (string | undefined)[] = [];
    await waitFor('DaemonSet pods on both normal nodes', 60_000, async () => {
      const pods = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=agent' })).items;
      nodes = pods.map(
        (p) =>
          p.spec?.nodeName ??
          p.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
            ?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0],
      );
      return normalNodes.every((n) => nodes.includes(n));
    });
    const ds = await apps.readNamespacedDaemonSet({ namespace: ns.name, name: 'agent' });
    expect(ds.status?.desiredNumberScheduled).toBe(normalNodes.length);
    expect(nodes).not.toContain(virtualNode);
  });

  // Ways onto the virtual node that carry none of spillway's markers, each with one feature a sandbox cannot run.
  const tolerations = [{ ...PROVIDER_TOLERATION }];
  const hostNetwork = { hostNetwork: true, tolerations };
  const privileged = { containers: [{ ...pause, securityContext: { privileged: true } }], tolerations };
  const hostPath = { volumes: [{ name: 'h', hostPath: { path: '/var/log' } }], tolerations };
  const hostPort = {
    containers: [{ ...pause, ports: [{ containerPort: 80, hostPort: 8082 }] }],
    tolerations,
  };
  const required = (key: string, operator: string, values?: string[]) => ({
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] }],
        },
      },
    },
  });
  it.each<[string, string, Partial<V1Pod['spec']>]>([
    [
      'nodeSelector kubernetes.io/hostname=<virtual node>',
      'spec.hostNetwork',
      { ...hostNetwork, nodeSelector: { 'kubernetes.io/hostname': virtualNode } },
    ],
    [
      'nodeSelector spillway.dev/provider',
      'spec.containers[0].securityContext.privileged',
      { ...privileged, nodeSelector: { 'spillway.dev/provider': 'kwok' } },
    ],
    [
      'affinity spillway.dev/virtual-node Exists',
      'spec.volumes[0].hostPath',
      { ...hostPath, ...required('spillway.dev/virtual-node', 'Exists') },
    ],
    [
      'affinity type NotIn [normal]',
      'spec.containers[0].ports[0].hostPort',
      { ...hostPort, ...required('type', 'NotIn', ['normal']) },
    ],
    ['a toleration and no selector at all', 'spec.hostNetwork', hostNetwork],
  ])('denies at create a pod that reaches the virtual node by %s, naming %s', async (how, field, spec) => {
    const name = `escape-${how.replace(/[^a-z]+/gi, '-').toLowerCase()}`.slice(0, 60).replace(/-$/, '');
    const err = await refusal(created(ns.name, pod(name, {}, spec)));
    expect(err).toContain('denied the request');
    expect(err).toContain(`${field}: `);
    expect(err).toContain(`admit virtual node ${virtualNode}`);
  });

  it('admits the same pods when their selector or missing toleration keeps them off the virtual node', async () => {
    // No toleration of the provider taint: the scheduler never places it on the virtual node.
    await created(ns.name, pod('no-toleration', {}, { hostNetwork: true, nodeSelector: { type: 'normal' } }));
    // A toleration, but a selector only normal nodes match; it runs on one, and updates of it are not judged.
    await created(ns.name, pod('normal-only', {}, { ...hostNetwork, nodeSelector: { type: 'normal' } }));
    expect(normalNodes).toContain(await nodeOf(ns.name, 'normal-only'));
    const updated = await core.patchNamespacedPod(
      {
        namespace: ns.name,
        name: 'normal-only',
        body: [
          { op: 'add', path: '/metadata/labels', value: { relabelled: 'yes' } },
          { op: 'add', path: '/spec/tolerations/-', value: { key: 'extra', operator: 'Exists' } },
        ],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    expect(updated.spec?.tolerations).toContainEqual({ key: 'extra', operator: 'Exists' });
  });

  it('denies the UPDATE that removes a gated pod’s scheduling gates once its selector matches the virtual node', async () => {
    const pool = { 'spillway.test/pool': 'burst' };
    const gated = (name: string) =>
      pod(
        name,
        {},
        { ...hostNetwork, nodeSelector: pool, schedulingGates: [{ name: 'spillway.test/hold' }] },
      );
    // No node carries the pool label yet: the pod could go nowhere, so its create is admitted.
    await created(ns.name, gated('gated'));
    await core.patchNode(
      {
        name: virtualNode,
        body: [{ op: 'add', path: '/metadata/labels/spillway.test~1pool', value: 'burst' }],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    try {
      // The webhooks see the label once a dry-run create of the same pod is refused.
      await waitFor('the webhooks see the relabelled virtual node', 30_000, async () => {
        const err = await refusal(
          core.createNamespacedPod({ namespace: ns.name, body: gated('probe'), dryRun: 'All' }),
        );
        return err !== undefined;
      });
      const current = await core.readNamespacedPod({ namespace: ns.name, name: 'gated' });
      delete current.spec!.schedulingGates;
      const err = await refusal(
        core.replaceNamespacedPod({ namespace: ns.name, name: 'gated', body: current }),
      );
      expect(err).toContain('denied the request');
      expect(err).toContain('spec.hostNetwork: ');
      const after = await core.readNamespacedPod({ namespace: ns.name, name: 'gated' });
      expect(after.spec?.schedulingGates).toEqual([{ name: 'spillway.test/hold' }]);
      expect(after.spec?.nodeName).toBeUndefined();
    } finally {
      await core.patchNode(
        { name: virtualNode, body: [{ op: 'remove', path: '/metadata/labels/spillway.test~1pool' }] },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
    }
  });

  it('denies the UPDATE that adds a toleration to a gated pod pointed at the virtual node', async () => {
    const spec = {
      hostNetwork: true,
      nodeSelector: { 'kubernetes.io/hostname': virtualNode },
      schedulingGates: [{ name: 'spillway.test/hold' }],
    };
    // Without the toleration the scheduler could not place it on the virtual node: admitted.
    await created(ns.name, pod('gated-untolerated', {}, spec));
    const current = await core.readNamespacedPod({ namespace: ns.name, name: 'gated-untolerated' });
    current.spec!.tolerations = [...(current.spec!.tolerations ?? []), ...tolerations];
    const err = await refusal(
      core.replaceNamespacedPod({ namespace: ns.name, name: 'gated-untolerated', body: current }),
    );
    expect(err).toContain('spec.hostNetwork: ');
    expect(err).toContain(`admit virtual node ${virtualNode}`);
  });

  it('refuses at admission what the only provider a pod may land on cannot run, so its ReplicaSet backs off', async () => {
    // A virtual node whose provider (local) refuses a Windows pod (it runs Linux containers only): only a Node
    // object is needed, the webhooks read the providers' static rules off its labels.
    const localNode = 'virtual-local-webhooks';
    await core.createNode({
      body: {
        metadata: {
          name: localNode,
          labels: {
            ...VIRTUAL_NODE_LABELS,
            'kubernetes.io/hostname': localNode,
            'spillway.dev/provider': 'local',
          },
        },
        spec: { taints: virtualNodeTaints('local') },
      },
    });
    try {
      const toLocal = { 'spillway.dev/burst': 'always' };
      const spec = { nodeSelector: { 'spillway.dev/provider': 'local' } };
      const windows = { ...spec, os: { name: 'windows' } };
      let message: string | undefined;
      let attempt = 0;
      await waitFor('the webhooks to know the local virtual node', 30_000, async () => {
        // Until the webhooks' node cache has the new node, the pod is admitted: try again under a new name.
        message = await refusal(created(ns.name, pod(`windows-${attempt++}`, toLocal, windows)));
        return message !== undefined;
      });
      expect(message, message).toContain(
        'provider local cannot run it: spec.os.name: the local provider runs Linux containers only: remove spec.os or set it to linux',
      );
      // A Deployment's ReplicaSet gets the same answer as FailedCreate and backs off: no pod is created to fail.
      await apps.createNamespacedDeployment({
        namespace: ns.name,
        body: {
          metadata: { name: 'windows' },
          spec: {
            replicas: 3,
            selector: { matchLabels: { app: 'windows' } },
            template: {
              metadata: { labels: { app: 'windows', ...toLocal } },
              spec: { ...windows, containers: [{ ...pause }] },
            },
          },
        },
      });
      await waitFor('a FailedCreate Event naming the field', 60_000, async () =>
        (await core.listNamespacedEvent({ namespace: ns.name })).items.some(
          (e) => e.reason === 'FailedCreate' && e.message?.includes('spec.os.name'),
        ),
      );
      const pods = await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=windows' });
      expect(pods.items).toHaveLength(0);
      // A Linux pod, and a pod that does not say, may go there.
      await created(ns.name, pod('linux', toLocal, { ...spec, os: { name: 'linux' } }));
      await created(ns.name, pod('no-os', toLocal, spec));
    } finally {
      await apps.deleteNamespacedDeployment({ namespace: ns.name, name: 'windows' }).catch(() => undefined);
      await core.deleteNode({ name: localNode }).catch(() => undefined);
    }
  });

  it('denies kubectl debug adding a privileged container to a pod on the virtual node', async () => {
    expect(await nodeOf(ns.name, 'always')).toBe(virtualNode);
    const current = await core.readNamespacedPod({ namespace: ns.name, name: 'always' });
    current.spec!.ephemeralContainers = [
      { name: 'debug', image: pause.image, securityContext: { privileged: true } },
    ];
    const err = await refusal(
      core.replaceNamespacedPodEphemeralcontainers({ namespace: ns.name, name: 'always', body: current }),
    );
    expect(err).toContain('spec.ephemeralContainers[0].securityContext.privileged: ');
  });
});

function milliCpu(q: string | undefined): number {
  if (!q) return 0;
  return q.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000;
}
