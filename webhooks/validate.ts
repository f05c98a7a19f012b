/**
 * Unsupported features (validating): a pod that would run on a virtual node is denied when it uses something a
 * sandbox cannot run (DESIGN.md §2.3), with every offending field path and what to do instead. A pod that merely
 * may spill (`overflow`) is not judged here: the placement webhook keeps it off virtual nodes and warns.
 */
import type { V1NodeSelectorTerm, V1Pod } from '@kubernetes/client-node';
import {
  describeViolations,
  sandboxViolations,
  type SandboxViolation,
} from '../operator/shared/sandbox-rules.ts';
import { NODE_TYPE_LABEL, VIRTUAL_KUBELET_TYPE, VIRTUAL_NODE_LABEL } from './contract.ts';
import { resolveBurst } from './placement.ts';

/** Whether the named node is a virtual node (answered from a node cache; unknown nodes are not virtual). */
export type IsVirtualNode = (nodeName: string) => boolean;

/** The validating webhook's answer. */
export type Verdict =
  { allowed: true } | { allowed: false; code: number; message: string; violations: SandboxViolation[] };

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
 * required onto one (nodeSelector, or every required node affinity term), or `burst: always` (pod label, ACK's
 * eci label, or the namespace label).
 */
export function virtualPlacementReason(
  pod: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  isVirtualNode: IsVirtualNode,
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
  const burst = resolveBurst(pod, namespaceLabels);
  return burst?.mode === 'always' ? burst.source : undefined;
}

/** `namespace/name`, or the generateName prefix for pods that do not have a name yet. */
export function podKey(pod: V1Pod, namespace?: string): string {
  const meta = pod.metadata ?? {};
  const name = meta.name || (meta.generateName ? `${meta.generateName}*` : '<unnamed>');
  return `${meta.namespace || namespace || '<no namespace>'}/${name}`;
}

/**
 * Denies a pod that would run on a virtual node and uses a feature a sandbox cannot run; allows everything else.
 * @param namespace the AdmissionRequest's namespace (a new pod's metadata.namespace may be empty)
 */
export function validatePod(
  pod: V1Pod,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  isVirtualNode: IsVirtualNode,
  namespace?: string,
): Verdict {
  const violations = sandboxViolations(pod.spec, pod.metadata?.ownerReferences);
  if (violations.length === 0) return { allowed: true };
  const reason = virtualPlacementReason(pod, namespaceLabels, isVirtualNode);
  if (reason === undefined) return { allowed: true };
  return {
    allowed: false,
    code: 403,
    violations,
    message:
      `pod ${podKey(pod, namespace)} would run on a virtual node (${reason}), and a sandbox cannot run ` +
      `${violations.length === 1 ? 'this' : `these ${violations.length}`}: ${describeViolations(violations)}. ` +
      'Fix these fields, or keep the pod on real nodes by removing what sends it to a virtual node.',
  };
}
