/**
 * The `spillway` command as users run it (`make run` is `spillway run`): a real process against the local
 * control plane, stopped with SIGTERM like a terminal's Ctrl-C or a pod's termination.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import { PROVIDER_NAMES } from '../../operator/providers/index.ts';
import { repoRoot, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
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
    const metricsPort = String(await freePort());
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
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
      metricsPort,
    );
    const registered = async () => {
      const [m, v] = await Promise.all([
        admission.listMutatingWebhookConfiguration(),
        admission.listValidatingWebhookConfiguration(),
      ]);
      return [m, v].every((list) => list.items.some((w) => w.metadata?.name === 'spillway'));
    };
    try {
      await waitFor('virtual node cli-virtual Ready', 60_000, () => ready(core, 'cli-virtual'));
      await waitFor('webhook configurations registered', 30_000, registered);
      // Every address it serves, one line each (the kubelet API's once its node is started).
      const addresses = [
        /serving webhooks at https:\/\/127\.0\.0\.1:\d+"/,
        `serving metrics at http://127.0.0.1:${metricsPort}/metrics`,
        `serving the kubelet API of virtual node cli-virtual at https://127.0.0.1:${kubeletPort}`,
      ];
      await waitFor('the startup log names every address', 30_000, async () =>
        addresses.every((a) => (typeof a === 'string' ? run.output().includes(a) : a.test(run.output()))),
      );

      // A second operator against the same cluster is refused, with who is there, before it touches anything.
      const second = spillway(
        cluster.kubeconfigPath,
        'run',
        '--provider',
        'fake',
        '--node-name',
        'cli-virtual-2',
        '--kubelet-port',
        String(await freePort()),
        '--metrics-port',
        '0',
      );
      expect(await second.exited, second.output()).toBe(1);
      expect(second.output()).toMatch(
        new RegExp(
          `another spillway run \\(\\S+-${run.child.pid}, serving https://127\\.0\\.0\\.1:\\d+/.*Stop it first`,
        ),
      );
      expect(await core.readNode({ name: 'cli-virtual-2' }).catch(() => undefined)).toBeUndefined();

      // Deleted under the running operator, its webhook configurations come back.
      await admission.deleteMutatingWebhookConfiguration({ name: 'spillway' });
      await admission.deleteValidatingWebhookConfiguration({ name: 'spillway' });
      await waitFor('webhook configurations registered again', 30_000, registered);
      // Edited under it (every webhook failing open), they are put back as it registered them.
      const policies = async () =>
        ((await admission.readMutatingWebhookConfiguration({ name: 'spillway' })).webhooks ?? []).map(
          (w) => w.failurePolicy,
        );
      const registeredPolicies = await policies();
      const edited = await admission.readMutatingWebhookConfiguration({ name: 'spillway' });
      for (const w of edited.webhooks ?? []) w.failurePolicy = 'Ignore';
      expect(registeredPolicies).not.toEqual(edited.webhooks?.map(() => 'Ignore'));
      await admission.replaceMutatingWebhookConfiguration({ name: 'spillway', body: edited });
      await waitFor('the edited webhook configuration put back', 30_000, async () =>
        (await policies()).every((p, i) => p === registeredPolicies[i]),
      );
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
    // A second SIGTERM while it shuts down, as `make run` gets one (the process group's and the one make forwards
    // to its child): still every closer, and exit code 0.
    await waitFor('shutdown begun', 10_000, async () => run.output().includes('"msg":"shutting down"'));
    run.child.kill('SIGTERM');
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
      `nodes:\n- {name: cli-spot, provider: fake, kubeletPort: ${a}, labels: {spillway.dev/capacity: spot}, capacity: {cpu: "48", memory: 192Gi, pods: "300", ephemeral-storage: 2Ti}}\n- {name: cli-on-demand, provider: fake, kubeletPort: ${b}}\n`,
    );
    const vn = spillway(cluster.kubeconfigPath, 'virtual-node', '--config', file, '--metrics-port', '0');
    try {
      await waitFor(
        'both virtual nodes Ready',
        60_000,
        async () => (await ready(core, 'cli-spot')) && (await ready(core, 'cli-on-demand')),
      );
      const spot = await core.readNode({ name: 'cli-spot' });
      expect(spot.metadata?.labels?.['spillway.dev/capacity']).toBe('spot');
      // The configured capacity, as the scheduler sees it.
      const configured = { cpu: '48', memory: '192Gi', pods: '300', 'ephemeral-storage': '2Ti' };
      expect(spot.status?.capacity).toEqual(configured);
      expect(spot.status?.allocatable).toEqual(configured);
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

  it('spillway --help lists every provider of the registry', async () => {
    const help = spillway(cluster.kubeconfigPath, '--help');
    expect(await help.exited).toBe(0);
    for (const name of PROVIDER_NAMES) expect(help.output()).toMatch(new RegExp(`^  ${name} +\\S`, 'm'));
  });

  it('a run that fails on its provider configuration leaves the cluster untouched', async () => {
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    const crdVersion = async () =>
      (
        await cluster.kc
          .makeApiClient(ApiextensionsV1Api)
          .readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` })
          .catch(() => undefined)
      )?.metadata?.resourceVersion;
    const before = await crdVersion();
    const file = join(tmpdir(), `spillway-empty-eci-${process.pid}.yaml`);
    writeFileSync(file, '{}\n');
    const namespace = `cli-untouched-${process.pid}`;
    const run = spillway(
      cluster.kubeconfigPath,
      'run',
      '--provider',
      'eci',
      '--provider-config',
      file,
      '--namespace',
      namespace,
      '--node-name',
      'cli-untouched',
      '--kubelet-port',
      String(await freePort()),
      '--metrics-port',
      '0',
    );
    expect(await run.exited).toBe(1);
    // Every missing field at once.
    for (const field of ['regionId', 'credentials', 'clusterId', 'vSwitchIds', 'securityGroupId'])
      expect(run.output()).toContain(`eci.${field}: missing`);
    expect(await core.readNamespace({ name: namespace }).catch(() => undefined)).toBeUndefined();
    expect(await core.readNode({ name: 'cli-untouched' }).catch(() => undefined)).toBeUndefined();
    const [m, v] = await Promise.all([
      admission.listMutatingWebhookConfiguration(),
      admission.listValidatingWebhookConfiguration(),
    ]);
    expect([...m.items, ...v.items].filter((w) => w.metadata?.name === 'spillway')).toEqual([]);
    expect(await crdVersion()).toBe(before);
  });

  it('a run whose webhooks another live run registered over neither fights for them nor removes them', async () => {
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    // The other run: something that answers on loopback, and its identity on the configuration.
    const other = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const otherUrl = `https://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const run = spillway(
      cluster.kubeconfigPath,
      'run',
      '--node-name',
      'cli-overtaken',
      '--kubelet-port',
      String(await freePort()),
      '--metrics-port',
      '0',
    );
    try {
      await waitFor('webhook configurations registered', 30_000, async () =>
        run.output().includes('webhook configurations registered'),
      );
      const taken = await admission.readMutatingWebhookConfiguration({ name: 'spillway' });
      taken.metadata!.annotations = { 'spillway.dev/dev-mode-owner': 'elsewhere-1' };
      for (const w of taken.webhooks ?? []) w.clientConfig.url = `${otherUrl}/mutate-pods`;
      await admission.replaceMutatingWebhookConfiguration({ name: 'spillway', body: taken });
      await waitFor('the run noticed', 30_000, async () => run.output().includes('not taking them back'));
    } finally {
      run.child.kill('SIGTERM');
    }
    try {
      expect(await run.exited, run.output()).toBe(0);
      const left = await admission.readMutatingWebhookConfiguration({ name: 'spillway' });
      expect(left.metadata?.annotations?.['spillway.dev/dev-mode-owner']).toBe('elsewhere-1');
      // Its own (the validating one) went with it.
      expect(
        await admission.readValidatingWebhookConfiguration({ name: 'spillway' }).catch(() => undefined),
      ).toBeUndefined();
    } finally {
      other.close();
      await admission.deleteMutatingWebhookConfiguration({ name: 'spillway' }).catch(() => undefined);
      await core.deleteNode({ name: 'cli-overtaken' }).catch(() => undefined);
    }
  });

  it('spillway run beside a Helm installation of spillway is refused with how to proceed', async () => {
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    // What the chart's webhook configuration carries (charts/spillway/templates/_helpers.tpl, and Helm's own).
    await admission.createValidatingWebhookConfiguration({
      body: {
        metadata: {
          name: 'spillway',
          labels: {
            'app.kubernetes.io/name': 'spillway',
            'app.kubernetes.io/instance': 'burst',
            'app.kubernetes.io/managed-by': 'Helm',
          },
          annotations: { 'meta.helm.sh/release-name': 'burst', 'meta.helm.sh/release-namespace': 'platform' },
        },
        webhooks: [],
      },
    });
    try {
      const run = spillway(
        cluster.kubeconfigPath,
        'run',
        '--node-name',
        'cli-beside-helm',
        '--kubelet-port',
        String(await freePort()),
        '--metrics-port',
        '0',
      );
      expect(await run.exited).toBe(1);
      expect(run.output()).toContain(
        'spillway is already installed in this cluster by Helm (release burst in namespace platform',
      );
      expect(run.output()).toContain('helm uninstall burst -n platform');
      // The chart's configuration is left as it was.
      const after = await admission.readValidatingWebhookConfiguration({ name: 'spillway' });
      expect(after.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
      expect(await core.readNode({ name: 'cli-beside-helm' }).catch(() => undefined)).toBeUndefined();
    } finally {
      await admission.deleteValidatingWebhookConfiguration({ name: 'spillway' });
    }
  });

  it('a run against a cluster that does not answer says so and starts nothing', async () => {
    const closed = await freePort();
    const kubeconfig = join(tmpdir(), `spillway-unreachable-${process.pid}.yaml`);
    writeFileSync(
      kubeconfig,
      readFileSync(cluster.kubeconfigPath, 'utf8').replace(
        /server: "?https:\/\/127\.0\.0\.1:\d+"?/,
        `server: "https://127.0.0.1:${closed}"`,
      ),
    );
    const kubeletPort = await freePort();
    const run = spillway(kubeconfig, 'run', '--kubelet-port', String(kubeletPort), '--metrics-port', '0');
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain(`cannot reach the cluster at https://127.0.0.1:${closed}`);
    expect(run.output()).not.toContain('serving');
  });

  it('make run stops as cleanly on SIGTERM to its process group as on Ctrl-C', async () => {
    const flags = `--node-name cli-make --kubelet-port ${await freePort()} --metrics-port 0`;
    let output = '';
    // -o: never reinstall node_modules under a running test (make run's deps would run npm ci).
    const make = spawn(
      'make',
      ['-s', '-o', 'node_modules/.installed', 'run', 'PROVIDER=fake', `RUN_FLAGS=${flags}`],
      {
        cwd: repoRoot,
        env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, LOG_LEVEL: 'info' },
        detached: true, // its own process group, like a terminal's foreground job
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    make.stdout.on('data', (d: Buffer) => (output += d.toString()));
    make.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
      make.on('exit', (code, signal) => resolve(signal ?? code)),
    );
    try {
      await waitFor('virtual node cli-make Ready', 60_000, () => ready(core, 'cli-make').catch(() => false));
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- make run output ---\n${output.slice(-6000)}`, {
        cause: err,
      });
    } finally {
      process.kill(-make.pid!, 'SIGTERM');
    }
    // make passes the signal on and ends by it, as on Ctrl-C; the operator behind it ran every closer.
    expect(await exited, output).toBe('SIGTERM');
    expect(output).toMatch(/"code":0,"msg":"shutdown complete"/);
    expect(output).not.toContain('second signal');
    expect(output).not.toContain('make: ***');
    const hooks = await cluster.kc
      .makeApiClient(AdmissionregistrationV1Api)
      .listMutatingWebhookConfiguration();
    expect(hooks.items.some((w) => w.metadata?.name === 'spillway')).toBe(false);
    await core.deleteNode({ name: 'cli-make' });
  });
});
