/**
 * Pod placement (mutating): turns spillway's labels (docs/architecture.md#labels-annotations-taints-and-finalizers) into scheduling constraints and provider
 * annotations. A pure function of the pod, its namespace's labels and a policy; it returns the edited pod and
 * the JSON Patch that makes the same edits to the raw request object (patch.ts).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { CAPACITY_CLASSES, CAPACITY_LABEL, type CapacityClass } from '../api/labels.ts';
import { resolveBurst } from '../api/placement.ts';
import { sandboxViolations } from '../api/sandbox-rules.ts';
import { OFF_VIRTUAL_NODE, ON_VIRTUAL_NODE, PREFER_TOLERATION, PROVIDER_TOLERATION } from '../api/taints.ts';
import { ObjectEdit, type Draft, type PatchOperation } from './patch.ts';
import { addPreferred, addToleration, requireOnEveryTerm } from './scheduling.ts';

/** How a provider expresses each capacity class: annotations to add to the pod. */
export type CapacityAnnotations = Record<CapacityClass, Readonly<Record<string, string>>>;

/**
 * Alibaba Cloud ECI (help.aliyun.com, "ECI Pod Annotation"): `k8s.aliyun.com/eci-spot-strategy` takes
 * `SpotAsPriceGo` (bid the market price) or `SpotWithPriceLimit` (then `k8s.aliyun.com/eci-spot-price-limit` is
 * required); `k8s.aliyun.com/eci-spot-duration` is the protection period. On-demand is ECI's default, so it
 * needs no annotation; a user who wants a price limit or a duration writes those annotations and we keep them.
 */
export const ECI_CAPACITY_ANNOTATIONS: CapacityAnnotations = {
  spot: { 'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo' },
  'on-demand': {},
};

/** What the placement webhook does with a pod's labels. */
export interface PlacementPolicy {
  capacityAnnotations: CapacityAnnotations;
  /** Weight of the preferred node affinity towards real nodes for `overflow` pods (1–100). */
  overflowPreferenceWeight: number;
}

/** The defaults: ECI annotations, the strongest preference the API allows. */
export const DEFAULT_PLACEMENT_POLICY: PlacementPolicy = {
  capacityAnnotations: ECI_CAPACITY_ANNOTATIONS,
  overflowPreferenceWeight: 100,
};

/** An edited admission object, the patch that turns the raw object into it, and the warnings to return. */
export interface Mutation<T> {
  /** The edited object (copy-on-write: it shares what did not change with the raw object; do not modify it). */
  object: T;
  /** `add` operations against the raw object, in order; empty when nothing changed. */
  patch: PatchOperation[];
  warnings: string[];
}

const isCapacity = (v: string): v is CapacityClass => (CAPACITY_CLASSES as readonly string[]).includes(v);

function addCapacityAnnotations(pod: Draft<V1Pod>, policy: PlacementPolicy, warnings: string[]): void {
  const capacity = pod.value.metadata?.labels?.[CAPACITY_LABEL];
  if (capacity === undefined) return;
  if (!isCapacity(capacity)) {
    warnings.push(
      `ignoring pod label ${CAPACITY_LABEL}=${capacity}: use one of ${CAPACITY_CLASSES.join(', ')}`,
    );
    return;
  }
  for (const [key, value] of Object.entries(policy.capacityAnnotations[capacity])) {
    const current = pod.value.metadata?.annotations?.[key];
    // The user's own annotation wins: it may carry a price limit or a strategy we do not know about.
    if (current === undefined) pod.object('metadata').object('annotations').set(key, value);
    else if (current !== value) {
      warnings.push(
        `keeping annotation ${key}=${current} although ${CAPACITY_LABEL}=${capacity} implies ${value}`,
      );
    }
  }
}

/**
 * Places a pod. `always`: tolerate the provider taint and the soft taint, and require a virtual node.
 * `overflow`: tolerate only the provider taint and prefer real nodes, so the pod fills real nodes first; if the
 * pod uses something a sandbox cannot run, it gets no toleration but a required exclusion of virtual nodes
 * (so it never spills, even with a wildcard toleration of its own) and a warning naming the fields.
 * `capacity` adds the provider's annotations. Idempotent: placing the result again changes nothing.
 * @param raw the pod from the AdmissionRequest; not modified
 */
export function placePod(
  raw: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  policy: PlacementPolicy = DEFAULT_PLACEMENT_POLICY,
): Mutation<V1Pod> {
  const warnings: string[] = [];
  const edit = new ObjectEdit(raw);
  const pod = edit.root();
  const burst = resolveBurst(raw, namespaceLabels, warnings);
  if (burst?.mode === 'always') {
    const spec = pod.object('spec', { containers: [] });
    addToleration(spec, PROVIDER_TOLERATION);
    addToleration(spec, PREFER_TOLERATION);
    requireOnEveryTerm(spec, ON_VIRTUAL_NODE);
  } else if (burst?.mode === 'overflow') {
    const spec = pod.object('spec', { containers: [] });
    const violations = sandboxViolations(raw.spec, raw.metadata?.ownerReferences);
    if (violations.length > 0) {
      requireOnEveryTerm(spec, OFF_VIRTUAL_NODE);
      warnings.push(
        `${burst.source}: this pod will not spill to a virtual node, because a sandbox cannot run ` +
          `${violations.map((v) => v.path).join(', ')}; remove those to let it burst`,
      );
    } else {
      addToleration(spec, PROVIDER_TOLERATION);
      addPreferred(spec, {
        weight: policy.overflowPreferenceWeight,
        preference: { matchExpressions: [OFF_VIRTUAL_NODE] },
      });
    }
  }
  addCapacityAnnotations(pod, policy, warnings);
  return { object: edit.result, patch: edit.patch, warnings };
}
