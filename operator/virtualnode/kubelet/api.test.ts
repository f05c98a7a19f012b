import { request } from 'node:https';
import type { Server } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { componentLogger } from '../../shared/log.ts';
import { createCA, issueCert } from '../../shared/pki.ts';
import type { KubeletAuth } from './auth.ts';
import { startKubeletApi } from './api.ts';

function get(port: number, path: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        rejectUnauthorized: false,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      },
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

describe('kubelet API', () => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    const ca = await createCA('kubelet-test', 3600_000);
    const serving = await issueCert(ca, {
      subject: 'CN=node',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validForMs: 3600_000,
    });
    // A bearer token "good" authenticates; everything authenticated is authorised.
    const auth = {
      authenticate: async (req: { headers: { authorization?: string } }) =>
        req.headers.authorization === 'Bearer good' ? { username: 'u', groups: [] } : undefined,
      authorize: async () => true,
    } as unknown as KubeletAuth;
    server = await startKubeletApi({
      nodeName: 'n',
      provider: new FakeProvider(),
      auth,
      pod: () => undefined,
      pods: () => [],
      tls: { cert: serving.certPem, key: serving.keyPem },
      host: '127.0.0.1',
      port: 0,
      logger: componentLogger('test'),
    });
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('answers anonymous callers 401, whatever the path', async () => {
    expect((await get(port, '/pods')).status).toBe(401);
    expect((await get(port, '/%')).status).toBe(400);
  });

  it('answers a malformed path with 400 and keeps serving', async () => {
    for (const path of ['/%', '/containerLogs/%zz/a/b', '//']) {
      const res = await get(port, path, 'good');
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.status, path).toBeLessThan(500);
    }
    expect(await get(port, '/healthz', 'good')).toEqual({ status: 200, body: 'ok' });
  });

  it('says 404 for a pod that is not on this node', async () => {
    const res = await get(port, '/containerLogs/shop/web-1/app', 'good');
    expect(res.status).toBe(404);
    expect(res.body).toContain('pod shop/web-1 not found on node n');
  });
});
