/**
 * The three webhooks as AdmissionHandlers: thin shells that pick the object out of the request, call the pure
 * decision (placement.ts, daemonset.ts, validate.ts) and return the patch it recorded against the raw object.
 */
import type { V1DaemonSet, V1Node, V1Pod } from '@kubernetes/client-node';
import type { AdmissionHandler, AdmissionOutcome, AdmissionRequest } from './admission.ts';
import type { NamespaceLabels } from './caches.ts';
import { excludeVirtualNodes } from './daemonset.ts';
import { DEFAULT_PLACEMENT_POLICY, placePod, type Mutation, type PlacementPolicy } from './placement.ts';
import { refuseMalformed } from './shape.ts';
import { updateMayMovePod, validatePod } from './validate.ts';
import type { IsVirtualNode } from '../api/placement.ts';

/** The URL path of each webhook (one path per webhook, so a misrouted request cannot reach the wrong logic). */
export const WEBHOOK_PATHS = {
  mutatePods: '/mutate-pods',
  mutateDaemonSets: '/mutate-daemonsets',
  validatePods: '/validate-pods',
} as const;

/** What the handlers read besides the request. */
export interface WebhookDeps {
  /** Namespace labels, for namespace-wide `spillway.dev/burst`. */
  namespaceLabels: NamespaceLabels;
  /** Whether a node is virtual, for pods bound by `spec.nodeName`. */
  isVirtualNode: IsVirtualNode;
  /**
   * The current virtual Node objects (the node cache), which pods' selectors, affinity and tolerations are
   * matched against. Missing or empty: judged against the labels and taints a virtual node registers with.
   */
  virtualNodes?: () => readonly V1Node[];
  placement?: PlacementPolicy;
}

const ALLOW: AdmissionOutcome = { allowed: true };

const isKind = (req: AdmissionRequest, group: string, kind: string) =>
  req.kind.group === group && req.kind.kind === kind && typeof req.object === 'object' && req.object !== null;

function mutationOutcome<T>(mutation: Mutation<T>): AdmissionOutcome {
  const { patch } = mutation;
  return {
    allowed: true,
    ...(patch.length > 0 ? { patch } : {}),
    ...(mutation.warnings.length > 0 ? { warnings: mutation.warnings } : {}),
  };
}

/** `/mutate-pods`: placement on pod CREATE; anything else is allowed untouched (pods are immutable after). */
export function podPlacementHandler(deps: WebhookDeps): AdmissionHandler {
  const policy = deps.placement ?? DEFAULT_PLACEMENT_POLICY;
  return (req) => {
    if (req.operation !== 'CREATE' || req.subResource || !isKind(req, '', 'Pod')) return ALLOW;
    const raw = req.object as V1Pod;
    const ns = req.namespace || raw.metadata?.namespace;
    return mutationOutcome(placePod(raw, ns ? deps.namespaceLabels(ns) : undefined, policy));
  };
}

/** `/mutate-daemonsets`: the virtual-node exclusion on DaemonSet CREATE and UPDATE. */
export function daemonSetHandler(): AdmissionHandler {
  return (req) => {
    if (req.operation === 'DELETE' || req.subResource || !isKind(req, 'apps', 'DaemonSet')) return ALLOW;
    const raw = req.object as V1DaemonSet;
    return mutationOutcome(excludeVirtualNodes(raw));
  };
}

/**
 * `/validate-pods`: pod CREATE; UPDATE of `pods/ephemeralcontainers` (`kubectl debug` can add a privileged
 * container to a pod that already runs in a sandbox); and a pod UPDATE that may move an unbound pod (scheduling
 * gates removed, or nodeSelector, affinity or tolerations changed). Any other UPDATE is allowed at once.
 */
export function podValidationHandler(deps: WebhookDeps): AdmissionHandler {
  return (req) => {
    if (!isKind(req, '', 'Pod')) return ALLOW;
    const pod = req.object as V1Pod;
    const judged =
      (req.operation === 'CREATE' && !req.subResource) ||
      (req.operation === 'UPDATE' && req.subResource === 'ephemeralcontainers') ||
      (req.operation === 'UPDATE' && !req.subResource && updateMayMovePod(req.oldObject as V1Pod, pod));
    if (!judged) return ALLOW;
    const ns = req.namespace || pod.metadata?.namespace;
    const nsLabels = ns ? deps.namespaceLabels(ns) : undefined;
    const verdict = validatePod(pod, nsLabels, deps.isVirtualNode, ns, deps.virtualNodes?.() ?? []);
    return verdict.allowed ? ALLOW : { allowed: false, code: verdict.code, message: verdict.message };
  };
}

/**
 * Every webhook by path, ready for the server's `handlers` option. Each refuses a request whose objects do not
 * have the shape the handlers read (shape.ts) before reading them, so that a malformed review is a 400 denial
 * naming the field, never a crash.
 */
export function webhookHandlers(deps: WebhookDeps): Record<string, AdmissionHandler> {
  return {
    [WEBHOOK_PATHS.mutatePods]: refuseMalformed(podPlacementHandler(deps)),
    [WEBHOOK_PATHS.mutateDaemonSets]: refuseMalformed(daemonSetHandler()),
    [WEBHOOK_PATHS.validatePods]: refuseMalformed(podValidationHandler(deps)),
  };
}
