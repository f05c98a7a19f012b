import type { V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { describeViolations, sandboxViolations } from './sandbox-rules.ts';

const plain: V1PodSpec = { containers: [{ name: 'app', image: 'nginx', ports: [{ containerPort: 80 }] }] };

describe('sandboxViolations', () => {
  it.each<[string, V1PodSpec, string[]]>([
    ['a plain pod', plain, []],
    ['hostNetwork', { ...plain, hostNetwork: true }, ['spec.hostNetwork']],
    ['hostPID and hostIPC', { ...plain, hostPID: true, hostIPC: true }, ['spec.hostPID', 'spec.hostIPC']],
    [
      'a hostPath volume',
      {
        ...plain,
        volumes: [
          { name: 'a', emptyDir: {} },
          { name: 'logs', hostPath: { path: '/var/log' } },
        ],
      },
      ['spec.volumes[1].hostPath'],
    ],
    [
      'a privileged init container',
      { ...plain, initContainers: [{ name: 'setup', securityContext: { privileged: true } }] },
      ['spec.initContainers[0].securityContext.privileged'],
    ],
    [
      'a hostPort on the second container',
      {
        containers: [
          plain.containers[0]!,
          { name: 'b', ports: [{ containerPort: 1 }, { containerPort: 2, hostPort: 8080 }] },
        ],
      },
      ['spec.containers[1].ports[1].hostPort'],
    ],
    ['privileged: false', { containers: [{ name: 'a', securityContext: { privileged: false } }] }, []],
  ])('%s', (_name, spec, paths) => {
    expect(sandboxViolations(spec).map((v) => v.path)).toEqual(paths);
  });

  it('names the DaemonSet owner', () => {
    const v = sandboxViolations(plain, [
      { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'fluentd', uid: 'u' },
    ]);
    expect(v).toEqual([
      { path: 'metadata.ownerReferences', message: expect.stringContaining('DaemonSet fluentd') },
    ]);
  });

  it('prefixes paths with the template path of a workload and says what to do', () => {
    const v = sandboxViolations({ ...plain, hostNetwork: true }, [], 'spec.template.spec');
    expect(describeViolations(v)).toBe(
      'spec.template.spec.hostNetwork: hostNetwork is not supported in a sandbox: remove hostNetwork; reach the pod through a Service instead',
    );
  });
});
