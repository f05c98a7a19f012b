import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ECI_DEFAULT_CAPACITY, parseEciConfig } from './eci/config.ts';
import { FakeProvider } from './fake/fake-provider.ts';
import {
  createProvider,
  nodePodCIDR,
  PROVIDER_NAMES,
  PROVIDERS,
  providerHelp,
  validateProvider,
} from './index.ts';
import { startClusterNetwork } from './local/cluster-network.ts';
import { LOCAL_NODE_CIDR } from './local/factory.ts';

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

  it('gives a local node its own pod CIDR when the node sets none, and no other provider one', () => {
    expect(nodePodCIDR('local', undefined)).toBe(LOCAL_NODE_CIDR);
    expect(nodePodCIDR('local', '10.250.7.0/24')).toBe('10.250.7.0/24');
    expect(nodePodCIDR('fake', undefined)).toBeUndefined();
    expect(nodePodCIDR('eci', undefined)).toBeUndefined();
  });

  it.runIf(process.getuid?.() === 0)('refuses a local node whose pod CIDR is not one, naming it', () => {
    expect(() => validateProvider('local', { nodeName: 'n', podCIDR: '10.250.0.0' })).toThrow(
      /invalid local provider configuration of node n:\n {2}local\.nodeCIDR: an IPv4 CIDR/,
    );
    expect(() => validateProvider('local', { nodeName: 'n', podCIDR: '10.250.3.0/24' })).not.toThrow();
  });

  it('builds a fake node with the capacity its config file sets, numbers or strings', async () => {
    const provider = await createProvider('fake', {
      nodeName: 'n',
      configFile: file('fake', 'capacity:\n  cpu: 64\n  pods: "500"\nkubeProxy: {enabled: false}\n'),
    });
    expect(await provider.capacity()).toMatchObject({ cpu: '64', pods: '500' });
    await provider.close();
  });

  it('refuses a fake config whose capacity is not a map of quantities', () => {
    expect(() =>
      validateProvider('fake', { nodeName: 'n', configFile: file('fake-bad', 'capacity: [1, 2]\n') }),
    ).toThrow(/invalid fake provider configuration in .*fake-bad\.yaml:\n {2}fake\.capacity: /);
  });

  it('refuses a config file that is not a mapping, naming the file', () => {
    const path = file('list', '- a\n');
    expect(() => validateProvider('fake', { nodeName: 'n', configFile: path })).toThrow(
      `${path}: not a YAML mapping`,
    );
  });

  it('starts the local cluster network only over a local provider', async () => {
    await expect(
      startClusterNetwork(new KubeConfig(), '/nonexistent', new FakeProvider(), {
        corednsBinary: '/nonexistent',
        nodeName: 'n',
        stateDir: '/nonexistent',
      }),
    ).rejects.toThrow("the local cluster network serves the local provider's bridge, not the fake provider");
  });
});
