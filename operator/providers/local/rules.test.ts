import { describe, expect, it } from 'vitest';
import type { V1PodSpec } from '@kubernetes/client-node';
import { localUnsupported } from './rules.ts';

const spec = (extra: Partial<V1PodSpec> = {}): V1PodSpec => ({
  containers: [{ name: 'web', image: 'nginx' }],
  ...extra,
});

describe('localUnsupported', () => {
  it.each<[string, V1PodSpec]>([
    ['an image without command (its entrypoint runs)', spec()],
    ['a Linux pod', spec({ os: { name: 'linux' } })],
    [
      'a mount of a volume the pod has',
      spec({
        volumes: [{ name: 'data', emptyDir: {} }],
        containers: [{ name: 'web', image: 'nginx', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      }),
    ],
  ])('runs %s', (_name, s) => {
    expect(localUnsupported(s)).toEqual([]);
  });

  it('refuses a Windows pod, saying what to change', () => {
    expect(localUnsupported(spec({ os: { name: 'windows' } }), 'spec.template.spec')).toEqual([
      {
        path: 'spec.template.spec.os.name',
        message: 'the local provider runs Linux containers only: remove spec.os or set it to linux',
      },
    ]);
  });

  it('names every container without an image and every bad mount, init containers first', () => {
    const causes = localUnsupported(
      spec({
        initContainers: [{ name: 'init' }],
        containers: [{ name: 'web', image: 'nginx', volumeMounts: [{ name: 'gone', mountPath: 'data' }] }],
      }),
    );
    expect(causes.map((c) => c.path)).toEqual([
      'spec.initContainers[0].image',
      'spec.containers[0].volumeMounts[0].name',
      'spec.containers[0].volumeMounts[0].mountPath',
    ]);
  });
});
