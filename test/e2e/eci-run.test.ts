/**
 * e2e (issue 7): `make run PROVIDER=eci` as a user runs it, on the local control plane, with the provider
 * configuration pointing at the fake ECI endpoint and the AccessKey in the environment (how the chart passes a
 * Secret): an ElasticWorkload's spot unit bursts onto ECI container groups created through the official SDK's
 * signed requests, and Ctrl-C (SIGINT to the foreground process group) stops the operator cleanly.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { fakeEciConfig } from '../support/fake-eci/provider-config.ts';
import { FakeEci } from '../support/fake-eci/server.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-make-run-eci';

describe('make run PROVIDER=eci against the fake ECI endpoint', () => {
  let cluster: TestCluster;
  let core: CoreV1Api;
  let ns: { name: string; remove: () => Promise<void> };
  let fake: FakeEci;
  let dir: string;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'e2e-eci');
    fake = await FakeEci.start({ timings: { schedulingMs: 200, pendingMs: 200 } });
    dir = mkdtempSync(join(tmpdir(), 'spillway-eci-'));
  });
  afterAll(async () => {
    await ns?.remove();
    await fake?.close();
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('bursts a spot unit onto ECI container groups and stops cleanly on Ctrl-C', async () => {
    // The file users write (docs/eci.md), without credentials: those come from the environment.
    const { credentials: _fromEnv, ...config } = fakeEciConfig(fake, { clusterId: 'make-run-e2e' });
    const providerConfig = join(dir, 'eci.yaml');
    writeFileSync(providerConfig, stringify(config));
    const flags = [
      `--provider-config ${providerConfig}`,
      `--node-name ${nodeName}`,
      `--kubelet-port ${await freePort()}`,
      '--metrics-port 0',
    ].join(' ');
    let output = '';
    const make = spawn('make', ['-s', 'run', 'PROVIDER=eci', `RUN_FLAGS=${flags}`], {
      cwd: repoRoot,
      env: {
        ...process.env,
        KUBECONFIG: cluster.kubeconfigPath,
        ALIBABA_CLOUD_ACCESS_KEY_ID: fake.accessKeyId,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: fake.accessKeySecret,
        LOG_LEVEL: 'info',
      },
      // Its own process group, like a terminal's foreground job.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    make.stdout.on('data', (d: Buffer) => (output += d.toString()));
    make.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => make.on('exit', () => resolve()));
    try {
      await waitFor(`virtual node ${nodeName} Ready`, 90_000, async () =>
        Boolean(
          (await core.readNode({ name: nodeName }).catch(() => undefined))?.status?.conditions?.some(
            (c) => c.type === 'Ready' && c.status === 'True',
          ),
        ),
      );
      await createDeployment(cluster.kc, ns.name, deployment('executor', 1, { image: 'spark:3.5.3' }));
      await createElasticWorkload(cluster.kc, ns.name, 'executor', {
        sourceTarget: { kind: 'Deployment', name: 'executor', max: 1 },
        replicas: 4,
        elasticUnit: [
          { name: 'spot', labels: { 'spillway.dev/burst': 'always', 'spillway.dev/capacity': 'spot' } },
        ],
      });
      await waitFor('3 spot pods Running on the ECI node, one container group each', 90_000, async () => {
        const pods = (
          await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'spillway.dev/unit=spot' })
        ).items.filter((p) => p.spec?.nodeName === nodeName && p.status?.phase === 'Running');
        return (
          pods.length === 3 &&
          pods.every((p) => {
            const group = fake.groupByUid(p.metadata!.uid!);
            return group?.spotStrategy === 'SpotAsPriceGo' && p.status?.podIP === group.intranetIp;
          })
        );
      });
      expect(fake.rejectedWith('SignatureDoesNotMatch')).toBe(0);
      expect(fake.calls('CreateContainerGroup')).toBe(3);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- make run output ---\n${output.slice(-6000)}`, {
        cause: err,
      });
    } finally {
      process.kill(-make.pid!, 'SIGINT');
      await exited;
    }
    expect(output).not.toContain(fake.accessKeySecret);
    // Dev-mode webhook configurations point at the process that is gone: they must go with it.
    const hooks = await cluster.kc
      .makeApiClient(AdmissionregistrationV1Api)
      .listMutatingWebhookConfiguration();
    expect(hooks.items.some((w) => w.metadata?.name === 'spillway')).toBe(false);
    // The instances outlive the operator, as pods outlive a kubelet restart.
    expect(fake.groups()).toHaveLength(3);
  });
});
