/**
 * The `eci` provider configuration that points the real SDK at a {@link FakeEci}: loopback endpoint, plain
 * http, the fake's access key, and fast polling and back-off so tests wait for behaviour, not for the clock.
 */
import type { EciConfigInput } from '../../../operator/providers/eci/config.ts';
import type { FakeEci } from './server.ts';

/** A provider configuration for `fake`, with `overrides` on top. */
export function fakeEciConfig(fake: FakeEci, overrides: Partial<EciConfigInput> = {}): EciConfigInput {
  return {
    regionId: fake.regionId,
    endpoint: fake.endpoint,
    protocol: 'http',
    credentials: { type: 'access_key', accessKeyId: fake.accessKeyId, accessKeySecret: fake.accessKeySecret },
    clusterId: 'test-cluster',
    nodeName: 'vn-eci',
    vSwitchIds: ['vsw-a', 'vsw-b'],
    securityGroupId: 'sg-test',
    clusterDNS: '10.96.0.10',
    pollIntervalMs: 20,
    logPollIntervalMs: 20,
    retry: { maxAttempts: 5, baseDelayMs: 5, maxDelayMs: 50 },
    ...overrides,
  };
}
