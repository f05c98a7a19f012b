/**
 * The label, taint and node-identity contract of DESIGN.md §2.2, as constants. The webhooks translate these
 * labels into scheduling constraints; the virtual node registers the taints and labels named here, so that
 * the two halves cannot drift apart.
 */
import type { V1NodeSelectorRequirement, V1Taint, V1Toleration } from '@kubernetes/client-node';

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

/**
 * The taint that keeps ordinary pods off a virtual node (virtual-kubelet's convention). Its value is the
 * provider name, which is why tolerations use `Exists`.
 */
export const PROVIDER_TAINT_KEY = 'virtual-kubelet.io/provider';

/**
 * The soft taint that makes `overflow` hold against the real scheduler. A preferred node affinity alone is one
 * score among many (NodeResourcesFit, BalancedAllocation, ImageLocality...), and a huge, empty virtual node wins
 * those; TaintToleration scores a node lower for every intolerable PreferNoSchedule taint, so overflow pods
 * (which do not tolerate it) prefer real nodes on two scores, while `always` pods tolerate it and lose nothing.
 */
export const PREFER_TAINT_KEY = VIRTUAL_NODE_LABEL;

/** The taints a virtual node registers with (the provider name goes into the first one's value). */
export function virtualNodeTaints(provider: string): V1Taint[] {
  return [
    { key: PROVIDER_TAINT_KEY, value: provider, effect: 'NoSchedule' },
    { key: PREFER_TAINT_KEY, value: 'true', effect: 'PreferNoSchedule' },
  ];
}

/** The labels a virtual node registers with. */
export const VIRTUAL_NODE_LABELS: Readonly<Record<string, string>> = {
  [VIRTUAL_NODE_LABEL]: 'true',
  [NODE_TYPE_LABEL]: VIRTUAL_KUBELET_TYPE,
};

/** Tolerates the provider taint, whatever the provider (both `always` and `overflow` pods get it). */
export const PROVIDER_TOLERATION: Readonly<V1Toleration> = {
  key: PROVIDER_TAINT_KEY,
  operator: 'Exists',
  effect: 'NoSchedule',
};

/** Tolerates the soft taint: `always` pods only, so that overflow pods keep the TaintToleration penalty. */
export const PREFER_TOLERATION: Readonly<V1Toleration> = {
  key: PREFER_TAINT_KEY,
  operator: 'Exists',
  effect: 'PreferNoSchedule',
};

/** A node selector requirement that matches virtual nodes only. */
export const ON_VIRTUAL_NODE: Readonly<V1NodeSelectorRequirement> = {
  key: VIRTUAL_NODE_LABEL,
  operator: 'In',
  values: ['true'],
};

/**
 * A node selector requirement that matches every node except virtual ones. `NotIn` rather than `DoesNotExist`:
 * `NotIn` also matches nodes that lack the label (every real node), and it does not exclude a node that carries
 * the label with another value such as `"false"`.
 */
export const OFF_VIRTUAL_NODE: Readonly<V1NodeSelectorRequirement> = {
  key: VIRTUAL_NODE_LABEL,
  operator: 'NotIn',
  values: ['true'],
};
