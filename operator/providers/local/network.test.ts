import { describe, expect, it } from 'vitest';
import { guardRuleset, inCIDR, intToIp, ipToInt, parseCIDR } from './network.ts';

describe('addresses', () => {
  it('parses a CIDR to its network and prefix', () => {
    expect(parseCIDR('10.250.0.77/24')).toEqual({ base: ipToInt('10.250.0.0'), bits: 24 });
    expect(intToIp(ipToInt('10.250.3.4') + 1)).toBe('10.250.3.5');
    expect(() => parseCIDR('10.250.0.0')).toThrow(/CIDR/);
  });

  it('tells whether an address the runtime gave lies in the guarded CIDR', () => {
    expect(inCIDR('10.250.0.7', '10.250.0.0/16')).toBe(true);
    expect(inCIDR('10.88.0.7', '10.250.0.0/16')).toBe(false);
  });

  it("guards both CIDRs on output and forwards between the bridge and the project's own links only", () => {
    const rules = guardRuleset('spillway0', ['10.250.0.0/16', '10.96.0.0/16']);
    expect(rules).toContain(
      'ip daddr { 10.250.0.0/16, 10.96.0.0/16 } oifname != { "lo", "spillway0" } counter drop',
    );
    expect(rules).toContain('iifname "spillway0" oifname != "spillway*" counter drop');
    expect(rules).toContain('oifname "spillway0" iifname != "spillway*" counter drop');
  });
});
