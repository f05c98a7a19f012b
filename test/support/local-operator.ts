/**
 * `spillway run --provider local` as a child process, as `make run PROVIDER=local` runs it: the webhooks, the
 * ElasticWorkload controller and a virtual node of its own whose pods run in the test cluster's containerd. For e2e
 * files that need the whole operator (HPA, Spark, Jenkins agents); `stop()` waits for the node's pods to go first.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { waitFor } from '../../operator/shared/wait.ts';
import { removeLocalNetwork, removeNodeState } from './local-network.ts';
import { freePort } from './ports.ts';
import { nodeReady, spillway, type SpillwayProcess } from './spillway-process.ts';

export interface LocalOperator {
  nodeName: string;
  process: SpillwayProcess;
  /** Waits (up to a minute) for the node's pods to go, stops the operator, and removes the Node and its state. */
  stop(): Promise<void>;
}

/** Starts the operator with virtual node `nodeName` over `criEndpoint` and waits until the node is Ready. */
export async function startLocalOperator(
  kc: KubeConfig,
  kubeconfigPath: string,
  nodeName: string,
  criEndpoint: string,
): Promise<LocalOperator> {
  const core = kc.makeApiClient(CoreV1Api);
  const process = spillway(
    kubeconfigPath,
    'run',
    '--provider',
    'local',
    '--node-name',
    nodeName,
    '--kubelet-port',
    String(await freePort()),
    '--metrics-port',
    '0',
    '--cri-endpoint',
    criEndpoint,
  );
  await waitFor(`virtual node ${nodeName} Ready`, 90_000, () => nodeReady(core, nodeName).catch(() => false));
  return {
    nodeName,
    process,
    stop: async () => {
      await waitFor(`pods of ${nodeName} gone`, 60_000, async () => {
        const pods = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` });
        return pods.items.length === 0;
      }).catch(() => undefined);
      process.child.kill('SIGTERM');
      await process.exited;
      await core.deleteNode({ name: nodeName }).catch(() => undefined);
      await removeNodeState(nodeName);
      await removeLocalNetwork();
    },
  };
}
