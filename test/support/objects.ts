/** The objects integration tests create again and again: a one-container Deployment and an ElasticWorkload. */
import {
  AppsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Deployment,
  type V1PodSpec,
} from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
  type ElasticWorkloadInput,
} from '../../api/elasticworkload.ts';

/**
 * A Deployment `name` of `replicas` pods labelled `app: <name>` (plus `labels`), one container `name` running
 * `image`; `spec` adds to or overrides the pod spec.
 */
export function deployment(
  name: string,
  replicas: number,
  opts: { image?: string; labels?: Record<string, string>; spec?: Partial<V1PodSpec> } = {},
): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, ...opts.labels } },
        spec: { containers: [{ name, image: opts.image ?? 'registry.k8s.io/pause:3.10' }], ...opts.spec },
      },
    },
  };
}

/** Creates `d` in `namespace`. */
export function createDeployment(kc: KubeConfig, namespace: string, d: V1Deployment): Promise<V1Deployment> {
  return kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace, body: d });
}

/** Creates the ElasticWorkload `name` with `spec` in `namespace` (rejects with the apiserver's message). */
export function createElasticWorkload(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: ElasticWorkloadInput['spec'],
): Promise<object> {
  const body: ElasticWorkloadInput = { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec };
  return kc
    .makeApiClient(CustomObjectsApi)
    .createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, body });
}
