/**
 * The ECI provider after a lost answer and after a restart, against the fake ECI endpoint: a create replayed
 * with another body adopts the group its ClientToken made (ECI answers such a replay IdempotentParameterMismatch),
 * and a new provider's listing carries every instance's status, so adopting them costs no call per instance.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isInvalidPodSpec, type ResolvedPodInputs } from '../types.ts';
import { useFakeEci } from './provider.fixtures.ts';

let uid = 0;
function pod(name: string): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'default',
      uid: `00000000-0000-4000-9000-${String(++uid).padStart(12, '0')}`,
    },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] },
  };
}

/** The pod's inputs with a service-account token: minted anew for every create attempt, as the node does. */
const withToken = (token: string): ResolvedPodInputs => ({
  env: { app: [{ name: 'TOKEN', value: token }] },
});

const eci = useFakeEci();

describe('a create replayed after its answer was lost', () => {
  it('adopts the group its ClientToken made when the replay carries another body', async () => {
    // ECI's listings lag behind its creates: the replay cannot simply find the group by tag at once.
    eci.fake.store.timings.listingLagMs = 300;
    const p = eci.provider({ retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 10 } });
    const web = pod('web');
    // ECI makes the group, but neither the first answer nor the SDK-level retry's reaches the node.
    eci.fake.loseNextResponses('CreateContainerGroup', 2);
    await expect(p.create(web, withToken('first'))).rejects.toThrow();
    expect(eci.fake.groups()).toHaveLength(1);

    const replayed = await p.create(web, withToken('re-minted'));
    expect(eci.fake.rejectedWith('IdempotentParameterMismatch')).toBe(1);
    const [group] = eci.fake.groups();
    expect(eci.fake.groups()).toHaveLength(1);
    expect(replayed.containers[0]?.containerID).toBe(`eci://${group!.id}/app`);
    expect(replayed.phase).not.toBe('Failed');
  });

  it('never reports a reused ClientToken as a spec the provider cannot run', async () => {
    const p = eci.provider({ retry: { maxAttempts: 1, baseDelayMs: 5, maxDelayMs: 10 } });
    const web = pod('web');
    eci.fake.loseNextResponses('CreateContainerGroup', 1);
    await expect(p.create(web, withToken('first'))).rejects.toThrow();
    // ECI does not list the group for a long while: the replay fails, retryably, and never as UnsupportedPodSpec.
    eci.fake.store.timings.listingLagMs = 60_000;
    const err = await p.create(web, withToken('second')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isInvalidPodSpec(err)).toBe(false);
  });
});

describe('a restart', () => {
  it('lists every instance with its status in the listing pages alone', async () => {
    const first = eci.provider();
    const pods = Array.from({ length: 45 }, (_, i) => pod(`web-${i}`));
    for (const p of pods) await first.create(p);
    await first.close();

    const second = eci.provider();
    const listed = await second.list();
    expect(listed).toHaveLength(45);
    for (const inst of listed) {
      expect(inst.status?.key.uid).toBe(inst.key.uid);
      expect(inst.status?.containers[0]?.containerID).toBe(`eci://${inst.providerID}/app`);
    }
    // One listing of 20 groups a page (ECI's maximum): 3 calls for 45 instances, none per instance.
    expect(second.api.stats.calls.DescribeContainerGroups).toBeLessThanOrEqual(Math.ceil(45 / 20));
  });
});
