import { describe, expect, it } from 'vitest';
import { defaultCriEndpoint, LOCAL_NODE_CIDR, parseLocalConfig } from './factory.ts';

const ctx = (env: NodeJS.ProcessEnv = {}, podCIDR?: string) => ({
  nodeName: 'burst-local',
  env,
  ...(podCIDR ? { podCIDR } : {}),
});

describe('local provider configuration', () => {
  it('defaults to the local cluster containerd and runc', () => {
    expect(parseLocalConfig(undefined, ctx({ SPILLWAY_CLUSTER_DIR: '/tmp/c' }))).toEqual({
      nodeName: 'burst-local',
      nodeCIDR: LOCAL_NODE_CIDR,
      criEndpoint: '/tmp/c/containerd/containerd.sock',
      runtimeHandler: 'runc',
    });
    expect(defaultCriEndpoint({})).toMatch(/\/\.cluster\/containerd\/containerd\.sock$/);
  });

  it('takes the socket and handler from the environment, and the config file over it', () => {
    const env = {
      SPILLWAY_CRI_ENDPOINT: '/run/containerd/containerd.sock',
      SPILLWAY_RUNTIME_HANDLER: 'kata',
    };
    expect(parseLocalConfig(undefined, ctx(env, '10.250.1.0/24'))).toMatchObject({
      nodeCIDR: '10.250.1.0/24',
      criEndpoint: '/run/containerd/containerd.sock',
      runtimeHandler: 'kata',
    });
    expect(
      parseLocalConfig({ criEndpoint: 'unix:///x.sock', runtimeHandler: 'runsc' }, ctx(env)),
    ).toMatchObject({
      criEndpoint: 'unix:///x.sock',
      runtimeHandler: 'runsc',
    });
  });

  it('refuses an empty handler, naming the field', () => {
    expect(() => parseLocalConfig({ runtimeHandler: '' }, ctx())).toThrow(/runtimeHandler/);
  });
});
