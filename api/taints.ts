/**
 * The taints a virtual node registers with, the tolerations the placement webhook gives burst pods, and the node
 * selector requirements that send a pod onto or keep it off virtual nodes. The webhooks write the pod side, the
 * virtual node the node side; both read them from here.
 */
import type { V1NodeSelectorRequirement, V1Taint, V1Toleration } from '@kubernetes/client-node';
import { VIRTUAL_NODE_LABEL } from './labels.ts';

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
