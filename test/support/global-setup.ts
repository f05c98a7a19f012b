/**
 * vitest global setup for integration and e2e tests: starts the local control plane, or reuses the one
 * `make cluster-up` left running in the same folder (then it is left running afterwards too), and seeds its
 * registry with every catalog image (hack/images/catalog.ts), so that tests run `imageRef('busybox', registry)`
 * with `registry = inject('registry')` (also in SPILLWAY_REGISTRY). Seeding builds from the layer cache and
 * pushes only what the registry lacks: seconds when nothing changed. The e2e tier gets the real kubelet nodes
 * (test/support/real-nodes.ts) with their addons; the integration tier schedules onto the kwok nodes.
 */
import type { TestProject } from 'vitest/node';
import { ALL_IMAGES } from '../../hack/build-images.ts';
import { mb } from '../../hack/images/store.ts';
import { LocalCluster } from './cluster.ts';
import { seedImages } from './registry.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = new LocalCluster();
  const t0 = performance.now();
  const started = await cluster.up((line) => console.log(`[cluster] ${line}`));
  console.log(
    `[cluster] ${started ? 'started' : 'reused'} in ${Math.round(performance.now() - t0)} ms: ${cluster.kubeconfigPath}`,
  );
  const t1 = performance.now();
  // The e2e tier also installs the chart as pods: the operator's image too.
  const seeded = await seedImages(cluster.registry, project.name === 'e2e' ? ALL_IMAGES : undefined);
  console.log(
    `[cluster] registry ${cluster.registry} seeded in ${Math.round(performance.now() - t1)} ms: ` +
      `${seeded.pushed.length > 0 ? `pushed ${seeded.pushed.join(', ')} (${seeded.uploaded} blobs, ${mb(seeded.bytes)})` : 'nothing to push'}` +
      `${seeded.present.length > 0 ? `; already there: ${seeded.present.join(', ')}` : ''}`,
  );
  // The e2e tier runs on real kubelet nodes (as root), the integration tier on the kwok ones: each cordons the
  // other kind, so that a test's ordinary pods land where its tier expects them.
  if (project.name === 'e2e' && process.getuid?.() === 0) {
    const t2 = performance.now();
    const had = cluster.realNodes.length > 0;
    await cluster.addRealNodes((line) => console.log(`[cluster] ${line}`));
    console.log(
      `[cluster] real nodes ${had ? 'reused' : 'added'} in ${Math.round(performance.now() - t2)} ms: ` +
        cluster.realNodes.map((n) => n.name).join(', '),
    );
  } else if (cluster.realNodes.length > 0) {
    await cluster.useKwokNodes(true);
  }
  process.env.SPILLWAY_CLUSTER_DIR = cluster.dir;
  process.env.KUBECONFIG = cluster.kubeconfigPath;
  process.env.SPILLWAY_REGISTRY = cluster.registry;
  project.provide('kubeconfigPath', cluster.kubeconfigPath);
  project.provide('registry', cluster.registry);
  project.provide(
    'realNodes',
    cluster.realNodes.map((n) => n.name),
  );
  return async () => {
    if (started && !process.env.KEEP_CLUSTER) await cluster.down();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    /** The local cluster's registry, `localhost:PORT`, holding every catalog image. */
    registry: string;
    /** The real kubelet nodes the e2e tier runs on (none in the integration tier, or without root). */
    realNodes: string[];
  }
}
