import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { proxyRules, proxyRuleset } from './service-proxy.ts';

const svc = (name: string, spec: V1Service['spec']): V1Service => ({
  metadata: { name, namespace: 'ns' },
  spec,
});
const slice = (
  service: string,
  endpoints: V1EndpointSlice['endpoints'],
  ports: V1EndpointSlice['ports'],
): V1EndpointSlice => ({
  metadata: { name: `${service}-x`, namespace: 'ns', labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4',
  endpoints,
  ports,
});

describe('proxyRules', () => {
  it('maps each named port and protocol to the ready endpoints only', () => {
    const rules = proxyRules(
      [
        svc('dns', {
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP' },
            { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          ],
        }),
      ],
      [
        slice(
          'dns',
          [
            { addresses: ['10.250.0.2'], conditions: { ready: true } },
            { addresses: ['10.250.0.3'], conditions: { ready: false } },
            { addresses: ['10.250.0.4'] },
          ],
          [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'dns-tcp', port: 5354, protocol: 'TCP' },
          ],
        ),
      ],
    );
    expect(rules.map((r) => [r.protocol, r.port, r.endpoints.map((e) => `${e.ip}:${e.port}`)])).toEqual([
      ['tcp', 53, ['10.250.0.2:5354', '10.250.0.4:5354']],
      ['udp', 53, ['10.250.0.2:5353', '10.250.0.4:5353']],
    ]);
  });

  it('gives headless and ExternalName Services no rules', () => {
    expect(
      proxyRules(
        [
          svc('h', { clusterIP: 'None', ports: [{ port: 80 }] }),
          svc('e', { type: 'ExternalName', externalName: 'x' }),
        ],
        [],
      ),
    ).toEqual([]);
  });
});

describe('proxyRuleset', () => {
  it('replaces the table atomically, DNATs with a random pick and masquerades inside the pod CIDR', () => {
    const text = proxyRuleset(
      [
        {
          service: 'ns/web:http',
          clusterIP: '10.96.1.1',
          protocol: 'tcp',
          port: 80,
          endpoints: [
            { ip: '10.250.0.2', port: 8080 },
            { ip: '10.250.0.3', port: 8080 },
          ],
        },
      ],
      'spillway0',
      '10.250.0.0/16',
    );
    expect(text.startsWith('table ip spillway_proxy {}\ndelete table ip spillway_proxy\n')).toBe(true);
    expect(text).toContain('ip daddr 10.96.1.1 tcp dport 80 jump svc-0');
    expect(text).toContain(
      'dnat ip to numgen random mod 2 map { 0 : 10.250.0.2 . 8080, 1 : 10.250.0.3 . 8080 }',
    );
    expect(text).toContain('ip saddr 10.250.0.0/16 ip daddr 10.250.0.0/16 ct status dnat masquerade');
  });
});
