/**
 * Unsupported features (validating): a pod that may run on a virtual node is denied when it uses something a
 * sandbox cannot run, with every offending field path and what to do instead. "May run" is what the scheduler
 * could do with the pod's nodeName, nodeSelector, required affinity and tolerations against the virtual nodes'
 * names, labels and taints (api/node-match.ts), plus spillway's own markers. A pod that merely may spill
 * (`overflow`) gets an affinity from the placement webhook that keeps it off virtual nodes, so it passes.
 */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { VIRTUAL_NODE_LABEL } from '../api/labels.ts';
import { virtualPlacementReason, type IsVirtualNode } from '../api/placement.ts';
import { describeViolations, sandboxViolations, type SandboxViolation } from '../api/sandbox-rules.ts';
import { describeRefusal, providerRefusal } from '../operator/providers/refusal.ts';

/** The validating webhook's answer. */
export type Verdict =
  { allowed: true } | { allowed: false; code: number; message: string; violations: SandboxViolation[] };

/** `namespace/name`, or the generateName prefix for pods that do not have a name yet. */
export function podKey(pod: V1Pod, namespace?: string): string {
  const meta = pod.metadata ?? {};
  const name = meta.name || (meta.generateName ? `${meta.generateName}*` : '<unnamed>');
  return `${meta.namespace || namespace || '<no namespace>'}/${name}`;
}

/**
 * Denies a pod that would run on a virtual node and uses a feature a sandbox cannot run, or that every provider of
 * the virtual nodes it may land on refuses by its static rules (so its ReplicaSet backs off with FailedCreate
 * instead of creating pods the node can only fail); allows everything else.
 * @param namespace the AdmissionRequest's namespace (a new pod's metadata.namespace may be empty)
 * @param virtualNodes the current virtual Node objects (see {@link virtualPlacementReason})
 */
export function validatePod(
  pod: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  isVirtualNode: IsVirtualNode,
  namespace?: string,
  virtualNodes: readonly V1Node[] = [],
): Verdict {
  const violations = sandboxViolations(pod.spec, pod.metadata?.ownerReferences);
  // Without a sandbox violation, only a provider's own rules can refuse the pod, and they need its nodes.
  if (violations.length === 0 && virtualNodes.length === 0) return { allowed: true };
  const reason = virtualPlacementReason(pod, namespaceLabels, isVirtualNode, virtualNodes);
  if (reason === undefined) return { allowed: true };
  if (violations.length === 0) {
    const refusal = pod.spec ? providerRefusal(pod.spec, virtualNodes, 'spec') : undefined;
    if (!refusal) return { allowed: true };
    return {
      allowed: false,
      code: 403,
      violations: [],
      message:
        `pod ${podKey(pod, namespace)} would run on a virtual node (${reason}), and ${describeRefusal(refusal)}. ` +
        'Fix these fields, or keep the pod on real nodes by removing what sends it to a virtual node ' +
        `(or by requiring node affinity ${VIRTUAL_NODE_LABEL} NotIn [true]).`,
    };
  }
  return {
    allowed: false,
    code: 403,
    violations,
    message:
      `pod ${podKey(pod, namespace)} would run on a virtual node (${reason}), and a sandbox cannot run ` +
      `${violations.length === 1 ? 'this' : `these ${violations.length}`}: ${describeViolations(violations)}. ` +
      'Fix these fields, or keep the pod on real nodes by removing what sends it to a virtual node ' +
      `(or by requiring node affinity ${VIRTUAL_NODE_LABEL} NotIn [true]).`,
  };
}

/** The pod fields that decide which nodes an unbound pod may be scheduled to. */
const SCHEDULING_FIELDS = ['schedulingGates', 'nodeSelector', 'affinity', 'tolerations'] as const;

/**
 * Whether a pod UPDATE can change where the pod may run, so that it must be judged like a create: the pod is not
 * bound yet and the update changed its scheduling gates (removing the last one releases it to the scheduler),
 * nodeSelector or affinity (which a gated pod may still change) or tolerations (which any pod may add to). Every
 * other update, and every update of a bound pod, cannot move it and is allowed without a verdict.
 */
export function updateMayMovePod(oldPod: V1Pod | undefined, pod: V1Pod): boolean {
  const before = oldPod?.spec;
  if (typeof before !== 'object' || before === null) return false; // the apiserver always sends the old pod
  if (typeof before.nodeName === 'string' && before.nodeName !== '') return false;
  const after: Partial<V1Pod['spec']> = pod.spec ?? {};
  return SCHEDULING_FIELDS.some((f) => JSON.stringify(before[f]) !== JSON.stringify(after[f]));
}
