/**
 * The `spillway` command as users run it (`make run` is `spillway run`): a real process against the local
 * control plane, stopped with SIGTERM like a terminal's Ctrl-C or a pod's termination.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, PLURAL, VERSION } from '../../operator/elasticworkload/api.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';
import { nodeReady as ready, spillway } from '../support/spillway-process.ts';

describe('the spillway command', () => {
  let cluster: TestCluster;
  let core: CoreV1Api;
  let ns: { name: string; remove: () => Promise<void> };

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'cli');
  });
  afterAll(async () => ns?.remove());

  it('spillway run bursts an ElasticWorkload onto its virtual node and cleans up on SIGTERM', async () => {
    const kubeletPort = String(await freePort());
    const run = spillway(
      cluster.kubeconfigPath,
      'run',
      '--provider',
      'fake',
      '--node-name',
      'cli-virtual',
      '--kubelet-port',
      kubeletPort,
      '--metrics-port',
      '0',
    );
    try {
      await waitFor('virtual node cli-virtual Ready', 60_000, () => ready(core, 'cli-virtual'));
      await waitFor('webhook configurations registered', 30_000, async () => {
        const list = await cluster.kc
          .makeApiClient(AdmissionregistrationV1Api)
          .listMutatingWebhookConfiguration();
        return list.items.some((w) => w.metadata?.name === 'spillway');
      });
      await createDeployment(cluster.kc, ns.name, deployment('web', 1, { image: 'nginx:1.27' }));
      await createElasticWorkload(cluster.kc, ns.name, 'web', {
        sourceTarget: { kind: 'Deployment', name: 'web', max: 1 },
        replicas: 4,
        elasticUnit: [
          { name: 'spot', labels: { 'spillway.dev/burst': 'always', 'spillway.dev/capacity': 'spot' } },
        ],
      });
      await waitFor('3 unit pods Running on cli-virtual with spot annotations', 60_000, async () => {
        const pods = (
          await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'spillway.dev/unit=spot' })
        ).items;
        return (
          pods.length === 3 &&
          pods.every(
            (p) =>
              p.spec?.nodeName === 'cli-virtual' &&
              p.status?.phase === 'Running' &&
              p.metadata?.annotations?.['k8s.aliyun.com/eci-spot-strategy'] === 'SpotAsPriceGo',
          )
        );
      });
      // Deleted while the operator runs, its finalizer folds the replicas back; otherwise the namespace would
      // wait for ever on it.
      const objects = cluster.kc.makeApiClient(CustomObjectsApi);
      await objects.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns.name,
        name: 'web',
      });
      await waitFor('ElasticWorkload web folded back and gone', 60_000, async () =>
        objects
          .getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace: ns.name,
            name: 'web',
          })
          .then(
            () => false,
            () => true,
          ),
      );
    } catch (err) {
      // What the operator said is the first thing anyone debugging this will want.
      throw new Error(
        `${(err as Error).message}\n--- spillway run output ---\n${run.output().slice(-6000)}`,
        { cause: err },
      );
    } finally {
      run.child.kill('SIGTERM');
    }
    expect(await run.exited, run.output()).toBe(0);
    // Dev-mode webhook configurations point at a process that is gone: they must go with it.
    const hooks = await cluster.kc
      .makeApiClient(AdmissionregistrationV1Api)
      .listMutatingWebhookConfiguration();
    expect(hooks.items.some((w) => w.metadata?.name === 'spillway')).toBe(false);
    await core.deleteNode({ name: 'cli-virtual' });
  });

  it('spillway virtual-node --config runs several virtual nodes from one file', async () => {
    const file = join(tmpdir(), `spillway-nodes-${process.pid}.yaml`);
    const [a, b] = [await freePort(), await freePort()];
    writeFileSync(
      file,
      `nodes:\n- {name: cli-spot, provider: fake, kubeletPort: ${a}, labels: {spillway.dev/capacity: spot}}\n- {name: cli-on-demand, provider: fake, kubeletPort: ${b}}\n`,
    );
    const vn = spillway(cluster.kubeconfigPath, 'virtual-node', '--config', file, '--metrics-port', '0');
    try {
      await waitFor(
        'both virtual nodes Ready',
        60_000,
        async () => (await ready(core, 'cli-spot')) && (await ready(core, 'cli-on-demand')),
      );
      expect((await core.readNode({ name: 'cli-spot' })).metadata?.labels?.['spillway.dev/capacity']).toBe(
        'spot',
      );
    } finally {
      vn.child.kill('SIGTERM');
    }
    expect(await vn.exited, vn.output()).toBe(0);
    for (const n of ['cli-spot', 'cli-on-demand']) await core.deleteNode({ name: n });
  });

  it('refuses a bad configuration file with the path of the problem', async () => {
    const file = join(tmpdir(), `spillway-bad-nodes-${process.pid}.yaml`);
    writeFileSync(file, 'nodes: [{name: x, provider: fake, kubletPort: 1}]\n');
    const vn = spillway(cluster.kubeconfigPath, 'virtual-node', '--config', file, '--metrics-port', '0');
    expect(await vn.exited).toBe(1);
    expect(vn.output()).toMatch(/nodes\.0.*kubletPort/);
  });
});
