/**
 * The ElasticWorkload controller's informers: what it watches, and how narrowly (pods only of the phases it reads,
 * nodes only spillway's virtual ones), cluster-wide or in the namespaces it is confined to.
 */
import type { KubeConfig, KubernetesObject, V1Deployment, V1Node, V1Pod } from '@kubernetes/client-node';
import type { Clients } from '../shared/client.ts';
import { informerFor } from '../shared/informer.ts';
import { scopedInformer, type CachedInformer } from '../shared/namespaced-informers.ts';
import { VIRTUAL_NODE_LABEL } from '../../api/labels.ts';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import { LABEL_ELASTIC_WORKLOAD } from '../../api/labels.ts';

/** The label selector of the virtual-node informer. */
const VIRTUAL_NODE_SELECTOR = `${VIRTUAL_NODE_LABEL}=true`;

/** The informers of {@link controllerInformers}, not started. */
export interface ControllerInformers {
  /** ElasticWorkloads as the apiserver stores them (plain JSON: metadata times are strings). */
  ews: CachedInformer<KubernetesObject>;
  deployments: CachedInformer<V1Deployment>;
  /** Pending pods: Unschedulable source pods drive overflow, Unschedulable unit pods the Capped condition. */
  pendingPods: CachedInformer<V1Pod>;
  /** Failed unit pods. */
  failedPods: CachedInformer<V1Pod>;
  /** spillway's virtual nodes (label-selected: a handful, never the cluster's nodes). */
  virtualNodes: CachedInformer<V1Node>;
}

/**
 * Builds the controller's informers.
 * @param scope the namespaces to watch; undefined: all (nodes are cluster-scoped either way)
 */
export function controllerInformers(
  kc: KubeConfig,
  c: Clients,
  scope: readonly string[] | undefined,
): ControllerInformers {
  /** A collection's path, cluster-wide or in one namespace (`base` is the group-version prefix). */
  const at = (base: string, plural: string, ns?: string) =>
    ns ? `${base}/namespaces/${ns}/${plural}` : `${base}/${plural}`;
  const ews = scopedInformer<KubernetesObject>(kc, 'elasticworkloads', scope, (ns) => ({
    path: at(`/apis/${GROUP}/${VERSION}`, PLURAL, ns),
    list: async () =>
      (ns
        ? await c.customObjects.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: PLURAL,
          })
        : await c.customObjects.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
          })) as never,
  }));
  const deployments = scopedInformer<V1Deployment>(kc, 'deployments', scope, (ns) => ({
    path: at('/apis/apps/v1', 'deployments', ns),
    list: () =>
      ns ? c.apps.listNamespacedDeployment({ namespace: ns }) : c.apps.listDeploymentForAllNamespaces(),
  }));
  /** Pods of one phase (and label selector), cluster-wide or in one namespace. */
  const pods = (fieldSelector: string, labelSelector?: string) => (ns?: string) => ({
    path: at('/api/v1', 'pods', ns),
    fieldSelector,
    ...(labelSelector ? { labelSelector } : {}),
    list: () =>
      ns
        ? c.core.listNamespacedPod({ namespace: ns, fieldSelector, labelSelector })
        : c.core.listPodForAllNamespaces({ fieldSelector, labelSelector }),
  });
  // Only Pending pods: Unschedulable source pods drive capacity-aware overflow.
  const pendingPods = scopedInformer<V1Pod>(kc, 'pending-pods', scope, pods('status.phase=Pending'));
  // Only unit pods: a cluster's failed Jobs are none of this controller's business (or memory).
  const failedPods = scopedInformer<V1Pod>(
    kc,
    'failed-pods',
    scope,
    pods('status.phase=Failed', LABEL_ELASTIC_WORKLOAD),
  );
  const virtualNodes = informerFor<V1Node>(kc, 'elasticworkload-virtual-nodes', {
    path: '/api/v1/nodes',
    labelSelector: VIRTUAL_NODE_SELECTOR,
    list: () => c.core.listNode({ labelSelector: VIRTUAL_NODE_SELECTOR }),
  });
  return { ews, deployments, pendingPods, failedPods, virtualNodes };
}
