/**
 * The kill-soak's ECI side: the fake ECI endpoint (test/support/fake-eci) in the soak's own process, so that
 * its groups and its call log survive every kill of the operator, and a provider configuration file pointing
 * `spillway run --provider eci` at it (credentials from the environment, as the chart passes a Secret).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { fakeEciConfig } from '../../test/support/fake-eci/provider-config.ts';
import { FakeEci, type FakeGroup } from '../../test/support/fake-eci/server.ts';
import type { SoakProvider } from './soak-counts.ts';

const UID_TAG = 'spillway.dev/uid';
const uidOf = (g: FakeGroup) => g.tags.find((t) => t.Key === UID_TAG)?.Value ?? '(untagged)';

/** Starts the fake endpoint and returns the soak's view of an eci node over it. */
export async function eciSoakProvider(nodeName: string, kubeletPort: number): Promise<SoakProvider> {
  // Seconds in Scheduling and Pending, so that kills land while groups are still starting.
  const fake = await FakeEci.start({ timings: { schedulingMs: 2000, pendingMs: 2000 } });
  // Every group the endpoint ever created, per pod UID: the fake's store forgets deleted ones.
  const created = new Map<string, string[]>();
  const create = fake.store.create.bind(fake.store);
  fake.store.create = (request, regionId) => {
    const g = create(request, regionId);
    created.set(uidOf(g), [...(created.get(uidOf(g)) ?? []), g.id]);
    return g;
  };
  const dir = mkdtempSync(join(tmpdir(), 'spillway-soak-eci-'));
  const { credentials: _fromEnv, ...config } = fakeEciConfig(fake, {
    clusterId: 'soak',
    nodeName,
    // The shipped polling interval would stretch the soak; tests' 20 ms would load the shared cores.
    pollIntervalMs: 250,
    logPollIntervalMs: 1000,
  });
  const configFile = join(dir, 'eci.yaml');
  writeFileSync(configFile, stringify(config));
  return {
    name: 'eci',
    nodeName,
    args: [
      '--provider',
      'eci',
      '--provider-config',
      configFile,
      '--node-name',
      nodeName,
      '--kubelet-port',
      String(kubeletPort),
      '--metrics-port',
      '0',
    ],
    env: {
      ALIBABA_CLOUD_ACCESS_KEY_ID: fake.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: fake.accessKeySecret,
    },
    command: ['sleep', '3600'],
    instances() {
      const out = new Map<string, number>();
      for (const g of fake.groups()) out.set(uidOf(g), (out.get(uidOf(g)) ?? 0) + 1);
      return out;
    },
    creates() {
      const perUid = [...created.values()];
      return {
        instancesCreated: perUid.reduce((s, ids) => s + ids.length, 0),
        extraInstances: perUid.reduce((s, ids) => s + ids.length - 1, 0),
        createCalls: fake.calls('CreateContainerGroup'),
      };
    },
    duplicateRuns: () => null,
    broken: () => [],
    leftovers: () => ({ containerGroups: fake.groups().length }),
    details() {
      const rejected: Record<string, number> = {};
      for (const r of fake.rejected)
        rejected[`${r.action} ${r.code}`] = (rejected[`${r.action} ${r.code}`] ?? 0) + 1;
      const actions = ['CreateContainerGroup', 'DeleteContainerGroup', 'DescribeContainerGroups'];
      return { calls: Object.fromEntries(actions.map((a) => [a, fake.calls(a)])), rejected };
    },
    async close() {
      const left = fake.groups().map((g) => `container group ${g.id} (${uidOf(g)})`);
      // Let in-flight answers finish before the server goes.
      await sleep(200);
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
      return left;
    },
  };
}
