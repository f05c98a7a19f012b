import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isInvalidPodSpec, type InvalidPodSpecError } from '../types.ts';
import { clientToken, containerGroupName, podToContainerGroup } from './mapping.ts';
import { config, pod, res } from './mapping.fixtures.ts';

describe('podToContainerGroup: what is rejected, and why', () => {
  it.each<[string, V1Pod, string, RegExp]>([
    [
      'hostPath volumes',
      pod([{}], { spec: { volumes: [{ name: 'h', hostPath: { path: '/var' } }] } }),
      'spec.volumes[0].hostPath',
      /use emptyDir or nfs/,
    ],
    [
      'PersistentVolumeClaims',
      pod([{}], { spec: { volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data' } }] } }),
      'spec.volumes[0].persistentVolumeClaim',
      /use an nfs volume/,
    ],
    [
      'SCTP ports',
      pod([{ ports: [{ containerPort: 9, protocol: 'SCTP' }] }]),
      'spec.containers[0].ports[0].protocol',
      /TCP and UDP/,
    ],
    [
      'hostPort',
      pod([{ ports: [{ containerPort: 80, hostPort: 80 }] }]),
      'spec.containers[0].ports[0].hostPort',
      /remove it/,
    ],
    [
      'gRPC probes',
      pod([{ livenessProbe: { grpc: { port: 9000 } } }]),
      'spec.containers[0].livenessProbe',
      /exec, httpGet and tcpSocket/,
    ],
    [
      'probes on an unknown named port',
      pod([{ readinessProbe: { httpGet: { port: 'metrics' } } }]),
      'spec.containers[0].readinessProbe.httpGet.port',
      /not a named port/,
    ],
    [
      'a pod bigger than any spec',
      pod([res('100', '8Gi')]),
      'spec.containers[*].resources',
      /largest ECI specification/,
    ],
    [
      'SpotWithPriceLimit without a limit',
      pod([{}], { annotations: { 'k8s.aliyun.com/eci-spot-strategy': 'SpotWithPriceLimit' } }),
      "metadata.annotations['k8s.aliyun.com/eci-spot-price-limit']",
      /needs a price limit/,
    ],
    [
      'an eci-use-specs pair ECI does not sell',
      pod([{}], { annotations: { 'k8s.aliyun.com/eci-use-specs': '3-5Gi' } }),
      "metadata.annotations['k8s.aliyun.com/eci-use-specs']",
      /not an ECI specification/,
    ],
    [
      'GPUs without an instance type',
      pod([{ resources: { limits: { 'nvidia.com/gpu': '1' } } }]),
      'spec.containers[*].resources.limits[nvidia.com/gpu]',
      /GPU instance type/,
    ],
    [
      'native sidecars',
      pod([{}], { spec: { initContainers: [{ name: 'proxy', image: 'envoy', restartPolicy: 'Always' }] } }),
      'spec.initContainers[0].restartPolicy',
      /move proxy to spec.containers/,
    ],
    [
      'privileged containers',
      pod([{ securityContext: { privileged: true } }]),
      'spec.containers[0].securityContext.privileged',
      /sandbox/,
    ],
    ['hostNetwork', pod([{}], { spec: { hostNetwork: true } }), 'spec.hostNetwork', /sandbox/],
  ])('rejects %s, naming the field', (_name, p, path, message) => {
    let caught: unknown;
    try {
      podToContainerGroup(p, {}, config());
    } catch (err) {
      caught = err;
    }
    expect(isInvalidPodSpec(caught)).toBe(true);
    const causes = (caught as InvalidPodSpecError).causes;
    expect(causes).toContainEqual({ path, message: expect.stringMatching(message) });
    expect((caught as Error).message).toContain(path);
  });

  it.each<[string, V1Pod, RegExp]>([
    ['startup probes', pod([{ startupProbe: { exec: { command: ['true'] } } }]), /startupProbe is ignored/],
    [
      'dropped capabilities',
      pod([{ securityContext: { capabilities: { drop: ['ALL'] } } }]),
      /cannot drop capabilities/,
    ],
    [
      'unknown ACK annotations',
      pod([{}], { annotations: { 'k8s.aliyun.com/eci-fancy': 'x' } }),
      /eci-fancy is not supported/,
    ],
    [
      'unresolved pull secrets',
      pod([{}], { spec: { imagePullSecrets: [{ name: 'missing' }] } }),
      /was not resolved/,
    ],
  ])('runs a pod with %s but warns', (_name, p, warning) => {
    expect(podToContainerGroup(p, {}, config()).warnings).toContainEqual(expect.stringMatching(warning));
  });
});

describe('names and tokens', () => {
  it('derives a ClientToken of at most 64 ASCII characters from any UID', () => {
    expect(clientToken('0b6f2c9e-1111-2222-3333-444455556666')).toBe(
      'spillway-0b6f2c9e-1111-2222-3333-444455556666',
    );
    const long = clientToken('x'.repeat(100));
    expect(long.length).toBeLessThanOrEqual(64);
    expect(long).toBe(clientToken('x'.repeat(100)));
    expect(clientToken('u', 'delete')).not.toBe(clientToken('u'));
  });

  it('turns namespace/name into a valid group name', () => {
    expect(containerGroupName('Team.A', 'web.v1_x')).toBe('team-a-web-v1-x');
    expect(containerGroupName('a', 'b'.repeat(200))).toHaveLength(128);
  });
});
