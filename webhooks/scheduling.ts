/**
 * Edits of a pod spec's scheduling constraints (node affinity, tolerations) that are safe to repeat: each one
 * adds only what is missing, so a mutating webhook built on them is idempotent under reinvocation. They edit
 * through a {@link Draft}, which leaves the raw request object alone and records each edit as a JSON Patch
 * operation (patch.ts): one append per toleration or term, whatever the size of the lists already there.
 */
import type {
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1PodSpec,
  V1PreferredSchedulingTerm,
  V1Toleration,
} from '@kubernetes/client-node';
import type { Draft } from './patch.ts';

function sameValues(a: string[] = [], b: string[] = []): boolean {
  return a.length === b.length && a.every((v) => b.includes(v));
}

/** Whether two node selector requirements select the same nodes (values compared as a set). */
export function sameRequirement(a: V1NodeSelectorRequirement, b: V1NodeSelectorRequirement): boolean {
  return a.key === b.key && a.operator === b.operator && sameValues(a.values, b.values);
}

/** A copy of a requirement (a plain copy: structuredClone costs microseconds, and this runs once per term). */
function copyRequirement(req: V1NodeSelectorRequirement): V1NodeSelectorRequirement {
  return { ...req, ...(req.values ? { values: [...req.values] } : {}) };
}

function termHas(term: V1NodeSelectorTerm, req: V1NodeSelectorRequirement): boolean {
  return (term.matchExpressions ?? []).some((e) => sameRequirement(e, req));
}

/**
 * Adds `req` to the required node affinity. Node selector terms are ORed, so the requirement goes into every
 * existing term (a term that lacked it would let the pod in through the back door); with no terms yet, it
 * becomes the only term. Returns whether anything changed.
 */
export function requireOnEveryTerm(spec: Draft<V1PodSpec>, req: V1NodeSelectorRequirement): boolean {
  const required = spec
    .object('affinity')
    .object('nodeAffinity')
    .object('requiredDuringSchedulingIgnoredDuringExecution', { nodeSelectorTerms: [] });
  const terms = required.array('nodeSelectorTerms');
  const current = terms.value;
  if (current.length === 0) {
    terms.push({ matchExpressions: [copyRequirement(req)] });
    return true;
  }
  let changed = false;
  current.forEach((term, i) => {
    if (termHas(term, req)) return;
    terms.at(i).array('matchExpressions').push(copyRequirement(req));
    changed = true;
  });
  return changed;
}

/** Adds a preferred node affinity term unless an identical one (same weight and expressions) exists. */
export function addPreferred(spec: Draft<V1PodSpec>, term: V1PreferredSchedulingTerm): boolean {
  const preferred = spec
    .object('affinity')
    .object('nodeAffinity')
    .array('preferredDuringSchedulingIgnoredDuringExecution');
  const wanted = term.preference.matchExpressions ?? [];
  const exists = preferred.value.some((p) => {
    const have = p.preference?.matchExpressions ?? [];
    return (
      p.weight === term.weight &&
      have.length === wanted.length &&
      wanted.every((w) => have.some((h) => sameRequirement(h, w)))
    );
  });
  if (exists) return false;
  preferred.push(structuredClone(term));
  return true;
}

/** A taint as tolerations see it; `value` undefined means "any value" (only `Exists` tolerates that). */
export interface TaintMatch {
  key: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  value?: string;
}

/** Kubernetes' toleration semantics: an empty key with `Exists` tolerates everything; an empty effect, every effect. */
export function tolerates(toleration: V1Toleration, taint: TaintMatch): boolean {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.operator === 'Exists') return !toleration.key || toleration.key === taint.key;
  // operator Equal (or empty, which means Equal)
  return (
    toleration.key === taint.key && taint.value !== undefined && (toleration.value ?? '') === taint.value
  );
}

/**
 * Adds `toleration` unless the pod already tolerates what it tolerates (an identical entry, a wildcard, or a
 * broader one the user wrote): no duplicates on reinvocation, and no noise on pods that already opted in.
 */
export function addToleration(spec: Draft<V1PodSpec>, toleration: Readonly<V1Toleration>): boolean {
  const taint: TaintMatch = {
    key: toleration.key ?? '',
    effect: (toleration.effect ?? 'NoSchedule') as TaintMatch['effect'],
    ...(toleration.operator === 'Exists' ? {} : { value: toleration.value ?? '' }),
  };
  if ((spec.value.tolerations ?? []).some((t) => tolerates(t, taint))) return false;
  spec.array('tolerations').push({ ...toleration });
  return true;
}
