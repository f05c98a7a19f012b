import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AuthenticationV1Api, AuthorizationV1Api, V1SubjectAccessReview } from '@kubernetes/client-node';
import { Registry, register as globalRegistry } from 'prom-client';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesMetricsAuth, metricsServingCertificate } from './metrics-auth.ts';
import { informerRestarts, registry, serveMetrics, workqueueMetrics, type MetricsServer } from './metrics.ts';

describe('serveMetrics', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves the private registry, with process metrics, on loopback', async () => {
    server = await serveMetrics({ port: 0 });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
    workqueueMetrics().adds.inc({ name: 'metrics-test' }, 3);

    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('spillway_workqueue_adds_total{name="metrics-test"} 3');
  });

  it('answers 404 elsewhere and ok on /healthz', async () => {
    server = await serveMetrics({ port: 0 });
    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
  });

  it('stops listening when closed, after a keep-alive scrape', async () => {
    const s = await serveMetrics({ port: 0 });
    await (await fetch(s.url, { keepalive: true })).text();
    await s.close();
    await expect(fetch(s.url)).rejects.toThrow();
  });
});

describe('shared metric families', () => {
  it('are created once per registry, whatever the number of callers', () => {
    const reg = new Registry();
    const a = workqueueMetrics(reg);
    const b = workqueueMetrics(reg);
    expect(a.depth).toBe(b.depth);
    expect(informerRestarts(reg)).toBe(informerRestarts(reg));
  });

  it('never touch the global default registry', async () => {
    workqueueMetrics();
    informerRestarts();
    expect(await registry.getSingleMetric('spillway_workqueue_depth')).toBeDefined();
    expect(globalRegistry.getSingleMetric('spillway_workqueue_depth')).toBeUndefined();
    expect(globalRegistry.getSingleMetric('process_resident_memory_bytes')).toBeUndefined();
  });
});

/** A GET with an optional bearer token; HTTPS without verification (the certificate is self-signed). */
function get(url: string, token?: string): Promise<{ status: number; body: string; headers: Headers }> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: 'GET',
        rejectUnauthorized: false,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            headers: new Headers(res.headers as Record<string, string>),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * A fake apiserver for the two reviews: `tokens` maps a token to its user, `readers` are the users RBAC lets
 * `get /metrics`. It records every review it answers.
 */
function fakeReviews(tokens: Record<string, string>, readers: string[]) {
  const calls = { tokenReviews: 0, accessReviews: [] as V1SubjectAccessReview['spec'][] };
  let failing = false;
  const authentication: Pick<AuthenticationV1Api, 'createTokenReview'> = {
    createTokenReview: async ({ body }) => {
      calls.tokenReviews++;
      if (failing) throw new Error('connect ECONNREFUSED');
      const username = tokens[body.spec.token!];
      return {
        spec: body.spec,
        status: username
          ? { authenticated: true, user: { username, groups: ['system:authenticated'] } }
          : { authenticated: false },
      };
    },
  };
  const authorization: Pick<AuthorizationV1Api, 'createSubjectAccessReview'> = {
    createSubjectAccessReview: async ({ body }) => {
      calls.accessReviews.push(body.spec);
      return { spec: body.spec, status: { allowed: readers.includes(body.spec.user!) } };
    },
  };
  return { authentication, authorization, calls, fail: (on: boolean) => (failing = on) };
}

describe('serveMetrics with authentication', () => {
  let server: MetricsServer | undefined;
  let tls: { cert: string; key: string };
  beforeAll(async () => {
    const pair = await metricsServingCertificate({ ipAddresses: ['127.0.0.1'] });
    tls = { cert: pair.certPem, key: pair.keyPem };
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const tokens = { 'prometheus-token': 'system:serviceaccount:monitoring:prometheus', 'app-token': 'alice' };

  it('answers 401 without a token or with one the apiserver does not know, 403 without the permission', async () => {
    const fake = fakeReviews(tokens, ['system:serviceaccount:monitoring:prometheus']);
    server = await serveMetrics({ port: 0, tls, auth: new KubernetesMetricsAuth(fake) });
    expect(server.url).toBe(`https://127.0.0.1:${server.port}/metrics`);

    const anonymous = await get(server.url);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    expect(anonymous.body).not.toContain('process_resident_memory_bytes');
    expect((await get(server.url, 'forged')).status).toBe(401);

    const other = await get(server.url, 'app-token');
    expect(other.status).toBe(403);
    expect(other.body).toContain('alice may not get /metrics');
    expect(other.body).not.toContain('process_resident_memory_bytes');

    const scraper = await get(server.url, 'prometheus-token');
    expect(scraper.status).toBe(200);
    expect(scraper.body).toContain('process_resident_memory_bytes');
    // What RBAC is asked: get on the non-resource URL /metrics, for the user the token names.
    expect(fake.calls.accessReviews).toContainEqual({
      user: 'system:serviceaccount:monitoring:prometheus',
      groups: ['system:authenticated'],
      nonResourceAttributes: { path: '/metrics', verb: 'get' },
    });
  });

  it('asks the apiserver once per token and TTL, not once per scrape', async () => {
    let now = 1_000_000;
    const fake = fakeReviews(tokens, ['system:serviceaccount:monitoring:prometheus']);
    const auth = new KubernetesMetricsAuth({
      ...fake,
      now: () => now,
      allowedTtlMs: 60_000,
      deniedTtlMs: 10_000,
    });
    server = await serveMetrics({ port: 0, tls, auth });

    for (let i = 0; i < 5; i++) expect((await get(server.url, 'prometheus-token')).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await get(server.url, 'app-token')).status).toBe(403);
    expect(fake.calls.tokenReviews).toBe(2);
    expect(fake.calls.accessReviews).toHaveLength(2);

    // Scrapes at once with one token wait for one review.
    now += 61_000;
    const codes = await Promise.all([1, 2, 3, 4].map(() => get(server!.url, 'prometheus-token')));
    expect(codes.map((c) => c.status)).toEqual([200, 200, 200, 200]);
    expect(fake.calls.tokenReviews).toBe(3); // one more, for the four scrapes after the TTL
    expect(fake.calls.accessReviews).toHaveLength(3);
  });

  it('answers 503 while the apiserver cannot be asked, and asks again on the next scrape', async () => {
    const fake = fakeReviews(tokens, ['system:serviceaccount:monitoring:prometheus']);
    server = await serveMetrics({ port: 0, tls, auth: new KubernetesMetricsAuth(fake) });
    fake.fail(true);
    const down = await get(server.url, 'prometheus-token');
    expect(down.status).toBe(503);
    expect(down.body).toContain('ECONNREFUSED');
    fake.fail(false);
    expect((await get(server.url, 'prometheus-token')).status).toBe(200);
  });

  it('keeps /healthz open for probes, and 404 elsewhere', async () => {
    const fake = fakeReviews(tokens, []);
    server = await serveMetrics({ port: 0, tls, auth: new KubernetesMetricsAuth(fake) });
    const base = `https://127.0.0.1:${server.port}`;
    expect(await get(`${base}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    expect((await get(`${base}/metrics/../other`)).status).toBe(404);
    expect(fake.calls.tokenReviews).toBe(0);
  });

  it('serves only TLS when given a certificate: a plain-HTTP client gets no metrics', async () => {
    server = await serveMetrics({ port: 0, tls });
    await expect(get(`http://127.0.0.1:${server.port}/metrics`)).rejects.toThrow();
    expect((await get(server.url)).status).toBe(200);
  });
});
