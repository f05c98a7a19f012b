/**
 * e2e (issue 15, point 2: pulls with imagePullSecrets from a registry that requires auth): a second registry on
 * 127.0.0.1 with htpasswd holds the catalog's busybox; a user makes a `docker-registry` Secret with kubectl and
 * names it in `imagePullSecrets`. The burst pod on the `local` virtual node pulls with it and runs; a pod without
 * the Secret, and one whose Secret has a wrong password, stay Pending with the kubelet's pull waiting reasons and
 * a Warning Event naming the image, never Failed. Needs root, like every local-provider test.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type CoreV1Event, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { defaultBinDir, LocalCluster, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { allowRegistry, containerdPaths } from '../support/containerd.ts';
import { startLocalNode, tearDownLocalNode, type LocalNode } from '../support/local-network.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';
import { seedImages, startRegistry, type RunningRegistry } from '../support/registry.ts';

const nodeName = 'spillway-local-pull-secrets-e2e';
const execFileAsync = promisify(execFile);
const auth = { user: 'puller', password: 'pull-secret' };
/** The cluster whose containerd the local provider uses (its hosts list decides which registries it may pull from). */
const localCluster = new LocalCluster();
const dir = mkdtempSync(join(tmpdir(), 'spillway-pull-secrets-'));
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode | undefined;
let registry: RunningRegistry | undefined;
/** busybox in the registry that requires credentials. */
let privateBusybox: string;

/** Runs kubectl against the test cluster, as a user would. */
async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    `${defaultBinDir}/kubectl`,
    ['--kubeconfig', cluster.kubeconfigPath, ...args],
    { encoding: 'utf8', timeout: 30_000 },
  );
  return stdout;
}

/** A `kubernetes.io/dockerconfigjson` Secret for the private registry, made as the Kubernetes docs tell users to. */
async function dockerRegistrySecret(name: string, password: string): Promise<void> {
  await kubectl(
    'create',
    'secret',
    'docker-registry',
    name,
    '-n',
    ns.name,
    `--docker-server=${registry!.host}`,
    `--docker-username=${auth.user}`,
    `--docker-password=${password}`,
  );
}

/**
 * Creates a burst pod on the local virtual node running the private busybox. `Always` pulls: every pod asks the
 * registry, so the image one pod pulled never lets another (without valid credentials) run from containerd's store.
 */
async function createPod(name: string, pullSecret?: string): Promise<void> {
  await core.createNamespacedPod({
    namespace: ns.name,
    body: {
      metadata: { name },
      spec: {
        nodeSelector: { 'kubernetes.io/hostname': nodeName },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
        terminationGracePeriodSeconds: 2,
        restartPolicy: 'Never',
        ...(pullSecret ? { imagePullSecrets: [{ name: pullSecret }] } : {}),
        containers: [
          {
            name: 'app',
            image: privateBusybox,
            imagePullPolicy: 'Always',
            command: ['sh', '-c', 'echo pulled with the secret; exec sleep 3600'],
          },
        ],
      },
    },
  });
}

async function pod(name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ name, namespace: ns.name });
}

async function warnings(name: string): Promise<CoreV1Event[]> {
  const events = await core.listNamespacedEvent({
    namespace: ns.name,
    fieldSelector: `involvedObject.name=${name},type=Warning`,
  });
  return events.items;
}

/**
 * Waits for the pull failure a user sees: the container waiting in ErrImagePull or ImagePullBackOff and a Warning
 * Event `Failed to pull image "<image>": <error>`. Returns the pod and that Event's message.
 */
async function pullFailure(name: string): Promise<{ pod: V1Pod; message: string }> {
  const failed = `Failed to pull image "${privateBusybox}": `;
  let message = '';
  await waitFor(`a pull failure of ${name} as an Event`, 90_000, async () => {
    message = (await warnings(name)).find((e) => e.message?.startsWith(failed))?.message ?? '';
    return message !== '';
  });
  let last: V1Pod | undefined;
  await waitFor(`${name} waiting on its image`, 60_000, async () => {
    last = await pod(name);
    const reason = last.status?.containerStatuses?.[0]?.state?.waiting?.reason;
    return reason === 'ErrImagePull' || reason === 'ImagePullBackOff';
  });
  return { pod: last!, message };
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  registry = await startRegistry({ dir, binDir: defaultBinDir, port: await freePort(), auth });
  // containerd pulls only from listed registries (test/support/containerd.ts); hosts.toml is read on each pull.
  allowRegistry(localCluster.dir, registry.host);
  await seedImages(registry.host, ['busybox'], { username: auth.user, password: auth.password });
  privateBusybox = imageRef('busybox', registry.host);
  local = await startLocalNode(cluster.kc, nodeName);
  ns = await createTestNamespace(cluster.kc, 'e2e-pull-secrets');
}, 180_000);

afterAll(async () => {
  await ns?.remove();
  await tearDownLocalNode(cluster.kc, nodeName, local);
  // Only the private registry's names (tag and digest): the cluster registry's busybox, same content, stays.
  if (registry) {
    const ctr = (...args: string[]) =>
      execFileAsync(join(defaultBinDir, 'ctr'), [
        '--address',
        containerdPaths(localCluster.dir).socket,
        '--namespace',
        'k8s.io',
        'images',
        ...args,
      ]);
    const names = (await ctr('ls', '-q')).stdout.split('\n');
    const ours = names.filter((n) => n.startsWith(`${registry!.host}/`));
    if (ours.length > 0) await ctr('rm', ...ours);
    await registry.stop();
    rmSync(join(containerdPaths(localCluster.dir).certsDir, registry.host), { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('image pull secrets on the local virtual node', () => {
  it('runs a pod whose imagePullSecrets hold the registry credentials', async () => {
    await dockerRegistrySecret('regcred', auth.password);
    await createPod('with-secret', 'regcred');
    let p: V1Pod | undefined;
    // Ends on a pull failure too: with valid credentials there should be none, and its message is the evidence.
    await waitFor('with-secret Running, Failed, or failing to pull', 90_000, async () => {
      p = await pod('with-secret');
      const reason = p.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
      return ['Running', 'Failed'].includes(p.status?.phase ?? '') || reason.includes('ImagePull');
    });
    expect(p!.status?.phase, JSON.stringify(p!.status?.containerStatuses)).toBe('Running');
    await waitFor(
      'with-secret logging',
      30_000,
      async () => (await kubectl('logs', '-n', ns.name, 'with-secret')) !== '',
    );
    expect(await kubectl('logs', '-n', ns.name, 'with-secret')).toBe('pulled with the secret\n');
    expect(await warnings('with-secret')).toEqual([]);
  });

  it('keeps a pod without the secret Pending on its image, with a Warning Event naming it', async () => {
    await createPod('without-secret');
    const { pod: p, message } = await pullFailure('without-secret');
    expect(p.status?.phase).toBe('Pending');
    // containerd's words for a registry that asked for credentials and got none.
    expect(message).toMatch(/no basic auth credentials/);
  });

  it('keeps a pod whose secret has a wrong password Pending on its image, with a Warning Event naming it', async () => {
    await dockerRegistrySecret('wrongcred', 'not-the-password');
    await createPod('wrong-password', 'wrongcred');
    const { pod: p, message } = await pullFailure('wrong-password');
    expect(p.status?.phase).toBe('Pending');
    // The registry's answer to the Secret's password, as a kubelet reports it (it tries the Secret's credentials
    // for the image's registry and reports their failure), not an anonymous retry's "no credentials".
    expect(message).toMatch(/401 Unauthorized/);
    // Still Pending once the kubelet-style back-off has been through another attempt: never Failed.
    await waitFor('wrong-password in ImagePullBackOff', 60_000, async () => {
      const s = (await pod('wrong-password')).status;
      return s?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff';
    });
    expect((await pod('wrong-password')).status?.phase).toBe('Pending');
  });
});
