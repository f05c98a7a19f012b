import { describe, expect, it } from 'vitest';
import { guardRuleset, intToIp, ipToInt, networkProblems, parseCIDR, vethName } from './network.ts';

describe('addresses', () => {
  it('parses a CIDR to its network and prefix', () => {
    expect(parseCIDR('10.250.0.77/24')).toEqual({ base: ipToInt('10.250.0.0'), bits: 24 });
    expect(intToIp(ipToInt('10.250.3.4') + 1)).toBe('10.250.3.5');
    expect(() => parseCIDR('10.250.0.0')).toThrow(/CIDR/);
  });

  it('names veths within the 15-character limit, unique per UID prefix', () => {
    expect(vethName('0ceae270-bc41-4b83-bd1e-007ad53e000a')).toBe('sw0ceae270bc41');
  });

  it('guards both CIDRs on output and never forwards between the bridge and elsewhere', () => {
    const rules = guardRuleset('spillway0', ['10.250.0.0/16', '10.96.0.0/16']);
    expect(rules).toContain(
      'ip daddr { 10.250.0.0/16, 10.96.0.0/16 } oifname != { "lo", "spillway0" } counter drop',
    );
    expect(rules).toContain('iifname "spillway0" oifname != "spillway0" counter drop');
    expect(rules).toContain('oifname "spillway0" iifname != "spillway0" counter drop');
  });
});

describe('networkProblems', () => {
  const want = {
    veth: 'sw0ceae270bc41',
    bridge: 'spillway0',
    ip: '10.250.0.7',
    prefixLength: 24,
    gateway: '10.250.0.1',
    serviceIP: '10.96.0.1',
  };
  const healthy = {
    veth: [{ ifname: 'sw0ceae270bc41', flags: ['BROADCAST', 'UP', 'LOWER_UP'], master: 'spillway0' }],
    eth0: [
      {
        ifname: 'eth0',
        flags: ['BROADCAST', 'UP', 'LOWER_UP'],
        addr_info: [{ family: 'inet', local: '10.250.0.7', prefixlen: 24 }],
      },
    ],
    defaults: [{ dst: 'default', gateway: '10.250.0.1', dev: 'eth0' }],
    service: [{ dst: '10.96.0.1', gateway: '10.250.0.1', dev: 'eth0' }],
  };

  it('finds nothing wrong with a sandbox as attach leaves it', () => {
    expect(networkProblems(healthy, want)).toEqual([]);
  });

  it('names each step a crash or a later change undid', () => {
    // As a kill after the address step leaves it: eth0 down, so no routes through it.
    const halfBuilt = {
      veth: healthy.veth,
      eth0: [{ ...healthy.eth0[0]!, flags: ['BROADCAST'] }],
      defaults: [],
      service: [],
    };
    expect(networkProblems(halfBuilt, want)).toEqual([
      'eth0 is down',
      'no default route via 10.250.0.1',
      'no route to the service CIDR (10.96.0.1) via 10.250.0.1',
    ]);
    expect(networkProblems({ ...healthy, veth: [], eth0: [] }, want)).toEqual([
      'veth sw0ceae270bc41 is missing',
      'eth0 is missing',
    ]);
    const otherAddress = [{ ...healthy.eth0[0]!, addr_info: [{ local: '10.250.0.8', prefixlen: 24 }] }];
    expect(networkProblems({ ...healthy, eth0: otherAddress }, want)).toEqual(['eth0 lacks 10.250.0.7/24']);
    const offBridge = [{ ...healthy.veth[0]!, master: 'docker0' }];
    expect(networkProblems({ ...healthy, veth: offBridge }, want)).toEqual([
      'veth sw0ceae270bc41 is not on spillway0',
    ]);
  });
});
