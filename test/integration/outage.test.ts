/**
 * An apiserver outage longer than the leader's renew deadline, in the middle of a burst: the operator loses its
 * Lease, but keeps running (virtual node and webhooks included), leads again once the apiserver is back, and the
 * burst completes without a restart.
 */
import { hostname } from 'node:os';
import { AdmissionregistrationV1Api, CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';
import { nodeReady, spillway } from '../support/spillway-process.ts';

const NODE = 'outage-virtual';
/** Longer than the leader's renew deadline (10 s), as in the report that found the fault. */
const OUTAGE_MS = 30_000;

describe('an apiserver outage mid-burst', () => {
  let cluster: TestCluster;
  let core: CoreV1Api;
  let ns: { name: string; remove: () => Promise<void> };

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'outage');
  });
  afterAll(async () => ns?.remove());

  it('keeps the operator running and completes the burst once the apiserver is back', async () => {
    const run = spillway(
      cluster.kubeconfigPath,
      'run',
      '--provider',
      'fake',
      '--node-name',
      NODE,
      '--kubelet-port',
      String(await freePort()),
      '--metrics-port',
      '0',
    );
    // The operator's leader-election identity (operator/cli.ts): leading means holding this Lease.
    const leads = async () =>
      (
        await cluster.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({
          namespace: 'spillway-system',
          name: 'spillway-elasticworkload-controller',
        })
      ).spec?.holderIdentity === `${hostname()}-${run.child.pid}`;
    const unitPods = async () =>
      (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'spillway.dev/unit=burst' })).items;
    let apiserverDown = false;
    try {
      await waitFor(`virtual node ${NODE} Ready`, 60_000, () => nodeReady(core, NODE));
      await waitFor('the operator to lead', 60_000, leads);
      await createDeployment(cluster.kc, ns.name, deployment('web', 1));
      await createElasticWorkload(cluster.kc, ns.name, 'web', {
        sourceTarget: { kind: 'Deployment', name: 'web', max: 1 },
        replicas: 3,
        elasticUnit: [{ name: 'burst', labels: { 'spillway.dev/burst': 'always' } }],
      });
      await waitFor('2 unit pods Running', 60_000, async () => {
        const pods = await unitPods();
        return pods.length === 2 && pods.every((p) => p.status?.phase === 'Running');
      });

      // Mid-burst: the scale-out is written, then the apiserver goes away for longer than the renew deadline.
      await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', ns.name, '--replicas=8');
      await cluster.stop('kube-apiserver');
      apiserverDown = true;
      await sleep(OUTAGE_MS);
      await cluster.start('kube-apiserver');
      apiserverDown = false;

      await waitFor('7 unit pods Running on the virtual node after the outage', 90_000, async () => {
        const pods = await unitPods();
        return (
          pods.length === 7 && pods.every((p) => p.spec?.nodeName === NODE && p.status?.phase === 'Running')
        );
      });
      await waitFor(`virtual node ${NODE} Ready again`, 60_000, () => nodeReady(core, NODE));
      await waitFor('the same operator to lead again', 30_000, leads);
      // The same process all along: it never exited, and its dev-mode webhooks are still registered.
      expect(run.child.exitCode).toBeNull();
      const hooks = await cluster.kc
        .makeApiClient(AdmissionregistrationV1Api)
        .listMutatingWebhookConfiguration();
      expect(hooks.items.some((w) => w.metadata?.name === 'spillway')).toBe(true);
      expect(run.output()).toMatch(/stopped leading/);
      expect(run.output().match(/started leading/g)?.length).toBeGreaterThanOrEqual(2);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- spillway run output ---\n${run.output().slice(-6000)}`,
        {
          cause: err,
        },
      );
    } finally {
      if (apiserverDown) await cluster.start('kube-apiserver');
      run.child.kill('SIGTERM');
      await run.exited;
      // The operator is gone: let the namespace's deletion take the ElasticWorkload without its fold-back.
      await kubectl(
        cluster.kubeconfigPath,
        'patch',
        'ew',
        'web',
        '-n',
        ns.name,
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ).catch(() => undefined);
    }
    expect(await run.exited, run.output().slice(-6000)).toBe(0);
    await core.deleteNode({ name: NODE });
  }, 420_000);
});
