/**
 * Whether a pod may run on a virtual node, decided the way the scheduler decides where a pod may go: its
 * NodeName, NodeAffinity (nodeSelector and required node affinity) and TaintToleration filters, evaluated against
 * each current virtual Node. Recognising spillway's own markers is not enough: `kubernetes.io/hostname=<node>`,
 * `spillway.dev/provider`, `Exists` and `NotIn` expressions all select virtual nodes too, and only the node's
 * real labels, name and taints say which.
 *
 * "May run" errs towards yes wherever the answer is not known (a value the node has not registered yet, an
 * operator this code does not know): a wrong yes costs a denial the user can fix, a wrong no lets a pod into a
 * sandbox that cannot run it.
 */
import type {
  V1Node,
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1PodSpec,
  V1Taint,
  V1Toleration,
} from '@kubernetes/client-node';
import { PROVIDER_LABEL, VIRTUAL_NODE_LABELS } from './labels.ts';
import { virtualNodeTaints } from './taints.ts';

/**
 * A label or taint value that is not known yet (see {@link virtualNodeTemplate}): it may match any value. `*` is
 * neither a valid label value nor a valid taint value, so it never stands for a real one.
 */
export const UNKNOWN_VALUE = '*';

/** The virtual node a pod may run on, and which of the pod's fields admit it there. */
export interface VirtualNodeFit {
  /** The node's name; undefined for the {@link virtualNodeTemplate}. */
  node?: string;
  /** E.g. `spec.nodeSelector, spec.tolerations admit virtual node vn-1`, for the denial message. */
  reason: string;
}

/**
 * The labels and taints every virtual node registers with (operator/virtualnode/node.ts builds them from the
 * same constants), for when none is registered yet: a pod created now can still land on one that registers
 * later. Per-node values (the provider) are unknown; the name is unknown too, so name-based selection (nodeName,
 * `metadata.name`, `kubernetes.io/hostname`) never matches it — those can only name a node that exists.
 */
export function virtualNodeTemplate(): V1Node {
  return {
    metadata: { labels: { ...VIRTUAL_NODE_LABELS, [PROVIDER_LABEL]: UNKNOWN_VALUE } },
    spec: { taints: virtualNodeTaints(UNKNOWN_VALUE) },
  };
}

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : [];
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const INTEGER = /^[+-]?\d+$/;

/** A node label requirement, as labels.Requirement.Matches evaluates it (unknown values may match anything). */
export function requirementMatches(
  req: V1NodeSelectorRequirement,
  labels: Readonly<Record<string, string>>,
): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = labels[req.key];
  const values = strings(req.values);
  switch (req.operator) {
    case 'In':
      return has && (value === UNKNOWN_VALUE || values.includes(value!));
    case 'NotIn':
      return !has || value === UNKNOWN_VALUE || !values.includes(value!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      if (!has) return false;
      if (value === UNKNOWN_VALUE) return true;
      // Both sides must be integers (the apiserver validates the pod's side); a node value that is not one
      // never matches, as in the scheduler.
      if (values.length !== 1 || !INTEGER.test(value!) || !INTEGER.test(values[0]!)) return false;
      const [node, bound] = [BigInt(value!), BigInt(values[0]!)];
      return req.operator === 'Gt' ? node > bound : node < bound;
    }
    default:
      return true; // an operator this code does not know: err towards "may run"
  }
}

/** A `matchFields` requirement; `metadata.name` is the only field the scheduler supports. */
function fieldMatches(req: V1NodeSelectorRequirement, name: string | undefined): boolean {
  if (req.key !== 'metadata.name') return true; // unknown field: err towards "may run"
  const values = strings(req.values);
  if (req.operator === 'In') return name !== undefined && values.includes(name);
  if (req.operator === 'NotIn') return name === undefined || !values.includes(name);
  return true;
}

/** One node selector term: all its requirements hold; an empty term matches no node (as in the scheduler). */
export function termMatches(
  term: V1NodeSelectorTerm,
  labels: Readonly<Record<string, string>>,
  name: string | undefined,
): boolean {
  const exprs = Array.isArray(term?.matchExpressions) ? term.matchExpressions : [];
  const fields = Array.isArray(term?.matchFields) ? term.matchFields : [];
  if (exprs.length === 0 && fields.length === 0) return false;
  if (![...exprs, ...fields].every(isRecord)) return false; // never past the apiserver's validation
  return exprs.every((e) => requirementMatches(e, labels)) && fields.every((f) => fieldMatches(f, name));
}

/** The NodeAffinity filter: nodeSelector (every pair) and, if set, one of the required terms. */
function affinityMatches(spec: V1PodSpec, labels: Readonly<Record<string, string>>, name?: string): boolean {
  const selector: unknown = spec.nodeSelector;
  if (isRecord(selector)) {
    for (const [key, want] of Object.entries(selector)) {
      const have = labels[key];
      if (!Object.hasOwn(labels, key) || (have !== UNKNOWN_VALUE && have !== want)) return false;
    }
  }
  const required = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (!isRecord(required)) return true;
  const terms = Array.isArray(required.nodeSelectorTerms) ? required.nodeSelectorTerms : [];
  return terms.some((t) => termMatches(t, labels, name));
}

/** v1.Toleration.ToleratesTaint; an unknown taint value may equal any toleration value. */
export function toleratesTaint(t: V1Toleration, taint: V1Taint): boolean {
  if (!isRecord(t)) return false;
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  switch (t.operator ?? '') {
    case '':
    case 'Equal':
      return taint.value === UNKNOWN_VALUE || (t.value ?? '') === (taint.value ?? '');
    case 'Exists':
      return true;
    default:
      return true; // an operator this code does not know (e.g. a newer numeric one): err towards "may run"
  }
}

/** The TaintToleration filter: every NoSchedule and NoExecute taint is tolerated (PreferNoSchedule only scores). */
function toleratesNode(spec: V1PodSpec, taints: readonly V1Taint[]): boolean {
  const tolerations = Array.isArray(spec.tolerations) ? spec.tolerations : [];
  return taints
    .filter((taint) => taint.effect === 'NoSchedule' || taint.effect === 'NoExecute')
    .every((taint) => tolerations.some((t) => toleratesTaint(t, taint)));
}

const nodeLabel = (node: V1Node) =>
  node.metadata?.name ? `virtual node ${node.metadata.name}` : 'a virtual node';

/** The pod fields that took part in admitting it to a node, for the message. */
function admittingFields(spec: V1PodSpec): string {
  const fields = [
    isRecord(spec.nodeSelector) && Object.keys(spec.nodeSelector).length > 0 ? 'spec.nodeSelector' : '',
    spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
      ? 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution'
      : '',
    Array.isArray(spec.tolerations) && spec.tolerations.length > 0 ? 'spec.tolerations' : '',
  ].filter(Boolean);
  return fields.length > 0 ? fields.join(', ') : 'the pod spec';
}

/**
 * The first virtual node the pod may run on, or undefined. A pod bound by `spec.nodeName` may run only on that
 * node, whatever its selector and tolerations (a bound pod skips the scheduler). With no virtual node given,
 * the pod is judged against {@link virtualNodeTemplate}.
 */
export function virtualNodeFit(
  spec: V1PodSpec | undefined,
  virtualNodes: readonly V1Node[],
): VirtualNodeFit | undefined {
  if (!isRecord(spec)) return undefined;
  const nodes = virtualNodes.length > 0 ? virtualNodes : [virtualNodeTemplate()];
  const nodeName = typeof spec.nodeName === 'string' ? spec.nodeName : '';
  if (nodeName !== '') {
    const bound = nodes.find((n) => n.metadata?.name === nodeName);
    return bound
      ? { node: nodeName, reason: `spec.nodeName binds it to virtual node ${nodeName}` }
      : undefined;
  }
  for (const node of nodes) {
    const labels = node.metadata?.labels ?? {};
    if (!affinityMatches(spec, labels, node.metadata?.name)) continue;
    if (!toleratesNode(spec, node.spec?.taints ?? [])) continue;
    return { node: node.metadata?.name, reason: `${admittingFields(spec)} admit ${nodeLabel(node)}` };
  }
  return undefined;
}

/**
 * Whether the scheduler may place a pod with this spec on one of `virtualNodes` (or bind it there by name).
 * @param virtualNodes the current virtual Node objects; empty means none is registered yet
 */
export function mayRunOnVirtualNode(spec: V1PodSpec | undefined, virtualNodes: readonly V1Node[]): boolean {
  return virtualNodeFit(spec, virtualNodes) !== undefined;
}

/**
 * Whether the nodeSelector and required node affinity of `spec` admit a node with these labels and name, taken
 * literally (no unknown values): which registered virtual nodes a pod's selectors send it to.
 */
export function selectorsAdmit(
  spec: V1PodSpec,
  labels: Readonly<Record<string, string>>,
  name?: string,
): boolean {
  for (const [key, want] of Object.entries(spec.nodeSelector ?? {})) if (labels[key] !== want) return false;
  const terms =
    spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  return !terms || terms.some((t) => termMatches(t, labels, name));
}
