import { Agent, request } from 'node:https';
import type { Server } from 'node:https';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { componentLogger } from '../../shared/log.ts';
import { loopbackServingCert } from './api.fixtures.ts';
import type { KubeletAuth } from './auth.ts';
import { startKubeletApi } from './api.ts';
import { runRemoteCommand } from './exec-client.ts';
import { KUBELET_ROUTES } from './routes.ts';

function get(
  port: number,
  path: string,
  token?: string,
  agent?: Agent,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        rejectUnauthorized: false,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        ...(agent && { agent }),
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
  const registry = new Registry();

  beforeAll(async () => {
    const serving = await loopbackServingCert();
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
      tls: serving,
      host: '127.0.0.1',
      port: 0,
      logger: componentLogger('test'),
      registry,
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

  /** Recorded requests by `route code`. */
  async function recorded(): Promise<Map<string, number>> {
    const metric = registry.getSingleMetric('spillway_kubelet_request_duration_seconds')!;
    const counts = (await metric.get()).values.filter((v) =>
      (v as { metricName?: string }).metricName?.endsWith('_count'),
    );
    return new Map(counts.map((v) => [`${v.labels.route} ${v.labels.code}`, v.value]));
  }
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

  it('labels its request metrics with a fixed set of routes, whatever paths clients ask for', async () => {
    const before = total(await recorded());
    const agent = new Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });
    const paths = Array.from({ length: 1000 }, randomPath);
    for (let i = 0; i < paths.length; i += 50) {
      await Promise.all(
        paths.slice(i, i + 50).map((p, j) => get(port, p, j % 2 ? 'good' : undefined, agent)),
      );
    }
    agent.destroy();
    const after = await recorded();
    // Every request was recorded, under the fixed routes only (and the few status codes answered).
    expect(total(after) - before).toBe(1000);
    const routes = new Set([...after.keys()].map((k) => k.split(' ')[0]!));
    expect([...routes].filter((r) => !(KUBELET_ROUTES as readonly string[]).includes(r))).toEqual([]);
    expect(routes.has('other')).toBe(true);
    const codes = new Set([...after.keys()].map((k) => k.split(' ')[1]));
    expect([...codes].filter((c) => !['200', '400', '401', '404'].includes(c!))).toEqual([]);
  });

  it('records refused upgrades under their route and status', async () => {
    const before = (await recorded()).get('exec 401') ?? 0;
    const result = await runRemoteCommand({
      port,
      path: '/exec/default/web/app?command=env&output=1',
      tls: { rejectUnauthorized: false },
    });
    expect(result.httpStatus).toBe(401);
    expect((await recorded()).get('exec 401')).toBe(before + 1);
  });
});

/** A random path: sometimes under a known route, mostly junk, with random depth and characters. */
function randomPath(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%';
  const pick = <T>(items: readonly T[]) => items[Math.floor(Math.random() * items.length)]!;
  const segment = () =>
    Array.from({ length: 1 + Math.floor(Math.random() * 12) }, () => pick([...alphabet])).join('');
  const prefix = Math.random() < 0.3 ? `/${pick(KUBELET_ROUTES)}` : '';
  const depth = Math.floor(Math.random() * 4) + (prefix ? 0 : 1);
  return prefix + Array.from({ length: depth }, () => '/' + segment()).join('');
}
