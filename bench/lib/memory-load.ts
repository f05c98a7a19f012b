/**
 * The load of bench/memory.ts, created and deleted in one namespace: ElasticWorkloads over the reconcile
 * benchmark's source Deployments, whose unit pods spillway's webhook places on the virtual node, and a
 * Deployment pinned to the virtual node for the rest of its pods.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import { elasticWorkload, sourceDeployment } from '../reconcile.ts';
import { isRunningReady, pinnedDeployment } from './pod-progress.ts';
import { forEachLimit, nowMs } from './stats.ts';
import { ObjectWatch } from './watch.ts';

export const NAMESPACE = 'bench-memory';
/** The node `spillway run --provider fake --node-name` registers. */
export const NODE_NAME = 'spillway-virtual-fake';
const IN_FLIGHT = 32;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Counts the pods Running and Ready on the virtual node: a watch on its field selector, and a list when asked
 * (a watch that expired restarts from "now" and misses what happened in between).
 */
export class NodePods {
  readonly watch: ObjectWatch<V1Pod>;
  readonly #running = new Set<string>();
  readonly #core: CoreV1Api;
  #listed = 0;

  constructor(kc: KubeConfig) {
    this.#core = kc.makeApiClient(CoreV1Api);
    this.watch = new ObjectWatch<V1Pod>(
      kc,
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      { fieldSelector: `spec.nodeName=${NODE_NAME}` },
      (type, pod) => {
        const uid = pod.metadata!.uid!;
        if (type !== 'DELETED' && isRunningReady(pod)) this.#running.add(uid);
        else this.#running.delete(uid);
      },
    );
  }

  get running(): number {
    return Math.max(this.#running.size, this.#listed);
  }

  /** Lists the node's Running pods (the count is the larger of the list's and the watch's). */
  async check(): Promise<void> {
    const list = await this.#core.listNamespacedPod({
      namespace: NAMESPACE,
      fieldSelector: `spec.nodeName=${NODE_NAME},status.phase=Running`,
    });
    this.#listed = list.items.filter(isRunningReady).length;
  }
}

/**
 * Creates the load: the pinned Deployment, the sources and their ElasticWorkloads. Resolves with how many pods
 * the virtual node is to run.
 */
export async function createLoad(
  kc: KubeConfig,
  o: { pods: number; elasticWorkloads: number },
): Promise<number> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
  const pinned = Math.max(0, o.pods - o.elasticWorkloads);
  await apps.createNamespacedDeployment({
    namespace: NAMESPACE,
    body: pinnedDeployment(NAMESPACE, 'pinned', NODE_NAME, pinned, {
      name: 'app',
      image: 'registry.example.com/pinned:1.0',
      resources: { requests: { cpu: '10m', memory: '16Mi' } },
    }),
  });
  const indices = Array.from({ length: o.elasticWorkloads }, (_, i) => i);
  await forEachLimit(indices, IN_FLIGHT, async (i) => {
    await apps.createNamespacedDeployment({ namespace: NAMESPACE, body: sourceDeployment(i, NAMESPACE) });
  });
  await forEachLimit(indices, IN_FLIGHT, async (i) => {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: NAMESPACE,
      body: elasticWorkload(i, NAMESPACE),
    });
  });
  return pinned + o.elasticWorkloads;
}

/**
 * Deletes the load with the operator stopped, without waiting for anyone's grace: the ElasticWorkloads'
 * finalizers are dropped and pods are deleted at once (the virtual node that would confirm them is gone).
 */
export async function deleteLoad(kc: KubeConfig): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const t0 = nowMs();
  const ews = (await custom
    .listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: NAMESPACE })
    .catch(() => ({ items: [] }))) as { items: { metadata: { name: string } }[] };
  await forEachLimit(ews.items, IN_FLIGHT, async (ew) => {
    await custom
      .patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: NAMESPACE,
          name: ew.metadata.name,
          body: { metadata: { finalizers: null } },
        },
        mergePatch,
      )
      .catch(() => undefined);
  });
  await core.deleteNamespace({ name: NAMESPACE }).catch(() => undefined);
  for (const deadline = Date.now() + 300_000; Date.now() < deadline; await sleep(2000)) {
    const gone = await core.readNamespace({ name: NAMESPACE }).then(
      () => false,
      () => true,
    );
    if (gone) {
      if (ews.items.length) console.log(`  memory: load deleted in ${((nowMs() - t0) / 1000).toFixed(0)} s`);
      return;
    }
    await core
      .deleteCollectionNamespacedPod({ namespace: NAMESPACE, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  }
  throw new Error(`namespace ${NAMESPACE} still there after 300 s`);
}
