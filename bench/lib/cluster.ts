/**
 * The benchmarks' own control plane (`bench/.cluster`, apart from the tests' and `make cluster-up`'s), started
 * fresh by default so that leftovers of an earlier run do not load the one being measured.
 */
import { CoreV1Api, type KubeConfig, type V1Node } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalCluster, waitFor } from '../../test/support/cluster.ts';
import { benchDir } from './results.ts';

export const benchClusterDir = process.env.BENCH_CLUSTER_DIR ?? join(benchDir, '.cluster');

/** Starts the benchmark cluster (restarting it unless `reuse`); returns it and its admin KubeConfig. */
export async function benchCluster(opts: { reuse?: boolean } = {}): Promise<{
  cluster: LocalCluster;
  kc: KubeConfig;
}> {
  const cluster = new LocalCluster(benchClusterDir);
  if (!opts.reuse && (await cluster.isRunning())) await cluster.down();
  const t0 = Date.now();
  await cluster.up((line) => console.log(`  cluster: ${line}`));
  console.log(`  cluster: up in ${((Date.now() - t0) / 1000).toFixed(1)} s (${cluster.dir})`);
  return { cluster, kc: cluster.kubeConfig() };
}

/**
 * Registers nodes that the cluster's kwok manages (they turn Ready and run their pods at once), with room for
 * `pods` pods each; resolves once they are Ready.
 */
export async function addKwokNodes(kc: KubeConfig, names: string[], pods = 1000): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (const name of names) {
    const resources = { cpu: '1000', memory: '4Ti', pods: String(pods) };
    const node: V1Node = {
      metadata: {
        name,
        annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: { type: 'kwok', 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' },
      },
      status: { capacity: resources, allocatable: resources },
    };
    await core.createNode({ body: node }).catch((err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
  }
  await waitFor(`kwok nodes ${names.join(', ')} Ready`, 60_000, async () => {
    const nodes = await core.listNode();
    const ready = new Set(
      nodes.items
        .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
        .map((n) => n.metadata?.name),
    );
    return names.every((n) => ready.has(n));
  });
}

/** The pid of one of the cluster's components (to sample kwok's CPU and memory). */
export function componentPid(cluster: LocalCluster, component: string): number | undefined {
  try {
    return Number(readFileSync(join(cluster.dir, 'pids', `${component}.pid`), 'utf8'));
  } catch {
    return undefined;
  }
}
