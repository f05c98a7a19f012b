/** Shared pods and configuration of the mapping tests. */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parseEciConfig, type EciConfig, type EciConfigInput } from './config.ts';

/** A valid configuration with cluster DNS and two vSwitches. */
export const baseConfig: EciConfigInput = {
  regionId: 'cn-hangzhou',
  credentials: { type: 'access_key', accessKeyId: 'ak', accessKeySecret: 'sk' },
  clusterId: 'c1',
  nodeName: 'vn-eci',
  vSwitchIds: ['vsw-a', 'vsw-b'],
  securityGroupId: 'sg-1',
  clusterDNS: '10.96.0.10',
};
/** The parsed base configuration with `over` applied. */
export const config = (over: Partial<EciConfigInput> = {}): EciConfig =>
  parseEciConfig({ ...baseConfig, ...over });

/** Pod `shop/web-1` with the given containers (the first is `app`, image nginx). */
export function pod(
  containers: Partial<V1Container>[] = [{}],
  extra: {
    spec?: Partial<NonNullable<V1Pod['spec']>>;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  } = {},
): V1Pod {
  return {
    metadata: {
      name: 'web-1',
      namespace: 'shop',
      uid: '0b6f2c9e-1111-2222-3333-444455556666',
      labels: extra.labels,
      annotations: extra.annotations,
    },
    spec: {
      containers: containers.map((c, i) => ({ name: i === 0 ? 'app' : `c${i}`, image: 'nginx:1.27', ...c })),
      ...extra.spec,
    },
  };
}

/** Resource limits. */
export const res = (cpu: string, memory: string) => ({ resources: { limits: { cpu, memory } } });
