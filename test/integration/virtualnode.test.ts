/**
 * The virtual node with the fake provider on the real control plane: registration, pods to Running with
 * full status, kubectl logs/exec through the apiserver, graceful delete, restart without duplicates,
 * NotReady on provider outage, UnsupportedPodSpec, and the kubelet API's authentication.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import type { SandboxKey } from '../../operator/providers/types.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { defaultBinDir, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-test';
const onVirtualNode = {
  nodeSelector: { 'spillway.dev/virtual-node': 'true' },
  tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' as const }],
};

/** The fake provider, recording the grace periods it was asked to honour. */
class RecordingFake extends FakeProvider {
  graceBy = new Map<string, number | undefined>();
  override async delete(key: SandboxKey, options?: { gracePeriodSeconds?: number }): Promise<void> {
    this.graceBy.set(key.name, options?.gracePeriodSeconds);
    return super.delete(key, options);
  }
}

function kubeletGet(
  port: number,
  path: string,
  auth: { token?: string; cert?: Buffer; key?: Buffer } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        rejectUnauthorized: false,
        cert: auth.cert,
        key: auth.key,
        headers: auth.token ? { Authorization: `Bearer ${auth.token}` } : {},
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Everything a child process has written to stdout and stderr so far. */
function collectOutput(child: ChildProcess): () => string {
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

/** Sends `message` to 127.0.0.1:`port`, half-closes, and resolves with what came back. */
function echoThrough(port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(message));
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('end', () => resolve(reply));
    socket.on('error', reject);
  });
}

describe('virtual node with the fake provider', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let provider: RecordingFake;
  let vn: RunningVirtualNode;
  let core: CoreV1Api;
  let port: number;

  const start = async () =>
    startVirtualNode({
      kc: cluster.kc,
      provider,
      config: {
        name: nodeName,
        internalIP: '127.0.0.1',
        kubeletPort: port,
        pingIntervalMs: 1000,
        pingFailureThreshold: 3,
      },
    });
  const pods = async (selector: string) =>
    (await core.listNamespacedPod({ namespace: ns.name, labelSelector: selector })).items;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'vnode');
    port = await freePort();
    provider = new RecordingFake();
    provider.script('*', '*', { logs: ['hello from the sandbox'] });
    vn = await start();
  });
  afterAll(async () => {
    await vn?.stop();
    await ns?.remove();
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
  });

  it('registers a Ready node with the provider’s capacity, labels, taints and kubelet port', async () => {
    const node = await core.readNode({ name: nodeName });
    expect(node.metadata?.labels).toMatchObject({
      'spillway.dev/virtual-node': 'true',
      type: 'virtual-kubelet',
    });
    expect(node.spec?.taints).toEqual(
      expect.arrayContaining([{ key: 'virtual-kubelet.io/provider', value: 'fake', effect: 'NoSchedule' }]),
    );
    // The apiserver stores quantities in canonical form: 1000 CPUs read back as 1k.
    expect(node.status?.allocatable).toMatchObject({ cpu: '1k', pods: '10k' });
    expect(node.status?.daemonEndpoints?.kubeletEndpoint?.Port).toBe(port);
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const lease = await kubectl(
      cluster.kubeconfigPath,
      'get',
      'lease',
      '-n',
      'kube-node-lease',
      nodeName,
      '-o',
      'jsonpath={.spec.holderIdentity}',
    );
    expect(lease).toBe(nodeName);
  });

  it('runs a Deployment’s pods to Running and Ready with a full status', async () => {
    await cluster.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'burst' },
        spec: {
          replicas: 5,
          selector: { matchLabels: { app: 'burst' } },
          template: {
            metadata: { labels: { app: 'burst' } },
            spec: {
              ...onVirtualNode,
              containers: [
                {
                  name: 'app',
                  image: 'nginx:1.27',
                  env: [{ name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
                },
              ],
            },
          },
        },
      },
    });
    let running: V1Pod[] = [];
    await waitFor('5 pods Running and Ready on the virtual node', 60_000, async () => {
      running = (await pods('app=burst')).filter(
        (p) =>
          p.status?.phase === 'Running' &&
          p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return running.length === 5;
    });
    for (const p of running) {
      expect(p.spec?.nodeName).toBe(nodeName);
      expect(p.status?.podIP).toBeTruthy();
      expect(p.status?.hostIP).toBe('127.0.0.1');
      expect(p.status?.qosClass).toBe('BestEffort');
      expect(p.status?.startTime).toBeTruthy();
      expect(p.status?.containerStatuses?.[0]).toMatchObject({
        name: 'app',
        ready: true,
        started: true,
        restartCount: 0,
      });
      expect(p.status?.containerStatuses?.[0]?.state?.running?.startedAt).toBeTruthy();
    }
  });

  it('serves kubectl logs and kubectl exec through the apiserver', async () => {
    const [p] = await pods('app=burst');
    const name = p!.metadata!.name!;
    expect(await kubectl(cluster.kubeconfigPath, 'logs', '-n', ns.name, name)).toContain(
      'hello from the sandbox',
    );
    expect(
      (
        await kubectl(cluster.kubeconfigPath, 'exec', '-n', ns.name, name, '--', 'echo', 'hi', 'there')
      ).trim(),
    ).toBe('hi there');
    // The env the pod controller resolved reaches the sandbox.
    expect(await kubectl(cluster.kubeconfigPath, 'exec', '-n', ns.name, name, '--', 'env')).toContain(
      `POD=${name}`,
    );
    await expect(
      kubectl(cluster.kubeconfigPath, 'exec', '-n', ns.name, name, '--', 'sh', '-c', 'exit 3'),
    ).rejects.toThrow(/exit code 3/);
  });

  /** The reasons of a pod's Events, oldest first, with `fieldPath` for container Events. */
  const eventsOf = async (name: string) =>
    (
      await core.listNamespacedEvent({ namespace: ns.name, fieldSelector: `involvedObject.name=${name}` })
    ).items
      .sort((a, b) =>
        String(a.eventTime ?? a.firstTimestamp).localeCompare(String(b.eventTime ?? b.firstTimestamp)),
      )
      .map((e) => ({
        reason: e.reason,
        message: e.message,
        fieldPath: e.involvedObject.fieldPath,
        type: e.type,
      }));

  it('records the kubelet’s container lifecycle Events and serves kubectl logs --previous', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'lifecycle' },
        spec: { ...onVirtualNode, containers: [{ name: 'app', image: 'nginx:1.27' }] },
      },
    });
    await waitFor('lifecycle Started Event', 30_000, async () =>
      (await eventsOf('lifecycle')).some((e) => e.reason === 'Started'),
    );
    const first = (await eventsOf('lifecycle')).filter((e) => e.fieldPath === 'spec.containers{app}');
    // Recorded in this order within the same millisecond: compare them as a set of reason: message.
    expect(first.map((e) => `${e.reason}: ${e.message}`).sort()).toEqual([
      'Created: Created container: app',
      expect.stringMatching(/^Pulled: Successfully pulled image "nginx:1.27" in /),
      'Pulling: Pulling image "nginx:1.27"',
      'Started: Started container app',
    ]);
    // No previous run yet: the kubelet's message, through the apiserver.
    await expect(
      kubectl(cluster.kubeconfigPath, 'logs', '-n', ns.name, 'lifecycle', '--previous'),
    ).rejects.toThrow('previous terminated container "app" in pod "lifecycle" not found');
    const p = await core.readNamespacedPod({ namespace: ns.name, name: 'lifecycle' });
    provider.exitContainer({ uid: p.metadata!.uid!, namespace: ns.name, name: 'lifecycle' }, 'app', 1);
    await waitFor('restart Events', 30_000, async () =>
      (await eventsOf('lifecycle')).some((e) => e.message?.includes('already present on machine')),
    );
    expect(await kubectl(cluster.kubeconfigPath, 'logs', '-n', ns.name, 'lifecycle', '--previous')).toContain(
      'hello from the sandbox',
    );
    await kubectl(cluster.kubeconfigPath, 'delete', 'pod', '-n', ns.name, 'lifecycle', '--wait=true');
    await waitFor('Killing Event', 30_000, async () =>
      (await eventsOf('lifecycle')).some(
        (e) => e.reason === 'Killing' && e.message === 'Stopping container app',
      ),
    );
  });

  it('reports a missing env reference as CreateContainerConfigError and a missing volume source as FailedMount', async () => {
    const spec = (extra: object) => ({
      ...onVirtualNode,
      containers: [{ name: 'app', image: 'nginx:1.27', ...extra }],
    });
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'needs-env' },
        spec: spec({ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'late-env', key: 'x' } } }] }),
      },
    });
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'needs-volume' },
        spec: {
          ...spec({ volumeMounts: [{ name: 'conf', mountPath: '/etc/conf' }] }),
          volumes: [{ name: 'conf', configMap: { name: 'late-volume' } }],
        },
      },
    });
    const waiting = async (name: string) =>
      (await core.readNamespacedPod({ namespace: ns.name, name })).status?.containerStatuses?.[0]?.state
        ?.waiting;
    await waitFor(
      'needs-env CreateContainerConfigError',
      30_000,
      async () => (await waiting('needs-env'))?.reason === 'CreateContainerConfigError',
    );
    expect(await waiting('needs-env')).toEqual({
      reason: 'CreateContainerConfigError',
      message: 'configmap "late-env" not found',
    });
    await waitFor('needs-env Failed Event', 30_000, async () =>
      (await eventsOf('needs-env')).some(
        (e) =>
          e.reason === 'Failed' &&
          e.type === 'Warning' &&
          e.message === 'Error: configmap "late-env" not found',
      ),
    );
    await waitFor('needs-volume FailedMount Event', 30_000, async () =>
      (await eventsOf('needs-volume')).some(
        (e) =>
          e.reason === 'FailedMount' &&
          e.message === 'MountVolume.SetUp failed for volume "conf" : configmap "late-volume" not found',
      ),
    );
    // Still being created, as on a kubelet: Pending, ContainerCreating, never a Failed pod.
    const stuck = await core.readNamespacedPod({ namespace: ns.name, name: 'needs-volume' });
    expect(stuck.status?.phase).toBe('Pending');
    expect(stuck.status?.containerStatuses?.[0]?.state?.waiting?.reason).toBe('ContainerCreating');
    expect((await core.readNamespacedPod({ namespace: ns.name, name: 'needs-env' })).status?.phase).toBe(
      'Pending',
    );
    // kubectl logs says why, in the kubelet's words, through the apiserver.
    await expect(kubectl(cluster.kubeconfigPath, 'logs', '-n', ns.name, 'needs-env')).rejects.toThrow(
      'container "app" in pod "needs-env" is waiting to start: CreateContainerConfigError',
    );
    // Once the references exist, both start.
    for (const name of ['late-env', 'late-volume'])
      await core.createNamespacedConfigMap({
        namespace: ns.name,
        body: { metadata: { name }, data: { x: '1' } },
      });
    for (const name of ['needs-env', 'needs-volume'])
      await waitFor(
        `${name} Running`,
        60_000,
        async () => (await core.readNamespacedPod({ namespace: ns.name, name })).status?.phase === 'Running',
      );
  });

  it('serves kubectl port-forward and kubectl attach through the apiserver', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'served' },
        spec: {
          ...onVirtualNode,
          containers: [{ name: 'app', image: 'nginx:1.27', ports: [{ containerPort: 8080 }] }],
        },
      },
    });
    await waitFor(
      'served Running',
      30_000,
      async () =>
        (await core.readNamespacedPod({ namespace: ns.name, name: 'served' })).status?.phase === 'Running',
    );
    const env = { ...process.env, KUBECONFIG: cluster.kubeconfigPath };
    const children: ChildProcess[] = [];
    try {
      // port-forward: the fake's containers echo on their declared ports.
      const forward = spawn(
        join(defaultBinDir, 'kubectl'),
        ['port-forward', '-n', ns.name, 'pod/served', ':8080', '--address', '127.0.0.1'],
        { env },
      );
      children.push(forward);
      const output = collectOutput(forward);
      await waitFor('port-forward listening', 30_000, async () =>
        /Forwarding from 127\.0\.0\.1:\d+/.test(output()),
      );
      const localPort = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(output())![1]);
      expect(await echoThrough(localPort, 'through the tunnel')).toBe('through the tunnel');
      // A port nothing listens on: kubectl reports the kubelet's error.
      const refused = spawn(
        join(defaultBinDir, 'kubectl'),
        ['port-forward', '-n', ns.name, 'pod/served', ':81', '--address', '127.0.0.1'],
        { env },
      );
      children.push(refused);
      const refusedOutput = collectOutput(refused);
      await waitFor('second port-forward listening', 30_000, async () =>
        /Forwarding from 127\.0\.0\.1:\d+/.test(refusedOutput()),
      );
      const closedPort = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(refusedOutput())![1]);
      await echoThrough(closedPort, 'x').catch(() => '');
      await waitFor('the kubelet error printed', 30_000, async () =>
        refusedOutput().includes('error forwarding port 81 to pod served'),
      );

      // attach: the container's output from now on.
      const attachesBefore = provider.attachCalls;
      const attach = spawn(join(defaultBinDir, 'kubectl'), ['attach', '-n', ns.name, 'served', '-c', 'app'], {
        env,
      });
      children.push(attach);
      const attached = collectOutput(attach);
      await waitFor('attached', 30_000, async () => provider.attachCalls > attachesBefore);
      const p = await core.readNamespacedPod({ namespace: ns.name, name: 'served' });
      const key = { uid: p.metadata!.uid!, namespace: ns.name, name: 'served' };
      await waitFor('attached output', 30_000, async () => {
        provider.appendLog(key, 'app', 'said after attaching');
        return attached().includes('said after attaching');
      });
    } finally {
      for (const child of children) child.kill();
    }
  });

  it('serves kubectl attach -i: input reaches a container with stdin: true', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'interactive' },
        spec: { ...onVirtualNode, containers: [{ name: 'app', image: 'busybox', stdin: true }] },
      },
    });
    await waitFor(
      'interactive Running',
      30_000,
      async () =>
        (await core.readNamespacedPod({ namespace: ns.name, name: 'interactive' })).status?.phase ===
        'Running',
    );
    const attachesBefore = provider.attachCalls;
    const attach = spawn(
      join(defaultBinDir, 'kubectl'),
      ['attach', '-i', '-n', ns.name, 'interactive', '-c', 'app'],
      {
        env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath },
      },
    );
    try {
      const output = collectOutput(attach);
      await waitFor('attached', 30_000, async () => provider.attachCalls > attachesBefore);
      attach.stdin!.write('typed into kubectl attach\n');
      // The fake's containers with stdin echo it (as cat would): it comes back through the attach.
      await waitFor('the input echoed back', 30_000, async () =>
        output().includes('typed into kubectl attach'),
      );
    } finally {
      attach.kill();
    }
  });

  it('passes the terminal size of kubectl exec -it to the container', async () => {
    const [p] = await pods('app=burst');
    // `script` gives kubectl a terminal of 33 rows and 101 columns; the fake's `stty size` prints what arrived.
    const kubectlCommand = [
      join(defaultBinDir, 'kubectl'),
      'exec',
      '-it',
      '-n',
      ns.name,
      p!.metadata!.name!,
      '--',
      'stty',
      'size',
    ].join(' ');
    provider.terminalSizes = [];
    const shell = spawn('script', ['-qec', `stty rows 33 cols 101; ${kubectlCommand}`, '/dev/null'], {
      env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath },
    });
    const output = collectOutput(shell);
    await new Promise((resolve) => shell.once('close', resolve));
    expect(output()).toContain('33 101');
    expect(provider.terminalSizes[0]).toEqual({ width: 101, height: 33 });
  });

  it('passes the grace period of kubectl delete to the provider, then the pod is gone', async () => {
    const [p] = await pods('app=burst');
    const name = p!.metadata!.name!;
    await kubectl(
      cluster.kubeconfigPath,
      'delete',
      'pod',
      '-n',
      ns.name,
      name,
      '--grace-period=7',
      '--wait=true',
    );
    expect(provider.graceBy.get(name)).toBe(7);
    await expect(core.readNamespacedPod({ namespace: ns.name, name })).rejects.toThrow();
  });

  it('makes no duplicate and leaves no orphan when restarted mid-burst', async () => {
    // The replacement of the pod deleted above is created first, so that only this test's creates are counted.
    await waitFor(
      '5 pods Running',
      60_000,
      async () => (await pods('app=burst')).filter((p) => p.status?.phase === 'Running').length === 5,
    );
    const createsBefore = provider.createCalls;
    await kubectl(cluster.kubeconfigPath, 'scale', 'deployment/burst', '-n', ns.name, '--replicas=40');
    await vn.stop();
    vn = await start();
    await waitFor(
      '40 pods Running',
      60_000,
      async () => (await pods('app=burst')).filter((p) => p.status?.phase === 'Running').length === 40,
    );
    const uids = new Set((await pods('app=burst')).map((p) => p.metadata?.uid));
    const instances = await provider.list();
    expect(instances.filter((i) => i.key.namespace === ns.name && uids.has(i.key.uid))).toHaveLength(40);
    // One create per new pod: the 35 new ones, none again for the 5 adopted after the restart.
    expect(provider.createCalls - createsBefore).toBe(35);
    expect(await vn.pods.collectOrphans(Date.now() + 60_000)).toBe(0);
  });

  it('fails a pod a sandbox cannot run with UnsupportedPodSpec and an Event', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'hostnet' },
        spec: { nodeName, hostNetwork: true, containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
    await waitFor('hostnet Failed', 30_000, async () => {
      const p = await core.readNamespacedPod({ namespace: ns.name, name: 'hostnet' });
      return p.status?.phase === 'Failed' && p.status.reason === 'UnsupportedPodSpec';
    });
    const events = await core.listNamespacedEvent({
      namespace: ns.name,
      fieldSelector: 'involvedObject.name=hostnet',
    });
    expect(
      events.items.some((e) => e.reason === 'UnsupportedPodSpec' && e.message?.includes('spec.hostNetwork')),
    ).toBe(true);
  });

  it('retries a create the provider refuses, with Events, then fails the pod with ProviderFailed', async () => {
    provider.errorHook = (method, key) =>
      method === 'create' && key?.name === 'doomed' ? new Error('backend says no') : undefined;
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'doomed' },
        spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
    await waitFor('doomed Failed with ProviderFailed', 60_000, async () => {
      const p = await core.readNamespacedPod({ namespace: ns.name, name: 'doomed' });
      return p.status?.phase === 'Failed' && p.status.reason === 'ProviderFailed';
    });
    provider.errorHook = undefined;
    const events = await core.listNamespacedEvent({
      namespace: ns.name,
      fieldSelector: 'involvedObject.name=doomed',
    });
    const failures = events.items.filter((e) => e.reason === 'ProviderCreateFailed');
    expect(failures.length).toBeGreaterThan(0);
    expect(failures[0]?.message).toContain('backend says no');
  });

  it('deletes an instance whose pod is gone once it is older than 30 s, and no other', async () => {
    const before = (await provider.list()).length;
    await provider.create({
      metadata: { name: 'ghost', namespace: ns.name, uid: 'ghost-uid' },
      spec: { nodeName, containers: [{ name: 'c' }] },
    });
    expect(await vn.pods.collectOrphans(Date.now())).toBe(0);
    expect(await vn.pods.collectOrphans(Date.now() + 31_000)).toBe(1);
    expect((await provider.list()).length).toBe(before);
    expect((await provider.list()).some((i) => i.key.uid === 'ghost-uid')).toBe(false);
  });

  it('refreshes the projected service-account token of running pods', async () => {
    const [p] = await pods('app=burst');
    const tokenOf = () => {
      const volumes = provider.sandbox(p!.metadata!.uid!)!.inputs.volumes ?? {};
      const access = Object.entries(volumes).find(([name]) => name.startsWith('kube-api-access'))?.[1];
      return access?.files.find((f) => f.path === 'token')?.content.toString();
    };
    const first = tokenOf();
    expect(first?.split('.')).toHaveLength(3); // a JWT from the TokenRequest API
    await new Promise((r) => setTimeout(r, 1100)); // tokens carry iat in seconds
    expect(await vn.pods.refreshVolumes()).toBeGreaterThan(0);
    const second = tokenOf();
    expect(second?.split('.')).toHaveLength(3);
    expect(second).not.toBe(first);
  });

  it('refuses anonymous and unauthorised kubelet API calls', async () => {
    expect(await kubeletGet(port, '/pods')).toBe(401);
    await core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'nobody' } } });
    const token = (
      await core.createNamespacedServiceAccountToken({
        namespace: ns.name,
        name: 'nobody',
        body: { spec: { audiences: [] } },
      })
    ).status!.token;
    expect(await kubeletGet(port, '/pods', { token })).toBe(403);
    expect(await kubeletGet(port, '/exec/x/y/z', { token })).toBe(403);
    // The apiserver's kubelet client certificate (what it presents for logs/exec, and what metrics-server
    // would use) is authenticated by the cluster's client CA and authorised by a SubjectAccessReview.
    const pki = (f: string) => readFileSync(join(dirname(cluster.kubeconfigPath), 'pki', f));
    const cert = { cert: pki('apiserver-kubelet-client.crt'), key: pki('apiserver-kubelet-client.key') };
    expect(await kubeletGet(port, '/pods', cert)).toBe(200);
    expect(await kubeletGet(port, '/stats/summary', cert)).toBe(200);
    expect(await kubeletGet(port, '/metrics/resource', cert)).toBe(200);
  });

  it('turns NotReady when the provider stops answering, and Ready again when it is back', async () => {
    provider.failPing = true;
    const ready = async () =>
      (await core.readNode({ name: nodeName })).status?.conditions?.find((c) => c.type === 'Ready');
    await waitFor('node NotReady', 60_000, async () => (await ready())?.status === 'False');
    expect((await ready())?.reason).toBe('ProviderUnreachable');
    provider.failPing = false;
    await waitFor('node Ready again', 60_000, async () => (await ready())?.status === 'True');
  });
});
