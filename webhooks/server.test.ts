import https from 'node:https';
import tls from 'node:tls';
import { randomUUID, X509Certificate } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCA, issueCert, type KeyPair } from '../operator/shared/pki.ts';
import { applyJsonPatch } from './admission.fixtures.ts';
import type { AdmissionHandler } from './admission.ts';
import { WEBHOOK_PATHS, webhookHandlers } from './handlers.ts';
import { WebhookServer, type ReviewOutcome, type WebhookServerOptions } from './server.ts';

let ca: KeyPair;
let cert: KeyPair;
beforeAll(async () => {
  ca = await createCA('test-ca', 3_600_000);
  cert = await issueCert(ca, {
    subject: 'CN=webhook',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validForMs: 3_600_000,
  });
});

const servers: WebhookServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close(100)));
});

const handlers = () =>
  webhookHandlers({
    namespaceLabels: (name) => (name === 'burst' ? { 'spillway.dev/burst': 'always' } : undefined),
    isVirtualNode: (name) => name === 'vn',
  });

async function start(options: Partial<WebhookServerOptions> = {}): Promise<WebhookServer> {
  const server = await WebhookServer.start({ handlers: handlers(), certificate: cert, ...options });
  servers.push(server);
  return server;
}

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

function call(
  server: WebhookServer,
  path: string,
  options: { method?: string; body?: string | Buffer; chunks?: Buffer[]; agent?: https.Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      server.url(path),
      {
        method: options.method ?? 'POST',
        ca: ca.certPem,
        agent: options.agent ?? false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', reject);
    if (options.chunks) {
      for (const c of options.chunks) req.write(c);
      req.end();
    } else req.end(options.body);
  });
}

const review = (object: unknown, extra: object = {}) =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'uid-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'default',
      object,
      ...extra,
    },
  });

const pod = (labels: Record<string, string>, spec: object = {}) => ({
  metadata: { name: 'p', labels },
  spec: { containers: [{ name: 'a' }], ...spec },
});

describe('WebhookServer: reviews over HTTPS', () => {
  it('answers a mutating review with a base64 JSONPatch', async () => {
    const server = await start();
    const object = pod({ 'spillway.dev/burst': 'always' });
    const reply = await call(server, WEBHOOK_PATHS.mutatePods, { body: review(object) });
    expect(reply.status).toBe(200);
    const { response } = JSON.parse(reply.body);
    expect(response).toMatchObject({ uid: 'uid-1', allowed: true, patchType: 'JSONPatch' });
    const patched = applyJsonPatch(object, JSON.parse(Buffer.from(response.patch, 'base64').toString()));
    expect(JSON.stringify(patched)).toContain('spillway.dev/virtual-node');
  });

  it('answers a denial with status code and message', async () => {
    const server = await start();
    const body = review(pod({ 'spillway.dev/burst': 'always' }, { hostNetwork: true }));
    const { response } = JSON.parse((await call(server, WEBHOOK_PATHS.validatePods, { body })).body);
    expect(response.allowed).toBe(false);
    expect(response.status).toMatchObject({
      code: 403,
      message: expect.stringContaining('spec.hostNetwork: '),
    });
  });

  it('returns warnings', async () => {
    const server = await start();
    const body = review(pod({ 'spillway.dev/burst': 'overflow' }, { hostIPC: true }));
    const { response } = JSON.parse((await call(server, WEBHOOK_PATHS.mutatePods, { body })).body);
    expect(response.warnings).toEqual([expect.stringContaining('spec.hostIPC')]);
  });

  it('reports every outcome to observe()', async () => {
    const seen: [string, ReviewOutcome][] = [];
    const server = await start({ observe: (path, outcome) => seen.push([path, outcome]) });
    await call(server, WEBHOOK_PATHS.mutatePods, { body: review(pod({})) });
    await call(server, WEBHOOK_PATHS.mutatePods, { body: review(pod({ 'spillway.dev/burst': 'always' })) });
    await call(server, WEBHOOK_PATHS.validatePods, {
      body: review(pod({ 'spillway.dev/burst': 'always' }, { hostPID: true })),
    });
    await call(server, WEBHOOK_PATHS.mutatePods, { body: 'nope' });
    expect(seen.map(([, o]) => o)).toEqual(['allowed', 'patched', 'denied', 'invalid']);
  });

  it('labels metrics with a fixed set of routes: 1,000 random paths are all "other"', async () => {
    const routes = new Set<string>();
    const server = await start({ observe: (route) => routes.add(route) });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 16 });
    const paths = Array.from({ length: 1000 }, (_, i) => `/${randomUUID()}/${i}?q=${i}`);
    let next = 0;
    const worker = async () => {
      while (next < paths.length) {
        expect((await call(server, paths[next++]!, { body: '{}', agent })).status).toBe(404);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await call(server, WEBHOOK_PATHS.validatePods, { method: 'GET' }); // 405 on a webhook: its own route
    await call(server, WEBHOOK_PATHS.mutatePods, { body: review(pod({})) });
    agent.destroy();
    expect([...routes].sort()).toEqual(['/mutate-pods', '/validate-pods', 'other']);
  }, 60_000);

  it('serves many concurrent reviews', async () => {
    const server = await start();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
    const body = review(pod({ 'spillway.dev/burst': 'always' }));
    const replies = await Promise.all(
      Array.from({ length: 200 }, () => call(server, WEBHOOK_PATHS.mutatePods, { body, agent })),
    );
    agent.destroy();
    expect(replies.every((r) => r.status === 200 && JSON.parse(r.body).response.allowed)).toBe(true);
  });
});

describe('WebhookServer: clean errors', () => {
  const status = (reply: Reply) => JSON.parse(reply.body) as { kind: string; code: number; message: string };

  it.each<[string, string, RegExp]>([
    ['malformed JSON', '{"apiVersion": "admission.k8s.io/v1",', /request body is not JSON/],
    ['an empty body', '', /request body is not JSON/],
    [
      'the wrong kind',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod', request: {} }),
      /expected kind AdmissionReview/,
    ],
    [
      'v1beta1',
      review({}).replace('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'),
      /expected apiVersion admission\.k8s\.io\/v1/,
    ],
    [
      'a missing request.uid',
      JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { kind: { group: '', kind: 'Pod' } },
      }),
      /no uid/,
    ],
  ])('%s → 400 with a Status', async (_name, body, message) => {
    const server = await start();
    const reply = await call(server, WEBHOOK_PATHS.mutatePods, { body });
    expect(reply.status).toBe(400);
    expect(status(reply)).toMatchObject({
      kind: 'Status',
      code: 400,
      message: expect.stringMatching(message),
    });
  });

  it('an oversized body (Content-Length) → 413, without reading it', async () => {
    const server = await start();
    const reply = await call(server, WEBHOOK_PATHS.mutatePods, { body: Buffer.alloc(7 * 1024 * 1024, 0x20) });
    expect(reply.status).toBe(413);
    expect(status(reply).message).toBe('request body is larger than the 6.0 MiB limit');
  });

  it('an oversized chunked body → 413 once the limit is crossed', async () => {
    const server = await start({ maxBodyBytes: 64 * 1024 });
    const chunks = Array.from({ length: 10 }, () => Buffer.alloc(16 * 1024, 0x20));
    const reply = await call(server, WEBHOOK_PATHS.mutatePods, { chunks });
    expect(reply.status).toBe(413);
    expect(status(reply).message).toMatch(/larger than the 0\.1 MiB limit/);
  });

  it('a body just under the limit is read', async () => {
    const server = await start({ maxBodyBytes: 64 * 1024 });
    const body = review(pod({ big: 'x'.repeat(50 * 1024) }));
    expect((await call(server, WEBHOOK_PATHS.mutatePods, { body })).status).toBe(200);
  });

  it.each<[string, string, string, number]>([
    ['an unknown path', 'POST', '/mutate-everything', 404],
    ['GET on a webhook', 'GET', WEBHOOK_PATHS.mutatePods, 405],
  ])('%s → %s', async (_name, method, path, code) => {
    const server = await start();
    const reply = await call(server, path, { method });
    expect(reply.status).toBe(code);
    expect(status(reply).code).toBe(code);
  });

  it('a handler that throws → 500, so that failurePolicy decides', async () => {
    const boom: AdmissionHandler = () => {
      throw new Error('boom');
    };
    const errors: object[] = [];
    const log = { warn: () => undefined, error: (o: object) => errors.push(o) };
    const server = await start({ handlers: { '/x': boom }, log });
    const reply = await call(server, '/x', { body: review(pod({})) });
    expect(reply.status).toBe(500);
    expect(status(reply).message).toBe('spillway /x failed on request uid-1: boom');
    expect(errors).toHaveLength(1);
  });
});

describe('WebhookServer: health, readiness, shutdown', () => {
  it('/healthz and /readyz', async () => {
    let ready = false;
    const server = await start({ isReady: () => ready });
    expect((await call(server, '/healthz', { method: 'GET' })).status).toBe(200);
    expect((await call(server, '/readyz', { method: 'GET' })).status).toBe(503);
    ready = true;
    expect((await call(server, '/readyz', { method: 'GET' })).body).toBe('ok');
  });

  it('finishes an in-flight review, then refuses new connections', async () => {
    const server = await WebhookServer.start({ handlers: handlers(), certificate: cert });
    const body = review(pod({ 'spillway.dev/burst': 'always' }));
    const reply = new Promise<Reply>((resolve, reject) => {
      const req = https.request(
        server.url(WEBHOOK_PATHS.mutatePods),
        { method: 'POST', ca: ca.certPem, agent: false },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 20));
      // The rest arrives after shutdown has begun.
      setTimeout(() => req.end(body.slice(20)), 300);
    });
    while (server.inFlight === 0) await new Promise((r) => setTimeout(r, 5)); // the review has begun
    const url = server.url('/healthz');
    const closed = server.close(5_000);
    const answered = await reply;
    expect(answered.status).toBe(200);
    expect(answered.headers.connection).toBe('close');
    await closed;
    await expect(
      new Promise((resolve, reject) =>
        https.get(url, { ca: ca.certPem, agent: false }, resolve).on('error', reject),
      ),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('WebhookServer: certificate hot reload', () => {
  const peer = (server: WebhookServer, trusted: string[]) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca: trusted }, () => {
        resolve(socket.getPeerX509Certificate()!.fingerprint256);
        socket.end();
      });
      socket.on('error', reject);
    });

  it('new connections get the new certificate; the server never restarts', async () => {
    const server = await start();
    const ca2 = await createCA('second-ca', 3_600_000);
    const cert2 = await issueCert(ca2, {
      subject: 'CN=webhook2',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validForMs: 3_600_000,
    });
    const port = server.port;
    expect(await peer(server, [ca.certPem])).toBe(new X509Certificate(cert.certPem).fingerprint256);
    server.setCertificate(cert2);
    expect(await peer(server, [ca.certPem, ca2.certPem])).toBe(
      new X509Certificate(cert2.certPem).fingerprint256,
    );
    expect(server.port).toBe(port);
    // A client that trusts only the old CA now fails: the swap really happened.
    await expect(peer(server, [ca.certPem])).rejects.toThrow();
  });

  it('refuses a key that does not match the certificate and keeps serving the old one', async () => {
    const server = await start();
    const other = await issueCert(ca, { subject: 'CN=x', usage: 'server', validForMs: 3_600_000 });
    expect(() => server.setCertificate({ certPem: cert.certPem, keyPem: other.keyPem })).toThrow();
    expect(await peer(server, [ca.certPem])).toBe(new X509Certificate(cert.certPem).fingerprint256);
  });
});
