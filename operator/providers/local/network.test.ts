import { describe, expect, it } from 'vitest';
import { guardRuleset, intToIp, ipToInt, parseCIDR, vethName } from './network.ts';

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
