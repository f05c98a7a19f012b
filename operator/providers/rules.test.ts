import type { V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { FakeProvider } from './fake/fake-provider.ts';
import { providerRules } from './rules.ts';

const spec = (o: Partial<V1PodSpec> = {}): V1PodSpec => ({
  containers: [{ name: 'web', image: 'nginx:1.27' }],
  ...o,
});

describe('static provider rules', () => {
  it.each<[string, string, V1PodSpec, string[]]>([
    ['local: an image without command runs its entrypoint', 'local', spec(), []],
    [
      'local: a container without an image',
      'local',
      spec({ containers: [{ name: 'web', command: ['sleep', '1'] }] }),
      ['spec.template.spec.containers[0].image'],
    ],
    [
      'local: a mount of a missing volume, a relative mount path',
      'local',
      spec({
        initContainers: [
          {
            name: 'init',
            image: 'busybox',
            command: ['true'],
            volumeMounts: [{ name: 'gone', mountPath: 'data' }],
          },
        ],
        containers: [{ name: 'web', image: 'busybox', command: ['sleep', '1'] }],
      }),
      [
        'spec.template.spec.initContainers[0].volumeMounts[0].name',
        'spec.template.spec.initContainers[0].volumeMounts[0].mountPath',
      ],
    ],
    ['eci: an image without command runs', 'eci', spec(), []],
    ['eci: a Windows pod', 'eci', spec({ os: { name: 'windows' } }), ['spec.template.spec.os.name']],
    [
      'eci: a native sidecar',
      'eci',
      spec({ initContainers: [{ name: 'proxy', image: 'envoy', restartPolicy: 'Always' }] }),
      ['spec.template.spec.initContainers[0].restartPolicy'],
    ],
    ['fake: runs anything', 'fake', spec({ os: { name: 'windows' } }), []],
  ])('%s', (_name, provider, s, paths) => {
    expect(providerRules(provider)?.(s, 'spec.template.spec').map((c) => c.path)).toEqual(paths);
  });

  it('the local refusal says what to do, and an unknown provider has no rules', () => {
    expect(providerRules('local')?.(spec({ containers: [{ name: 'web' }] }))[0]).toEqual({
      path: 'spec.containers[0].image',
      message: 'required: the local provider runs containers from images',
    });
    expect(providerRules('acme')).toBeUndefined();
    expect(providerRules('toString')).toBeUndefined();
  });

  it('the fake provider refuses at create what its rules name (the node-side backstop)', async () => {
    const fake = new FakeProvider({
      refuse: (s, base) =>
        s.containers[0]?.command ? [] : [{ path: `${base}.containers[0].command`, message: 'no' }],
    });
    expect(fake.unsupported(spec())).toEqual([{ path: 'spec.containers[0].command', message: 'no' }]);
    await expect(
      fake.create({ metadata: { name: 'p', namespace: 'n', uid: 'u1' }, spec: spec() }),
    ).rejects.toMatchObject({ code: 'InvalidPodSpec' });
    await fake.close();
  });
});
