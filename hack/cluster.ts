/**
 * make cluster-up / make cluster-down: the local control plane in the background.
 *
 *   node hack/cluster.ts up      start (or reuse) it: the control plane, the image registry and (as root) containerd;
 *                                prints where the registry and the CRI endpoint are, and last `export KUBECONFIG=<path>`
 *   node hack/cluster.ts down    stop every process it started, by pid, and the sandboxes its local virtual nodes
 *                                left running (test/support/local-leftovers.ts)
 *   node hack/cluster.ts nodes   add the real kubelet nodes (as root; test/support/real-nodes.ts) with the cluster DNS
 *                                and metrics-server, from the registry's images (push them first: make cluster-up does)
 *   node hack/cluster.ts status  exit 0 when it is running
 */
import { LocalCluster } from '../test/support/cluster.ts';

const cluster = new LocalCluster();
const command = process.argv[2];
try {
  if (command === 'up') {
    const t0 = performance.now();
    const started = await cluster.up((line) => console.log(line));
    console.log(
      `cluster ${started ? 'started' : 'already running'} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    console.log(`registry: ${cluster.registry} (images: make images)`);
    if (process.getuid?.() === 0) {
      console.log(
        `CRI endpoint: ${cluster.criEndpoint} (bin/crictl --runtime-endpoint ${cluster.criEndpoint} ps)`,
      );
    }
    console.log(`export KUBECONFIG=${cluster.kubeconfigPath}`);
  } else if (command === 'nodes') {
    const t0 = performance.now();
    await cluster.addRealNodes((line) => console.log(line));
    console.log(
      `real nodes ${cluster.realNodes.map((n) => n.name).join(', ')} ready (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    console.log(`export KUBECONFIG=${cluster.kubeconfigPath}`);
  } else if (command === 'status') {
    const running = await cluster.isRunning();
    console.log(running ? `running: export KUBECONFIG=${cluster.kubeconfigPath}` : 'not running');
    process.exit(running ? 0 : 1);
  } else if (command === 'down') {
    await cluster.down((line) => console.log(line));
    console.log('cluster stopped');
  } else {
    console.error('usage: node hack/cluster.ts up|nodes|down|status');
    process.exit(2);
  }
} catch (err) {
  console.error(`cluster ${command}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
