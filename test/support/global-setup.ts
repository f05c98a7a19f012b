/**
 * vitest global setup for integration and e2e tests: starts the local control plane, or reuses the one
 * `make cluster-up` left running in the same folder (then it is left running afterwards too).
 */
import type { TestProject } from 'vitest/node';
import { LocalCluster } from './cluster.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = new LocalCluster();
  const t0 = performance.now();
  const started = await cluster.up((line) => console.log(`[cluster] ${line}`));
  console.log(
    `[cluster] ${started ? 'started' : 'reused'} in ${Math.round(performance.now() - t0)} ms: ${cluster.kubeconfigPath}`,
  );
  process.env.SPILLWAY_CLUSTER_DIR = cluster.dir;
  process.env.KUBECONFIG = cluster.kubeconfigPath;
  project.provide('kubeconfigPath', cluster.kubeconfigPath);
  return async () => {
    if (started && !process.env.KEEP_CLUSTER) await cluster.down();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
  }
}
