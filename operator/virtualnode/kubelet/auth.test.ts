import type { AddressInfo } from 'node:net';
import type { Server } from 'node:https';
import type { V1SubjectAccessReview, V1SubjectAccessReviewSpec } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { componentLogger } from '../../shared/log.ts';
import { loopbackServingCert } from './api.fixtures.ts';
import { startKubeletApi } from './api.ts';
import { KubeletAuth, subresourceFor, verbFor } from './auth.ts';
import { runRemoteCommand } from './exec-client.ts';

type Attributes = NonNullable<V1SubjectAccessReviewSpec['resourceAttributes']>;

/**
 * A KubeletAuth whose TokenReview knows one token, `monitoring`, and whose SubjectAccessReview allows only
 * what `allowed` says; every review asked is recorded.
 */
function authWith(allowed: (a: Attributes) => boolean) {
  const asked: Attributes[] = [];
  const auth = new KubeletAuth({
    nodeName: 'n',
    authentication: {
      createTokenReview: async ({ body }: { body: { spec: { token?: string } } }) => ({
        status:
          body.spec.token === 'monitoring'
            ? { authenticated: true, user: { username: 'system:serviceaccount:mon:scraper', groups: [] } }
            : { authenticated: false },
      }),
    } as unknown as ConstructorParameters<typeof KubeletAuth>[0]['authentication'],
    authorization: {
      createSubjectAccessReview: async ({ body }: { body: V1SubjectAccessReview }) => {
        const a = body.spec.resourceAttributes!;
        asked.push(a);
        return { ...body, status: { allowed: allowed(a) } };
      },
    } as unknown as ConstructorParameters<typeof KubeletAuth>[0]['authorization'],
  });
  return { auth, asked };
}

/** A monitoring role: `get` on every nodes subresource, nothing else (what read-only scrapers are given). */
const getOnly = (a: Attributes) => a.verb === 'get';

describe('the verb and subresource a kubelet API request needs', () => {
  it.each([
    // Streaming paths run commands or reach into a pod: create, whatever the method.
    ['GET', '/exec/default/web/app', 'create', 'proxy'],
    ['POST', '/exec/default/web/app', 'create', 'proxy'],
    ['GET', '/attach/default/web/app', 'create', 'proxy'],
    ['GET', '/portForward/default/web', 'create', 'proxy'],
    ['GET', '/run/default/web/app', 'create', 'proxy'],
    ['GET', '//exec/default/web/app', 'create', 'proxy'],
    ['PUT', '/exec/default/web/app', 'create', 'proxy'],
    // Everything else maps the method, as the kubelet does.
    ['GET', '/containerLogs/default/web/app', 'get', 'proxy'],
    ['GET', '/pods', 'get', 'pods'],
    ['GET', '/runningpods/', 'get', 'pods'],
    ['GET', '/stats/summary', 'get', 'stats'],
    ['GET', '/metrics/resource', 'get', 'metrics'],
    ['GET', '/healthz', 'get', 'healthz'],
    ['POST', '/pods', 'create', 'pods'],
    ['DELETE', '/anything', 'delete', 'proxy'],
    ['PATCH', '/anything', 'patch', 'proxy'],
  ])('%s %s needs %s on nodes/%s', (method, path, verb, subresource) => {
    expect(verbFor(method, path)).toBe(verb);
    expect(subresourceFor(path).subresource).toBe(subresource);
  });
});

describe('KubeletAuth', () => {
  it('asks for create on nodes/proxy for a GET (WebSocket-style) exec, and refuses a get-only token', async () => {
    const { auth, asked } = authWith(getOnly);
    const user = { username: 'system:serviceaccount:mon:scraper', groups: [] };
    expect(await auth.authorize(user, 'GET', '/exec/default/web/app')).toBe(false);
    expect(asked).toEqual([{ verb: 'create', resource: 'nodes', subresource: 'proxy', name: 'n' }]);
    // The same token still reads what it was given get for.
    expect(await auth.authorize(user, 'GET', '/containerLogs/default/web/app')).toBe(true);
    expect(await auth.authorize(user, 'GET', '/stats/summary')).toBe(true);
  });
});

describe('kubelet API with a nodes/proxy get token', () => {
  let server: Server;
  let port: number;
  let asked: Attributes[];
  const POD = {
    metadata: { name: 'web', namespace: 'default', uid: 'uid-web' },
    spec: { nodeName: 'n', containers: [{ name: 'app' }] },
  };

  beforeAll(async () => {
    const serving = await loopbackServingCert();
    const provider = new FakeProvider();
    await provider.create(POD);
    const made = authWith(getOnly);
    asked = made.asked;
    server = await startKubeletApi({
      nodeName: 'n',
      provider,
      auth: made.auth,
      pod: (namespace, name) => (namespace === 'default' && name === 'web' ? POD : undefined),
      pods: () => [POD],
      tls: serving,
      host: '127.0.0.1',
      port: 0,
      logger: componentLogger('test'),
    });
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it.each(['GET', 'POST'])('cannot open an exec with a %s upgrade: 403, nothing runs', async (method) => {
    const result = await runRemoteCommand({
      port,
      method,
      path: '/exec/default/web/app?command=env&output=1&error=1',
      headers: { Authorization: 'Bearer monitoring' },
      tls: { rejectUnauthorized: false },
    });
    expect(result.httpStatus).toBe(403);
    expect(result.body).toContain('verb=create, resource=nodes, subresource=proxy');
    // Only create was asked about (the decision is cached, so the second request asks nothing new).
    expect(asked).toEqual([{ verb: 'create', resource: 'nodes', subresource: 'proxy', name: 'n' }]);
  });

  it.each(['/%65xec/default/web/app', '/exec%2Fdefault/web/app'])(
    'cannot open an exec spelled %s either: it is authorised as it is routed',
    async (path) => {
      const result = await runRemoteCommand({
        port,
        method: 'GET',
        path: `${path}?command=env&output=1&error=1`,
        headers: { Authorization: 'Bearer monitoring' },
        tls: { rejectUnauthorized: false },
      });
      expect(result.httpStatus).toBe(403);
    },
  );
});
