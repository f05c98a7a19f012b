import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
} from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { apiErrorCode, apiErrorMessage, isApiError, loadKubeConfig, makeClients } from './client.ts';

function kubeconfig(server: string, context = 'ctx', namespace?: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    `current-context: ${context}`,
    'clusters:',
    `- name: ${context}-cluster`,
    `  cluster: {server: "${server}"}`,
    'users:',
    `- name: ${context}-user`,
    '  user: {token: abc}',
    'contexts:',
    `- name: ${context}`,
    `  context: {cluster: ${context}-cluster, user: ${context}-user${namespace ? `, namespace: ${namespace}` : ''}}`,
    '',
  ].join('\n');
}

describe('loadKubeConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spillway-client-'));
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const noToken = () => join(dir, 'no-token');

  it('prefers an explicit path over KUBECONFIG', () => {
    const flag = write('flag', kubeconfig('https://flag.example:6443'));
    const env = { KUBECONFIG: write('env', kubeconfig('https://env.example:6443')) };
    const { kc, origin } = loadKubeConfig({
      kubeconfig: flag,
      env,
      homeDir: dir,
      inClusterTokenPath: noToken(),
    });
    expect(origin).toBe('flag');
    expect(kc.getCurrentCluster()?.server).toBe('https://flag.example:6443');
  });

  it('merges every file of KUBECONFIG, the first current-context winning', () => {
    const a = write('a', kubeconfig('https://a.example:6443', 'a'));
    const b = write('b', kubeconfig('https://b.example:6443', 'b'));
    const { kc, origin } = loadKubeConfig({
      env: { KUBECONFIG: [a, b].join(delimiter) },
      homeDir: dir,
      inClusterTokenPath: noToken(),
    });
    expect(origin).toBe('KUBECONFIG');
    expect(kc.getContexts().map((c) => c.name)).toEqual(['a', 'b']);
    expect(kc.getCurrentCluster()?.server).toBe('https://a.example:6443');
  });

  it('uses the service account before ~/.kube/config when running in a pod', () => {
    mkdirSync(join(dir, '.kube'));
    write('.kube/config', kubeconfig('https://home.example:6443'));
    const token = write('token', 'sa-token');
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    // client-node's loadFromCluster reads the service address from the real environment.
    vi.stubEnv('KUBERNETES_SERVICE_HOST', env.KUBERNETES_SERVICE_HOST);
    vi.stubEnv('KUBERNETES_SERVICE_PORT', env.KUBERNETES_SERVICE_PORT);
    const { kc, origin } = loadKubeConfig({ env, homeDir: dir, inClusterTokenPath: token });
    expect(origin).toBe('in-cluster');
    expect(kc.getCurrentCluster()?.server).toBe('https://10.96.0.1:443');
  });

  it('falls back to ~/.kube/config', () => {
    mkdirSync(join(dir, '.kube'));
    write('.kube/config', kubeconfig('https://home.example:6443'));
    const { kc, origin } = loadKubeConfig({ env: {}, homeDir: dir, inClusterTokenPath: noToken() });
    expect(origin).toBe('home');
    expect(kc.getCurrentCluster()?.server).toBe('https://home.example:6443');
  });

  it('says where it looked when nothing exists', () => {
    expect(() => loadKubeConfig({ env: {}, homeDir: dir, inClusterTokenPath: noToken() })).toThrow(
      /--kubeconfig, set KUBECONFIG.*\.kube\/config/,
    );
  });
});

describe('makeClients', () => {
  it('builds the typed APIs, the generic one knowing the context namespace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-client-'));
    try {
      const path = join(dir, 'config');
      writeFileSync(path, kubeconfig('https://k.example:6443', 'ctx', 'team-a'));
      const { kc } = loadKubeConfig({ kubeconfig: path });
      const clients = makeClients(kc);
      expect(clients.core).toBeInstanceOf(CoreV1Api);
      expect(clients.coordination).toBeInstanceOf(CoordinationV1Api);
      expect(clients.objects).toBeInstanceOf(KubernetesObjectApi);
      expect((clients.objects as unknown as { defaultNamespace: string }).defaultNamespace).toBe('team-a');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('API errors', () => {
  const notFound = new ApiException(
    404,
    'Unknown API Status Code!',
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      message: 'configmaps "web" not found',
      reason: 'NotFound',
      code: 404,
    }),
    {},
  );

  it('recognises ApiException with its status code', () => {
    expect(isApiError(notFound)).toBe(true);
    expect(isApiError(notFound, 404)).toBe(true);
    expect(isApiError(notFound, 409)).toBe(false);
  });

  it('recognises the statusCode errors that Watch throws', () => {
    const err = Object.assign(new Error('Forbidden'), { statusCode: 403 });
    expect(apiErrorCode(err)).toBe(403);
    expect(apiErrorMessage(err)).toBe('Forbidden (HTTP 403)');
  });

  it('does not mistake network errors for API errors', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    expect(isApiError(err)).toBe(false);
    expect(apiErrorMessage(err)).toBe('connect ECONNREFUSED 127.0.0.1:6443');
  });

  it('names the cause of a failed fetch', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    const err = new TypeError('fetch failed', { cause: refused });
    expect(apiErrorMessage(err)).toBe('fetch failed: connect ECONNREFUSED 127.0.0.1:6443');
  });

  it('turns the JSON-string body into the Status message', () => {
    expect(apiErrorMessage(notFound)).toBe('configmaps "web" not found (HTTP 404)');
  });

  it('names the status when the body is not a Status', () => {
    expect(apiErrorMessage(new ApiException(401, 'Unauthorized', undefined, {}))).toBe('HTTP 401');
    expect(apiErrorMessage(new ApiException(502, 'Bad Gateway', '<html>', {}))).toBe('HTTP 502');
  });
});

describe('shareConnections', () => {
  it('sends every request of every API client over one connection instead of one each', async () => {
    const { createServer } = await import('node:https');
    const { createCA, issueCert } = await import('./pki.ts');
    const ca = await createCA('test-ca', 3600_000);
    const serving = await issueCert(ca, {
      subject: 'CN=apiserver',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validForMs: 3600_000,
    });
    let connections = 0;
    const server = createServer(
      { cert: serving.certPem, key: serving.keyPem, keepAliveTimeout: 10_000 },
      (_req, res) => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'default' } }));
      },
    );
    server.on('secureConnection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [
          {
            name: 'c',
            server: `https://127.0.0.1:${port}`,
            caData: Buffer.from(ca.certPem).toString('base64'),
          },
        ],
        users: [{ name: 'u', token: 'abc' }],
        contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
        currentContext: 'ctx',
      });
      const { core } = makeClients(kc);
      for (let i = 0; i < 20; i++) await core.readNamespace({ name: 'default' });
      // Without the shared pool every request opens its own connection (20 here).
      expect(connections).toBeLessThanOrEqual(2);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
