/**
 * The kubelet API's answers about the pods it runs: `/containerLogs` with `previous` (the kubelet's 400 and
 * message when there is no previous run), unknown containers, and `/runningpods/`.
 */
import { request, type Server } from 'node:https';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { sandboxKey } from '../../providers/types.ts';
import { componentLogger } from '../../shared/log.ts';
import { loopbackServingCert } from './api.fixtures.ts';
import type { KubeletAuth } from './auth.ts';
import { startKubeletApi } from './api.ts';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, rejectUnauthorized: false, headers: { Authorization: 'Bearer good' } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const pod = (name: string, uid: string, restartPolicy = 'Always'): V1Pod => ({
  metadata: { name, namespace: 'shop', uid },
  spec: { restartPolicy, containers: [{ name: 'app', image: 'nginx:1.27' }] },
});

describe('kubelet API pod answers', () => {
  let server: Server;
  let port: number;
  const provider = new FakeProvider();
  const pods = new Map<string, V1Pod>();

  beforeAll(async () => {
    const serving = await loopbackServingCert();
    const auth = {
      authenticate: async () => ({ username: 'u', groups: [] }),
      authorize: async () => true,
    } as unknown as KubeletAuth;
    server = await startKubeletApi({
      nodeName: 'n',
      provider,
      auth,
      pod: (_ns, name) => pods.get(name),
      pods: () => [...pods.values()],
      tls: serving,
      host: '127.0.0.1',
      port: 0,
      logger: componentLogger('test'),
    });
    port = (server.address() as { port: number }).port;
    provider.script('*', '*', { logs: ['first run'] });
    for (const p of [pod('web-1', 'u1'), pod('web-2', 'u2'), pod('job-1', 'u3', 'Never')]) {
      pods.set(p.metadata!.name!, p);
      await provider.create(p);
    }
    // job-1 has finished: no running container, so not a running pod.
    provider.exitContainer(sandboxKey(pods.get('job-1')!), 'app', 0);
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('answers logs --previous without a previous run with the kubelet’s 400 and message', async () => {
    expect(await get(port, '/containerLogs/shop/web-1/app?previous=true')).toEqual({
      status: 400,
      body: 'previous terminated container "app" in pod "web-1" not found',
    });
  });

  it('serves the previous run’s logs once the container has restarted', async () => {
    const key = sandboxKey(pods.get('web-2')!);
    provider.exitContainer(key, 'app', 1);
    provider.appendLog(key, 'app', 'second run');
    expect(await get(port, '/containerLogs/shop/web-2/app?previous=true')).toEqual({
      status: 200,
      body: 'first run\n',
    });
    expect((await get(port, '/containerLogs/shop/web-2/app')).body).toBe('second run\n');
  });

  it('answers logs of a container that has not started with the kubelet’s 400 and its waiting reason', async () => {
    const waiting: V1Pod = {
      ...pod('pending-1', 'u9'),
      status: {
        containerStatuses: [
          {
            name: 'app',
            image: 'nginx:1.27',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'CreateContainerConfigError', message: 'secret "creds" not found' } },
          },
        ],
      },
    };
    pods.set('pending-1', waiting); // no sandbox: its config could not be built
    expect(await get(port, '/containerLogs/shop/pending-1/app')).toEqual({
      status: 400,
      body: 'container "app" in pod "pending-1" is waiting to start: CreateContainerConfigError',
    });
  });

  it('answers a container the pod does not have with the kubelet’s 400', async () => {
    expect(await get(port, '/containerLogs/shop/web-1/nope')).toEqual({
      status: 400,
      body: 'container nope is not valid for pod web-1',
    });
  });

  it('lists the running pods with their running containers at /runningpods/', async () => {
    const res = await get(port, '/runningpods/');
    expect(res.status).toBe(200);
    const list = JSON.parse(res.body) as { kind: string; items: V1Pod[] };
    expect(list.kind).toBe('PodList');
    expect(list.items.map((p) => p.metadata?.name).sort()).toEqual(['web-1', 'web-2']);
    expect(list.items.find((p) => p.metadata?.name === 'web-1')).toMatchObject({
      metadata: { name: 'web-1', namespace: 'shop', uid: 'u1' },
      spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] },
    });
  });
});
