import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ECI_DEFAULT_CAPACITY, parseEciConfig } from './eci/config.ts';
import { PROVIDER_NAMES, PROVIDERS, providerHelp, validateProvider } from './index.ts';

const file = (name: string, text: string) => {
  const path = join(tmpdir(), `spillway-providers-${process.pid}-${name}.yaml`);
  writeFileSync(path, text);
  return path;
};

describe('the provider registry', () => {
  it('lists every registered provider with its summary in the help', () => {
    const help = providerHelp();
    expect(PROVIDER_NAMES).toEqual(['fake', 'local', 'eci']);
    for (const name of PROVIDER_NAMES) expect(help).toContain(`${name}`.padEnd(7) + PROVIDERS[name].summary);
  });

  it('refuses an unknown provider naming the known ones', () => {
    expect(() => validateProvider('ecs', { nodeName: 'n' })).toThrow(
      /unknown provider "ecs": use one of fake, local, eci/,
    );
  });

  it('lists every missing field of an empty ECI configuration at once, credentials included', () => {
    let message = '';
    try {
      validateProvider('eci', { nodeName: 'n', configFile: file('empty', '{}\n'), env: {} });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const field of ['regionId', 'clusterId', 'vSwitchIds', 'securityGroupId'])
      expect(message).toContain(`eci.${field}: missing (required)`);
    expect(message).toMatch(/eci\.credentials: missing: set credentials in the file, or RRSA/);
  });

  it('accepts a complete ECI configuration with credentials from the environment', () => {
    const path = file(
      'ok',
      'regionId: cn-hangzhou\nclusterId: c1\nvSwitchIds: [vsw-a]\nsecurityGroupId: sg-a\n',
    );
    expect(() =>
      validateProvider('eci', {
        nodeName: 'n',
        configFile: path,
        env: { ALIBABA_CLOUD_ACCESS_KEY_ID: 'id', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'secret' },
      }),
    ).not.toThrow();
  });

  it('gives the ECI node a documented default capacity, ephemeral storage included', () => {
    const config = parseEciConfig({
      regionId: 'cn-hangzhou',
      clusterId: 'c1',
      nodeName: 'n',
      vSwitchIds: ['vsw-a'],
      securityGroupId: 'sg-a',
      credentials: { type: 'ecs_ram_role' },
    });
    expect(config.capacity).toEqual(ECI_DEFAULT_CAPACITY);
    expect(config.capacity.ephemeralStorage).toBe('150000Gi');
  });
});
