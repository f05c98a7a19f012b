/**
 * Every label, annotation and finalizer spillway writes or reads, by the part that writes it. The webhooks turn the
 * pod labels into scheduling constraints, the virtual node registers with the node labels, the ElasticWorkload
 * controller stamps its own on what it creates; each key is written here once, so the parts cannot drift apart.
 */

/** Pod or namespace label: `overflow` or `always`. */
export const BURST_LABEL = 'spillway.dev/burst';
/** Pod label: `spot` or `on-demand`, mapped to provider annotations. */
export const CAPACITY_LABEL = 'spillway.dev/capacity';
/** ACK's pod label; `"true"` counts as `spillway.dev/burst: always` so that ACK manifests work unchanged. */
export const ECI_LABEL = 'alibabacloud.com/eci';
/** Node label `"true"` marking a virtual node. */
export const VIRTUAL_NODE_LABEL = 'spillway.dev/virtual-node';
/** ACK-compatible node label `type: virtual-kubelet`, which a virtual node also carries. */
export const NODE_TYPE_LABEL = 'type';
/** The value of {@link NODE_TYPE_LABEL} on a virtual node. */
export const VIRTUAL_KUBELET_TYPE = 'virtual-kubelet';
/** Node label naming the provider a virtual node runs its pods on (`eci`, `local`...). */
export const PROVIDER_LABEL = 'spillway.dev/provider';

/** The burst modes a pod or namespace can ask for. */
export const BURST_MODES = ['overflow', 'always'] as const;
/** How a pod may be placed on a virtual node. */
export type BurstMode = (typeof BURST_MODES)[number];
/** The capacity classes a pod can ask for. */
export const CAPACITY_CLASSES = ['spot', 'on-demand'] as const;
/** A capacity class on the virtual node. */
export type CapacityClass = (typeof CAPACITY_CLASSES)[number];

/** Every label key that makes the pod webhook act on a pod (used by the matchConditions too). */
export const POD_PLACEMENT_LABELS = [BURST_LABEL, CAPACITY_LABEL, ECI_LABEL] as const;

/** The labels a virtual node registers with. */
export const VIRTUAL_NODE_LABELS: Readonly<Record<string, string>> = {
  [VIRTUAL_NODE_LABEL]: 'true',
  [NODE_TYPE_LABEL]: VIRTUAL_KUBELET_TYPE,
};

/** On a unit Deployment, its selector and its pods: the name of the owning ElasticWorkload. */
export const LABEL_ELASTIC_WORKLOAD = 'spillway.dev/elastic-workload';
/** On a unit Deployment, its selector and its pods: the elastic unit's name. */
export const LABEL_UNIT = 'spillway.dev/unit';
/** On a unit Deployment: hash of the pod template it was built with, to tell whether it is up to date. */
export const ANNOTATION_TEMPLATE_HASH = 'spillway.dev/template-hash';
/**
 * On the source Deployment: its `spec.replicas` before an ElasticWorkload took it over. Kept on the source
 * rather than in status because it cannot be observed again once the controller has changed the source (API
 * conventions: status must be reconstructable), and it travels with the Deployment it describes.
 */
export const ANNOTATION_ORIGINAL_REPLICAS = 'spillway.dev/original-replicas';
/** On an ElasticWorkload: folds every replica back into the source before the units are deleted. */
export const FINALIZER = 'elastic.spillway.dev/fold-back';
