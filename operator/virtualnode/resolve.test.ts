import type { V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  MissingReferenceError,
  expandVars,
  fieldRefValue,
  resolvePodInputs,
  resourceFieldValue,
  serviceLinkVars,
  type ResolverSource,
} from './resolve.ts';

const pod: V1Pod = {
  metadata: {
    name: 'web-1',
    namespace: 'shop',
    uid: 'u1',
    labels: { app: 'web', tier: 'front' },
    annotations: { a: 'b' },
  },
  spec: {
    nodeName: 'virtual',
    serviceAccountName: 'web',
    containers: [{ name: 'app', resources: { requests: { cpu: '250m' }, limits: { memory: '1Gi' } } }],
  },
  status: { hostIP: '127.0.0.1' },
};

const svc = (name: string, ip: string, ports: V1ServicePort[]): V1Service => ({
  metadata: { name },
  spec: { clusterIP: ip, ports },
});

function fakeSource(over: Partial<ResolverSource> = {}): ResolverSource {
  return {
    configMap: async (_ns, name) =>
      name === 'cfg'
        ? {
            data: { LOG_LEVEL: 'debug', 'app.conf': 'x=1' },
            binaryData: { 'logo.png': Buffer.from([0x89, 0x50, 0x4e, 0x47]) },
          }
        : undefined,
    secret: async (_ns, name) => (name === 'creds' ? { password: Buffer.from('s3cret') } : undefined),
    services: async () => [svc('backend', '10.96.0.20', [{ name: 'http', port: 80, protocol: 'TCP' }])],
    kubernetesService: async () => ({ host: '10.96.0.1', port: 443 }),
    token: async (p, aud, exp) => `token-for-${p.metadata?.name}-${aud ?? 'api'}-${exp}`,
    ...over,
  };
}

describe('fieldRefValue', () => {
  it.each([
    ['metadata.name', 'web-1'],
    ['metadata.namespace', 'shop'],
    ['metadata.uid', 'u1'],
    ["metadata.labels['app']", 'web'],
    ["metadata.annotations['a']", 'b'],
    ['metadata.labels', 'app="web"\ntier="front"'],
    ['spec.nodeName', 'virtual'],
    ['spec.serviceAccountName', 'web'],
    ['status.hostIP', '127.0.0.1'],
  ])('%s → %s', (fieldPath, value) => {
    expect(fieldRefValue(pod, { fieldPath })).toBe(value);
  });

  it('names an unsupported field', () => {
    expect(() => fieldRefValue(pod, { fieldPath: 'spec.bogus' })).toThrow(
      /unsupported downward API field spec.bogus/,
    );
  });
});

describe('quantities and resource fields', () => {
  // parseQuantity's table is in api/quantity.test.ts.

  it('rounds cpu up and defaults limits to node allocatable', () => {
    const c = pod.spec!.containers[0]!;
    expect(resourceFieldValue(pod, c, { resource: 'requests.cpu' }, {})).toBe('1');
    expect(resourceFieldValue(pod, c, { resource: 'requests.cpu', divisor: '1m' }, {})).toBe('250');
    expect(resourceFieldValue(pod, c, { resource: 'limits.memory', divisor: '1Mi' }, {})).toBe('1024');
    expect(resourceFieldValue(pod, c, { resource: 'limits.cpu' }, { cpu: '1000' })).toBe('1000');
  });
});

describe('expandVars', () => {
  const vars = new Map([['HOST', 'db']]);
  it.each([
    ['postgres://$(HOST):5432', 'postgres://db:5432'],
    ['$(MISSING)', '$(MISSING)'],
    ['$$(HOST)', '$(HOST)'],
    ['plain', 'plain'],
  ])('%s → %s', (input, out) => expect(expandVars(input, vars)).toBe(out));
});

describe('serviceLinkVars', () => {
  it('writes the docker-link variables of each Service with a ClusterIP', () => {
    const vars = Object.fromEntries(
      serviceLinkVars([
        svc('my-backend', '10.96.0.20', [
          { name: 'http', port: 80, protocol: 'TCP' },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ]),
        svc('headless', 'None', [{ port: 80 }]),
      ]).map((v) => [v.name, v.value]),
    );
    expect(vars).toMatchObject({
      MY_BACKEND_SERVICE_HOST: '10.96.0.20',
      MY_BACKEND_SERVICE_PORT: '80',
      MY_BACKEND_SERVICE_PORT_HTTP: '80',
      MY_BACKEND_PORT: 'tcp://10.96.0.20:80',
      MY_BACKEND_PORT_53_UDP_PROTO: 'udp',
      MY_BACKEND_PORT_80_TCP_ADDR: '10.96.0.20',
    });
    expect(Object.keys(vars).some((k) => k.startsWith('HEADLESS'))).toBe(false);
  });
});

describe('resolvePodInputs', () => {
  it('resolves env in kubelet order: service links, envFrom, then env with valueFrom and $(VAR)', async () => {
    const p: V1Pod = {
      ...pod,
      spec: {
        ...pod.spec!,
        containers: [
          {
            name: 'app',
            envFrom: [{ configMapRef: { name: 'cfg' }, prefix: 'CFG_' }],
            env: [
              { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
              { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'URL', value: 'http://$(BACKEND_SERVICE_HOST)/$(POD)' },
              { name: 'OPT', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k', optional: true } } },
            ],
          },
        ],
      },
    };
    const { env } = await resolvePodInputs(p, fakeSource());
    const vars = Object.fromEntries(env!['app']!.map((v) => [v.name, v.value]));
    expect(vars).toMatchObject({
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
      KUBERNETES_SERVICE_PORT: '443',
      BACKEND_SERVICE_HOST: '10.96.0.20',
      CFG_LOG_LEVEL: 'debug',
      PASSWORD: 's3cret',
      POD: 'web-1',
      URL: 'http://10.96.0.20/web-1',
    });
    expect('OPT' in vars).toBe(false);
    // binaryData never becomes env (as with a kubelet).
    expect(Object.keys(vars).some((k) => k.includes('logo'))).toBe(false);
  });

  it('leaves out Service links when enableServiceLinks is false', async () => {
    const { env } = await resolvePodInputs(
      { ...pod, spec: { ...pod.spec!, enableServiceLinks: false } },
      fakeSource(),
    );
    expect(env!['app']!.some((v) => v.name.startsWith('BACKEND_'))).toBe(false);
    expect(env!['app']!.some((v) => v.name === 'KUBERNETES_SERVICE_HOST')).toBe(true);
  });

  it('fails clearly on a missing secret key', async () => {
    const p: V1Pod = {
      ...pod,
      spec: {
        ...pod.spec!,
        containers: [
          { name: 'app', env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'nope' } } }] },
        ],
      },
    };
    // The kubelet's message, and the container whose config it is (CreateContainerConfigError).
    const err = await resolvePodInputs(p, fakeSource()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingReferenceError);
    expect((err as MissingReferenceError).message).toBe("couldn't find key nope in Secret shop/creds");
    expect((err as MissingReferenceError).site).toEqual({ container: 'app' });
  });

  it('names the volume of a missing volume source, before any missing env reference', async () => {
    const p: V1Pod = {
      ...pod,
      spec: {
        ...pod.spec!,
        containers: [
          { name: 'app', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'gone', key: 'k' } } }] },
        ],
        volumes: [
          { name: 'ok', configMap: { name: 'cfg' } },
          { name: 'conf', configMap: { name: 'gone' } },
        ],
      },
    };
    const err = await resolvePodInputs(p, fakeSource()).catch((e: unknown) => e);
    expect((err as MissingReferenceError).message).toBe('configmap "gone" not found');
    expect((err as MissingReferenceError).site).toEqual({ volume: 'conf' });
    const items: V1Pod = {
      ...p,
      spec: {
        ...p.spec!,
        containers: [{ name: 'app' }],
        volumes: [{ name: 'sec', secret: { secretName: 'creds', items: [{ key: 'nope', path: 'x' }] } }],
      },
    };
    const itemErr = await resolvePodInputs(items, fakeSource()).catch((e: unknown) => e);
    expect((itemErr as MissingReferenceError).message).toBe('references non-existent secret key: nope');
    expect((itemErr as MissingReferenceError).site).toEqual({ volume: 'sec' });
  });

  it('materialises configMap, secret, downwardAPI and projected token volumes; emptyDir is left to the provider', async () => {
    const p: V1Pod = {
      ...pod,
      spec: {
        ...pod.spec!,
        volumes: [
          { name: 'conf', configMap: { name: 'cfg', items: [{ key: 'app.conf', path: 'conf/app.conf' }] } },
          { name: 'whole', configMap: { name: 'cfg' } },
          { name: 'sec', secret: { secretName: 'creds', defaultMode: 0o400 } },
          {
            name: 'info',
            downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] },
          },
          {
            name: 'kube-api-access',
            projected: {
              sources: [
                { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
                { configMap: { name: 'cfg', items: [{ key: 'LOG_LEVEL', path: 'level' }] } },
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
      },
    };
    const { volumes } = await resolvePodInputs(p, fakeSource());
    const files = (v: string) =>
      Object.fromEntries(volumes![v]!.files.map((f) => [f.path, f.content.toString()]));
    expect(files('conf')).toEqual({ 'conf/app.conf': 'x=1' });
    // A whole ConfigMap: data and binaryData keys, the binary bytes unchanged.
    expect(volumes!['whole']!.files.map((f) => f.path).sort()).toEqual(['LOG_LEVEL', 'app.conf', 'logo.png']);
    expect(volumes!['whole']!.files.find((f) => f.path === 'logo.png')!.content).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47]),
    );
    expect(files('sec')).toEqual({ password: 's3cret' });
    expect(volumes!['sec']!.files[0]!.mode).toBe(0o400);
    expect(files('info')).toEqual({ labels: 'app="web"\ntier="front"' });
    expect(files('kube-api-access')).toEqual({
      token: 'token-for-web-1-api-3607',
      level: 'debug',
      namespace: 'shop',
    });
    expect(volumes!['scratch']).toBeUndefined();
  });
});
