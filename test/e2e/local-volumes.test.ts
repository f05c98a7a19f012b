/**
 * e2e (issue 6, item 1: volumes "refreshed"): a running local sandbox sees its projected service-account token
 * refreshed and a ConfigMap change arrive, through the virtual node's volume refresh and the local provider's
 * `updateVolumes`, without a restart. Needs root, like every local-provider test.
 */
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNotFound, sandboxKey, type SandboxKey } from '../../operator/providers/types.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { tearDownLocalNode, startLocalNode, type LocalNode } from '../support/local-network.ts';
import { createTestNamespace } from '../support/namespace.ts';

const nodeName = 'spillway-local-volumes-e2e';
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;

/** Runs `command` in the pod's container through the provider (the kubelet API's exec path); its stdout. */
async function execOut(key: SandboxKey, command: string[]): Promise<string> {
  let out = '';
  const stdout = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  const { exitCode } = await local.provider.exec(key, 'app', command, { stdout, tty: false });
  expect(exitCode, `${command.join(' ')} → ${out}`).toBe(0);
  return out;
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  local = await startLocalNode(cluster.kc, nodeName);
  ns = await createTestNamespace(cluster.kc, 'e2e-volumes');
}, 180_000);

afterAll(async () => {
  await ns?.remove();
  if (cluster) await tearDownLocalNode(cluster.kc, nodeName, local);
}, 120_000);

describe('local provider volume refresh', () => {
  it('carries a ConfigMap change and a new service-account token into a running sandbox', async () => {
    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'settings' }, data: { greeting: 'hello', farewell: 'bye' } },
    });
    const body: V1Pod = {
      metadata: { name: 'reader' },
      spec: {
        nodeSelector: { 'kubernetes.io/hostname': nodeName },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
        terminationGracePeriodSeconds: 1,
        volumes: [
          { name: 'settings', configMap: { name: 'settings' } },
          { name: 'scratch', emptyDir: {} },
        ],
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sh', '-c', 'echo mine > /scratch/own; exec sleep 3600'],
            volumeMounts: [
              { name: 'settings', mountPath: '/etc/settings', readOnly: true },
              { name: 'scratch', mountPath: '/scratch' },
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
    const key = sandboxKey(pod!);
    const tokenPath = '/var/run/secrets/kubernetes.io/serviceaccount/token';
    expect(await execOut(key, ['cat', '/etc/settings/greeting'])).toBe('hello');
    expect(await execOut(key, ['ls', '/etc/settings'])).toBe('farewell\ngreeting\n');
    const firstToken = await execOut(key, ['cat', tokenPath]);
    expect(firstToken.split('.')).toHaveLength(3);
    const started = (await local.provider.status(key)).containers[0]!.state;

    await core.replaceNamespacedConfigMap({
      name: 'settings',
      namespace: ns.name,
      body: { metadata: { name: 'settings' }, data: { greeting: 'bonjour' } },
    });
    // The node caches ConfigMap reads for a few seconds; refresh as its periodic sync would, until it lands.
    await waitFor('the new ConfigMap content inside the sandbox', 30_000, async () => {
      expect(await local.node.pods.refreshVolumes()).toBeGreaterThan(0);
      return (await execOut(key, ['cat', '/etc/settings/greeting'])) === 'bonjour';
    });
    expect(await execOut(key, ['ls', '/etc/settings'])).toBe('greeting\n'); // a removed key's file goes
    const secondToken = await execOut(key, ['cat', tokenPath]);
    expect(secondToken.split('.')).toHaveLength(3);
    expect(secondToken).not.toBe(firstToken); // issued later: another iat and exp
    // The same container run (no restart), and the emptyDir untouched even when named in an update.
    const now = (await local.provider.status(key)).containers[0]!;
    expect(now.restartCount).toBe(0);
    expect(now.state).toEqual(started);
    await local.provider.updateVolumes(key, {
      scratch: { files: [{ path: 'own', content: Buffer.from('overwritten') }] },
    });
    expect(await execOut(key, ['cat', '/scratch/own'])).toBe('mine\n');
  });

  it('rejects an update for a pod it does not run with NotFound', async () => {
    const err = await local.provider
      .updateVolumes({ uid: 'no-such-uid', namespace: ns.name, name: 'ghost' }, {})
      .catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
  });
});
