/**
 * DaemonSet guard (mutating): a DaemonSet runs one pod per real node, and a virtual node is not one (a sandbox
 * cannot run what DaemonSets are for: host networking, host paths, node agents). Many DaemonSets tolerate every
 * taint (`operator: Exists`), so the virtual node's taint does not keep them off. A required node affinity on the
 * template does: the DaemonSet controller evaluates the template's node affinity to decide which nodes get a
 * pod, so no pod is even created for a virtual node. (Each pod it creates carries only a `metadata.name` term:
 * the controller replaces the pod's required node affinity with the node it pins the pod to.)
 */
import type { V1DaemonSet } from '@kubernetes/client-node';
import { OFF_VIRTUAL_NODE } from '../api/taints.ts';
import { ObjectEdit } from './patch.ts';
import type { Mutation } from './placement.ts';
import { requireOnEveryTerm } from './scheduling.ts';

/**
 * Adds `spillway.dev/virtual-node NotIn [true]` to every required node selector term of the pod template
 * (terms are ORed, so one term without it would admit virtual nodes). Idempotent.
 * @param raw the DaemonSet from the AdmissionRequest; not modified
 */
export function excludeVirtualNodes(raw: V1DaemonSet): Mutation<V1DaemonSet> {
  const edit = new ObjectEdit(raw);
  // A DaemonSet without a template is invalid; leave it for the apiserver's validation to reject.
  if (raw.spec?.template) {
    const podSpec = edit.root().object('spec').object('template').object('spec', { containers: [] });
    requireOnEveryTerm(podSpec, OFF_VIRTUAL_NODE);
  }
  return { object: edit.result, patch: edit.patch, warnings: [] };
}
