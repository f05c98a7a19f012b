/** Per-test namespaces: each test file works in its own namespace and deletes it afterwards. */
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { waitFor } from './cluster.ts';

/**
 * Creates a namespace named `<prefix>-<random>` and waits until its default ServiceAccount exists
 * (pods cannot be created before that). Returns its name and a function that deletes it.
 */
export async function createTestNamespace(
  kc: KubeConfig,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<{ name: string; remove: () => Promise<void> }> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name, labels } } });
  await waitFor(`default ServiceAccount in ${name}`, 30_000, async () => {
    await core.readNamespacedServiceAccount({ name: 'default', namespace: name });
    return true;
  });
  return {
    name,
    remove: async () => {
      await core.deleteNamespace({ name }).catch(() => undefined);
    },
  };
}
