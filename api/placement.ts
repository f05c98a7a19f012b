/**
 * Where a pod goes: which burst mode applies to it (its labels, ACK's label, its namespace's label) and why it
 * would run on a virtual node. The placement and validating webhooks decide admission with these; the
 * ElasticWorkload controller asks the same of a unit's pod template before it scales the unit.
 */
import type { V1Node, V1NodeSelectorTerm, V1Pod } from '@kubernetes/client-node';
import {
  BURST_LABEL,
  BURST_MODES,
  ECI_LABEL,
  NODE_TYPE_LABEL,
  VIRTUAL_KUBELET_TYPE,
  VIRTUAL_NODE_LABEL,
  type BurstMode,
} from './labels.ts';
import { virtualNodeFit } from './node-match.ts';

/** The burst mode that applies to a pod, and which label said so (for messages). */
export interface BurstDecision {
  mode: BurstMode;
  /** e.g. `pod label spillway.dev/burst=always` or `namespace label spillway.dev/burst=overflow`. */
  source: string;
}

/** Whether `v` is one of {@link BURST_MODES}. */
export const isBurstMode = (v: string): v is BurstMode => (BURST_MODES as readonly string[]).includes(v);
/**
 * Pods whose node is fixed by design: DaemonSet pods (one per real node) and mirror pods (static pods of a
 * kubelet). A namespace-wide burst label must not move them; only a label on the pod itself can (and then the
 * validating webhook explains why a DaemonSet pod cannot burst).
 */
export function isNodeBoundPod(pod: V1Pod): boolean {
  const meta = pod.metadata ?? {};
  if (meta.annotations?.['kubernetes.io/config.mirror'] !== undefined) return true;
  return (meta.ownerReferences ?? []).some((r) => r.kind === 'DaemonSet' || r.kind === 'Node');
}

/**
 * Which burst mode applies: the pod's own `spillway.dev/burst`, then ACK's `alibabacloud.com/eci: "true"` on the
 * pod, then the namespace's `spillway.dev/burst` (not for node-bound pods). An unknown value is ignored with a
 * warning and the next source decides, so a typo never makes a pod burst.
 */
export function resolveBurst(
  pod: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  warnings: string[] = [],
): BurstDecision | undefined {
  const labels = pod.metadata?.labels ?? {};
  const podBurst = labels[BURST_LABEL];
  if (podBurst !== undefined) {
    if (isBurstMode(podBurst)) return { mode: podBurst, source: `pod label ${BURST_LABEL}=${podBurst}` };
    warnings.push(`ignoring pod label ${BURST_LABEL}=${podBurst}: use one of ${BURST_MODES.join(', ')}`);
  }
  if (labels[ECI_LABEL] === 'true') return { mode: 'always', source: `pod label ${ECI_LABEL}=true` };
  const nsBurst = namespaceLabels?.[BURST_LABEL];
  if (nsBurst === undefined || isNodeBoundPod(pod)) return undefined;
  if (isBurstMode(nsBurst)) return { mode: nsBurst, source: `namespace label ${BURST_LABEL}=${nsBurst}` };
  warnings.push(`ignoring namespace label ${BURST_LABEL}=${nsBurst}: use one of ${BURST_MODES.join(', ')}`);
  return undefined;
}

/** Whether the named node is a virtual node (answered from a node cache; unknown nodes are not virtual). */
export type IsVirtualNode = (nodeName: string) => boolean;

function requiresVirtual(term: V1NodeSelectorTerm, isVirtualNode: IsVirtualNode): boolean {
  const onlyValues = (values: string[] | undefined, ok: (v: string) => boolean) =>
    !!values && values.length > 0 && values.every(ok);
  const byLabel = (term.matchExpressions ?? []).some(
    (e) =>
      e.operator === 'In' &&
      ((e.key === VIRTUAL_NODE_LABEL && onlyValues(e.values, (v) => v === 'true')) ||
        (e.key === NODE_TYPE_LABEL && onlyValues(e.values, (v) => v === VIRTUAL_KUBELET_TYPE))),
  );
  // The DaemonSet controller and some schedulers pin pods with `metadata.name In [node]`.
  const byName = (term.matchFields ?? []).some(
    (f) => f.key === 'metadata.name' && f.operator === 'In' && onlyValues(f.values, isVirtualNode),
  );
  return byLabel || byName;
}

/**
 * Why a pod would run on a virtual node, or undefined when it would not: bound to one (`spec.nodeName`),
 * required onto one by spillway's markers (nodeSelector, or every required node affinity term), admitted to
 * one by the scheduler's own filters (node-match.ts), or `burst: always` (pod label, ACK's eci label, or the
 * namespace label).
 * @param virtualNodes the current virtual nodes; empty means none is registered yet (node-match.ts then judges
 *   against the labels and taints one registers with)
 */
export function virtualPlacementReason(
  pod: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  isVirtualNode: IsVirtualNode,
  virtualNodes: readonly V1Node[] = [],
): string | undefined {
  const spec = pod.spec;
  if (spec?.nodeName && isVirtualNode(spec.nodeName)) {
    return `spec.nodeName binds it to virtual node ${spec.nodeName}`;
  }
  const selector = spec?.nodeSelector ?? {};
  if (selector[VIRTUAL_NODE_LABEL] === 'true') return `spec.nodeSelector requires ${VIRTUAL_NODE_LABEL}=true`;
  if (selector[NODE_TYPE_LABEL] === VIRTUAL_KUBELET_TYPE) {
    return `spec.nodeSelector requires ${NODE_TYPE_LABEL}=${VIRTUAL_KUBELET_TYPE}`;
  }
  const terms =
    spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && terms.length > 0 && terms.every((t) => requiresVirtual(t, isVirtualNode))) {
    return 'its required node affinity admits only virtual nodes';
  }
  const fit = virtualNodeFit(spec, virtualNodes);
  if (fit) return fit.reason;
  const burst = resolveBurst(pod, namespaceLabels);
  return burst?.mode === 'always' ? burst.source : undefined;
}
