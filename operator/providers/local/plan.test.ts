import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isInvalidPodSpec } from '../types.ts';
import { bytes, hostsFile, milliCPU, planSandbox, resolvConf } from './plan.ts';

const dns = {
  nameserver: '10.96.0.10',
  domain: 'cluster.local',
  hostResolvConf: 'nameserver 1.2.3.4\nsearch corp.example\n',
};
const key = { uid: 'u1', namespace: 'shop', name: 'web-1' };
const pod = (spec: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { uid: 'u1', namespace: 'shop', name: 'web-1' },
  spec: { containers: [{ name: 'app', command: ['sleep', '1'] }], ...spec },
});

describe('resolvConf', () => {
  it.each([
    [
      'ClusterFirst',
      {},
      'nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n',
    ],
    ['Default', {}, 'nameserver 1.2.3.4\nsearch corp.example\n'],
    [
      'None',
      {
        nameservers: ['9.9.9.9'],
        searches: ['a.b'],
        options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }],
      },
      'nameserver 9.9.9.9\nsearch a.b\noptions ndots:2 edns0\n',
    ],
    [
      'ClusterFirst',
      { options: [{ name: 'ndots', value: '1' }] },
      'nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:1\n',
    ],
  ])('%s with dnsConfig %j', (dnsPolicy, dnsConfig, expected) => {
    expect(resolvConf(pod({ dnsPolicy, dnsConfig }), dns)).toBe(expected);
  });
});

describe('hostsFile', () => {
  it('names the pod on its IP, with the subdomain FQDN, then hostAliases', () => {
    const text = hostsFile(
      pod({
        hostname: 'db-0',
        subdomain: 'db',
        hostAliases: [{ ip: '10.0.0.9', hostnames: ['foo', 'bar'] }],
      }),
      '10.250.0.7',
      'cluster.local',
    );
    expect(text).toContain('10.250.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n');
    expect(text).toContain('10.0.0.9\tfoo\tbar\n');
    expect(text).toContain('127.0.0.1\tlocalhost\n');
  });
});

describe('planSandbox', () => {
  it('refuses a container without command, naming the field (no image entrypoint without images)', () => {
    let err: unknown;
    try {
      planSandbox(key, pod({ containers: [{ name: 'nginx', image: 'nginx' }] }));
    } catch (e) {
      err = e;
    }
    expect(isInvalidPodSpec(err)).toBe(true);
    expect((err as Error).message).toContain('spec.containers[0].command');
  });

  it('resolved env overrides the runtime defaults; limits are parsed', () => {
    const plan = planSandbox(
      key,
      pod({
        containers: [{ name: 'app', command: ['x'], resources: { limits: { cpu: '250m', memory: '64Mi' } } }],
      }),
      {
        env: {
          app: [
            { name: 'PATH', value: '/opt/bin' },
            { name: 'A', value: '1' },
          ],
        },
      },
    );
    const c = plan.containers[0]!;
    expect(c.env).toEqual([
      { name: 'HOSTNAME', value: 'web-1' },
      { name: 'HOME', value: '/root' },
      { name: 'PATH', value: '/opt/bin' },
      { name: 'A', value: '1' },
    ]);
    expect(c.limits).toEqual({ milliCPU: 250, memoryBytes: 64 * 2 ** 20 });
    expect(plan.restartPolicy).toBe('Always');
  });

  it.each([
    ['500m', 500],
    ['2', 2000],
    ['0.5', 500],
    ['1k', 1_000_000],
    ['2e-1', 200],
  ])('milliCPU(%s) = %d', (q, n) => expect(milliCPU(q)).toBe(n));

  it.each([
    ['1Gi', 2 ** 30],
    ['1G', 1e9],
    ['128974848', 128974848],
    ['1e3', 1000],
    ['1E3', 1000],
    ['1E', 1e18],
    ['1Ei', 2 ** 60],
    ['500m', 1],
  ])('bytes(%s) = %d', (q, n) => expect(bytes(q)).toBe(n));

  it('refuses what is not a quantity instead of planning a NaN limit', () => {
    expect(() => bytes('1e3Mi')).toThrow(/invalid quantity "1e3Mi"/);
    expect(() => milliCPU('1K')).toThrow(/invalid quantity "1K"/);
  });
});
