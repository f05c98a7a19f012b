/**
 * Why a unit cannot run its replicas, decided before and after it is scaled. Pure functions:
 * - {@link templateRefusal}: the unit's pod template goes to virtual nodes whose providers all refuse it by their
 *   static rules (operator/providers/rules.ts), so the controller gives the unit no replica and says why
 *   (BurstBlocked) instead of letting its ReplicaSet create pods the node can only fail;
 * - {@link unitTroubles}: the unit's pods failed on the node (no capacity, or refused or failed by the provider);
 *   the unit keeps its ready replicas for a cooldown, like a spot unit without stock, and the rest overflows.
 */
import type { V1Node, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import { providerRules, type PodSpecRules } from '../providers/rules.ts';
import { providerRefusal, type ProviderRefusal } from '../providers/refusal.ts';
import { virtualPlacementReason } from '../../api/placement.ts';
import { LABEL_ELASTIC_WORKLOAD, LABEL_UNIT } from '../../api/labels.ts';
import type { UnschedulableUnitPods } from './status.ts';
import { PodReason } from '../../api/reasons.ts';

/** A provider that refuses a unit's pod template, and the fields it names (paths in the source Deployment). */
export type TemplateRefusal = ProviderRefusal;

/**
 * The refusal of a unit's pod template, or undefined when some virtual node it may land on can run it (or when it
 * is not known: no virtual node registered, a provider whose rules this build lacks, a template that does not go
 * to virtual nodes). Taints are not checked: the placement webhook adds the tolerations to a burst pod.
 * @param template the unit's pod template (units.ts unitPodTemplate)
 * @param virtualNodes the current virtual Node objects (label `spillway.dev/virtual-node=true`)
 * @param options `base`: the path of the spec in the object the user wrote (default `spec.template.spec`; `spec`
 *   for a pod, as the admission webhook would judge one); `namespaceLabels`: the namespace's (a namespace-wide
 *   burst label sends pods to virtual nodes); `rulesOf`: a provider's static rules by name
 */
export function templateRefusal(
  template: V1PodTemplateSpec,
  virtualNodes: readonly V1Node[],
  options: {
    base?: string;
    namespaceLabels?: Readonly<Record<string, string>>;
    rulesOf?: (provider: string) => PodSpecRules | undefined;
  } = {},
): TemplateRefusal | undefined {
  const { base = 'spec.template.spec', namespaceLabels, rulesOf = providerRules } = options;
  const spec = template.spec;
  if (!spec || virtualNodes.length === 0) return undefined;
  const names = new Set(virtualNodes.map((n) => n.metadata?.name));
  const pod = { metadata: template.metadata ?? {}, spec };
  if (virtualPlacementReason(pod, namespaceLabels, (n) => names.has(n), virtualNodes) === undefined)
    return undefined;
  return providerRefusal(spec, virtualNodes, base, rulesOf);
}

/** Pod reasons the virtual node fails a pod with when its provider refused or could not create it. */
export const PROVIDER_FAILURE_REASONS: readonly string[] = [
  PodReason.UnsupportedPodSpec,
  PodReason.ProviderFailed,
];
/** The reason the virtual node fails a pod with when its provider has no capacity (spot stock ran out). */
export const NO_CAPACITY_REASON = PodReason.InsufficientCapacity;
/** Provider failures within one cooldown that make a unit fall back: one may be a fluke, this many are not. */
export const FAILING_THRESHOLD = 3;

/** A Failed pod of a unit, as far as the throttle cares. */
export interface FailedUnitPod {
  unit: string;
  /** The pod's `status.reason`. */
  reason: string;
  message: string;
  /** When it failed, in ms since the epoch. */
  at: number;
}

/** Why a unit is held at its ready replicas, and until when. */
export interface UnitTrouble {
  kind: 'NoCapacity' | 'PodsFailing';
  /** When the cooldown ends (ms since the epoch). */
  until: number;
  /** Failed pods that count towards it. */
  failed: number;
  /** The latest failure's reason and message, for the condition and the Event. */
  reason: string;
  message: string;
}

/** Whether the controller reacts to a Failed unit pod of this reason. */
export function isUnitFailure(reason: string | undefined): boolean {
  return reason === NO_CAPACITY_REASON || PROVIDER_FAILURE_REASONS.includes(reason ?? '');
}

/**
 * A Failed pod of a unit of the ElasticWorkload `ewName` that failed on the node (no capacity, refused or failed
 * by the provider), or undefined. It failed when its Ready condition last changed (else when it was created).
 */
export function failedUnitPod(p: V1Pod, ewName: string, now: Date): FailedUnitPod | undefined {
  const labels = p.metadata?.labels ?? {};
  const unit = labels[LABEL_UNIT];
  const reason = p.status?.reason;
  if (labels[LABEL_ELASTIC_WORKLOAD] !== ewName || !unit || !reason || !isUnitFailure(reason))
    return undefined;
  const at = new Date(
    p.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime ??
      p.metadata?.creationTimestamp ??
      now,
  ).getTime();
  return { unit, reason, message: p.status?.message ?? '', at };
}

/** Whether the scheduler marked the pod Unschedulable (PodScheduled=False, reason Unschedulable). */
export function isUnschedulable(p: V1Pod | undefined): boolean {
  const c = p?.status?.conditions?.find((x) => x.type === 'PodScheduled');
  return c?.status === 'False' && c.reason === 'Unschedulable';
}

/** The unit pods of `ewName` among `pending` that the scheduler marked Unschedulable, with one of its messages. */
export function unschedulableUnitPods(pending: readonly V1Pod[], ewName: string): UnschedulableUnitPods {
  let pods = 0;
  let message: string | undefined;
  for (const p of pending) {
    const labels = p.metadata?.labels ?? {};
    if (labels[LABEL_ELASTIC_WORKLOAD] !== ewName || !labels[LABEL_UNIT]) continue;
    if (!isUnschedulable(p)) continue;
    pods++;
    message ??= p.status?.conditions?.find((x) => x.type === 'PodScheduled')?.message;
  }
  return message === undefined ? { pods } : { pods, message };
}

/**
 * The units to hold at their ready replicas: one that had a pod fail for lack of capacity, or
 * {@link FAILING_THRESHOLD} pods fail by the provider, within `cooldownMs` before `now`. Failed pods older than
 * that no longer count (the controller deletes them). No capacity wins over failing: it is the milder cause.
 */
export function unitTroubles(
  failed: readonly FailedUnitPod[],
  cooldownMs: number,
  now: number,
): Map<string, UnitTrouble> {
  const out = new Map<string, UnitTrouble>();
  const recent = failed.filter((p) => p.at + cooldownMs > now).sort((a, b) => a.at - b.at);
  for (const kind of ['PodsFailing', 'NoCapacity'] as const) {
    const byUnit = new Map<string, FailedUnitPod[]>();
    for (const p of recent) {
      const ours =
        kind === 'NoCapacity' ? p.reason === NO_CAPACITY_REASON : PROVIDER_FAILURE_REASONS.includes(p.reason);
      if (ours) byUnit.set(p.unit, [...(byUnit.get(p.unit) ?? []), p]);
    }
    for (const [unit, pods] of byUnit) {
      if (kind === 'PodsFailing' && pods.length < FAILING_THRESHOLD) continue;
      const last = pods[pods.length - 1]!;
      out.set(unit, {
        kind,
        until: last.at + cooldownMs,
        failed: pods.length,
        reason: last.reason,
        message: last.message,
      });
    }
  }
  return out;
}
