/**
 * e2e (issue 15, point 4: volumes as mounts, refreshed in place): a burst pod of the `local` provider, run from
 * the registry's busybox image, sees its configMap, secret, downwardAPI, projected and emptyDir volumes mounted
 * where its spec says, subPath mounts of one file or directory, read-only mounts refusing writes, and a ConfigMap
 * change and a new service-account token arriving without a restart (the virtual node's volume refresh and the
 * provider's `updateVolumes`). Needs root, like every local-provider test.
 */
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { isNotFound, sandboxKey, type SandboxKey } from '../../operator/providers/types.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { tearDownLocalNode, startLocalNode, type LocalNode } from '../support/local-network.ts';
import { createTestNamespace } from '../support/namespace.ts';

const nodeName = 'spillway-local-volumes-e2e';
const BUSYBOX = imageRef('busybox', inject('registry'));
const tokenPath = '/var/run/secrets/kubernetes.io/serviceaccount/token';
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;
let key: SandboxKey;

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

/** Runs `command` in the pod's container through the provider (the kubelet API's exec path). */
async function run(command: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const out = sink();
  const err = sink();
  const { exitCode } = await local.provider.exec(key, 'app', command, {
    stdout: out.stream,
    stderr: err.stream,
    tty: false,
  });
  return { exitCode, stdout: out.text(), stderr: err.text() };
}

/** The stdout of `command`, which must succeed. */
async function execOut(...command: string[]): Promise<string> {
  const r = await run(command);
  expect(r.exitCode, `${command.join(' ')} → ${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Tries to write a file at `path` in the container: the shell's error when it cannot. */
async function writeRefused(path: string): Promise<string> {
  const r = await run(['sh', '-c', `echo intruder > ${path}`]);
  expect(r.exitCode, `writing ${path} should have been refused`).not.toBe(0);
  return r.stderr;
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  local = await startLocalNode(cluster.kc, nodeName);
  ns = await createTestNamespace(cluster.kc, 'e2e-volumes');
  await core.createNamespacedConfigMap({
    namespace: ns.name,
    body: { metadata: { name: 'settings' }, data: { greeting: 'hello', farewell: 'bye' } },
  });
  await core.createNamespacedSecret({
    namespace: ns.name,
    body: { metadata: { name: 'creds' }, stringData: { password: 's3cret' } },
  });
  const body: V1Pod = {
    metadata: { name: 'reader', labels: { app: 'reader', tier: 'e2e' } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': nodeName },
      tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
      terminationGracePeriodSeconds: 1,
      volumes: [
        { name: 'settings', configMap: { name: 'settings' } },
        { name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } },
        {
          name: 'podinfo',
          downwardAPI: {
            items: [
              { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
              { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
            ],
          },
        },
        {
          name: 'all',
          projected: {
            sources: [
              { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } },
              { configMap: { name: 'settings', items: [{ key: 'greeting', path: 'settings/greeting' }] } },
              { secret: { name: 'creds' } },
              {
                downwardAPI: {
                  items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }],
                },
              },
            ],
          },
        },
        { name: 'scratch', emptyDir: {} },
      ],
      containers: [
        {
          name: 'app',
          image: BUSYBOX,
          command: ['sh', '-c', 'echo mine > /scratch/own; exec sleep 3600'],
          volumeMounts: [
            { name: 'settings', mountPath: '/etc/settings', readOnly: true },
            { name: 'creds', mountPath: '/etc/creds' },
            { name: 'podinfo', mountPath: '/etc/podinfo' },
            { name: 'all', mountPath: '/etc/all' },
            { name: 'scratch', mountPath: '/scratch' },
            { name: 'scratch', mountPath: '/ro-scratch', readOnly: true },
            // One key of the ConfigMap as one file, and a directory of the emptyDir (created on mount).
            { name: 'settings', mountPath: '/etc/greeting.txt', subPath: 'greeting' },
            { name: 'scratch', mountPath: '/data', subPath: 'sub' },
          ],
        },
      ],
    },
  };
  await core.createNamespacedPod({ namespace: ns.name, body });
  let pod: V1Pod | undefined;
  await waitFor('pod reader Running', 90_000, async () => {
    pod = await core.readNamespacedPod({ name: 'reader', namespace: ns.name });
    return pod.status?.phase === 'Running';
  });
  key = sandboxKey(pod!);
}, 180_000);

afterAll(async () => {
  await ns?.remove();
  if (cluster) await tearDownLocalNode(cluster.kc, nodeName, local);
}, 120_000);

describe('local provider volumes in a container run from an image', () => {
  it('mounts configMap, secret, downwardAPI, projected and emptyDir volumes where the spec says', async () => {
    expect(await execOut('cat', '/etc/settings/greeting')).toBe('hello');
    expect(await execOut('ls', '/etc/settings')).toBe('farewell\ngreeting\n');
    expect(await execOut('cat', '/etc/creds/password')).toBe('s3cret');
    // defaultMode, on the file the link resolves to.
    expect(await execOut('stat', '-L', '-c', '%a', '/etc/creds/password')).toBe('400\n');
    expect(await execOut('cat', '/etc/podinfo/name')).toBe('reader');
    expect(await execOut('cat', '/etc/podinfo/labels')).toBe('app="reader"\ntier="e2e"');
    expect(await execOut('cat', '/etc/all/settings/greeting')).toBe('hello');
    expect(await execOut('cat', '/etc/all/password')).toBe('s3cret');
    expect(await execOut('cat', '/etc/all/namespace')).toBe(ns.name);
    expect((await execOut('cat', '/etc/all/token')).split('.')).toHaveLength(3);
    expect((await execOut('cat', tokenPath)).split('.')).toHaveLength(3);
    // The emptyDir: what the container wrote at start, and writable from exec too.
    expect(await execOut('cat', '/scratch/own')).toBe('mine\n');
    await execOut('sh', '-c', 'echo more > /scratch/more');
    expect(await execOut('cat', '/scratch/more')).toBe('more\n');
  });

  it('mounts a subPath: one key as one file, and a directory of an emptyDir', async () => {
    expect(await execOut('cat', '/etc/greeting.txt')).toBe('hello');
    await execOut('sh', '-c', 'echo through-subpath > /data/file');
    // The same file, seen through the whole emptyDir.
    expect(await execOut('cat', '/scratch/sub/file')).toBe('through-subpath\n');
  });

  it('refuses writes to read-only mounts, and to configMap and secret volumes', async () => {
    expect(await writeRefused('/etc/settings/new')).toMatch(/Read-only file system/);
    expect(await writeRefused('/ro-scratch/new')).toMatch(/Read-only file system/);
    // As a kubelet mounts them: API data volumes are read-only even without readOnly.
    expect(await writeRefused('/etc/creds/new')).toMatch(/Read-only file system/);
    expect(await writeRefused('/etc/all/new')).toMatch(/Read-only file system/);
    // The emptyDir seen read-only is the same one: what /scratch holds.
    expect(await execOut('cat', '/ro-scratch/own')).toBe('mine\n');
  });

  it('carries a ConfigMap change and a new service-account token into the running container', async () => {
    const firstToken = await execOut('cat', tokenPath);
    const started = (await local.provider.status(key)).containers[0]!.state;
    await core.replaceNamespacedConfigMap({
      name: 'settings',
      namespace: ns.name,
      body: { metadata: { name: 'settings' }, data: { greeting: 'bonjour' } },
    });
    // The node caches ConfigMap reads for a few seconds; refresh as its periodic sync would, until it lands.
    await waitFor('the new ConfigMap content inside the container', 30_000, async () => {
      expect(await local.node.pods.refreshVolumes()).toBeGreaterThan(0);
      return (await execOut('cat', '/etc/settings/greeting')) === 'bonjour';
    });
    // A removed key's file goes (soft: the checks below still run and report).
    expect
      .soft(
        await execOut('ls', '/etc/settings'),
        await execOut('sh', '-c', 'ls -la /etc/settings/; grep . /etc/settings/* || true'),
      )
      .toBe('greeting\n');
    expect(await execOut('cat', '/etc/all/settings/greeting')).toBe('bonjour'); // projected too
    // A subPath mount keeps the file it was given at start, as a kubelet's does.
    expect(await execOut('cat', '/etc/greeting.txt')).toBe('hello');
    const secondToken = await execOut('cat', tokenPath);
    expect(secondToken.split('.')).toHaveLength(3);
    expect(secondToken).not.toBe(firstToken); // issued later: another iat and exp
    // The same container run (no restart), and the emptyDir untouched even when named in an update.
    const now = (await local.provider.status(key)).containers[0]!;
    expect(now.restartCount).toBe(0);
    expect(now.state).toEqual(started);
    await local.provider.updateVolumes(key, {
      scratch: { files: [{ path: 'own', content: Buffer.from('overwritten') }] },
    });
    expect(await execOut('cat', '/scratch/own')).toBe('mine\n');
  });

  it('rejects an update for a pod it does not run with NotFound', async () => {
    const err = await local.provider
      .updateVolumes({ uid: 'no-such-uid', namespace: ns.name, name: 'ghost' }, {})
      .catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
  });
});
