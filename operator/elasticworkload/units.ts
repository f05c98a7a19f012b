/**
 * Unit Deployments: clones of the source Deployment with an elastic unit's scheduling merged in
 * (docs/architecture.md#the-elasticworkload-controller). Pure builders; the controller applies their output
 * server-side.
 *
 * Selectors. A unit's pods carry the source template's labels, so that the Services, PodDisruptionBudgets and
 * the HPA that select the source's pods select the unit's too: the workload is one set of pods wherever they run.
 * Hence:
 * - the unit's selector is the source's plus `spillway.dev/elastic-workload` and `spillway.dev/unit`: it matches
 *   that unit's pods only, never the source's nor another unit's;
 * - the source's selector matches every pod of the workload, and `status.selector` (the scale subresource, read
 *   by the HPA) is exactly that;
 * - the two Deployments do not fight over pods: ReplicaSets adopt only pods without a controller owner, and
 *   each ReplicaSet's selector includes its own `pod-template-hash`. (Deleting a unit Deployment with
 *   `--cascade=orphan` would let the source adopt its ReplicaSet; the controller always deletes in the
 *   background.)
 * - a unit may not change the value of a label the source's selector uses: its pods would leave the workload
 *   and no longer match their own unit selector. Such unit labels are ignored.
 */
import { createHash } from 'node:crypto';
import type {
  V1Deployment,
  V1LabelSelector,
  V1OwnerReference,
  V1PodTemplateSpec,
  V1Toleration,
} from '@kubernetes/client-node';
import { ANNOTATION_TEMPLATE_HASH, LABEL_ELASTIC_WORKLOAD, LABEL_UNIT } from '../../api/labels.ts';
import { API_VERSION, KIND, type ElasticUnit, type ElasticWorkload } from '../../api/elasticworkload.ts';

/** The unit Deployment's name: `<source>-unit-<unit>`. */
export function unitDeploymentName(source: string, unit: string): string {
  return `${source}-unit-${unit}`;
}

/** Labels that identify one unit's Deployment and pods. */
export function unitLabels(ewName: string, unitName: string): Record<string, string> {
  return { [LABEL_ELASTIC_WORKLOAD]: ewName, [LABEL_UNIT]: unitName };
}

/** The controller owner reference that ties a unit Deployment to its ElasticWorkload (garbage collection). */
export function ownerReference(ew: ElasticWorkload): V1OwnerReference {
  const { name, namespace, uid } = ew.metadata;
  if (!uid) {
    throw new Error(
      `ElasticWorkload ${namespace}/${name} has no uid: build units from the object the apiserver returned`,
    );
  }
  return { apiVersion: API_VERSION, kind: KIND, name, uid, controller: true, blockOwnerDeletion: true };
}

/**
 * The unit's pod template: the source's, with the unit's labels, annotations, nodeSelector (unit wins per key),
 * tolerations (appended unless already there) and affinity (each kind the unit sets replaces the source's)
 * merged in, plus the unit's identifying labels.
 */
export function unitPodTemplate(
  ew: ElasticWorkload,
  source: V1Deployment,
  unit: ElasticUnit,
): V1PodTemplateSpec {
  const template = source.spec?.template;
  const spec = structuredClone(template?.spec ?? { containers: [] });
  const selectorKeys = selectorLabelKeys(source.spec?.selector);
  const unitOwn = Object.entries(unit.labels ?? {}).filter(([k]) => !selectorKeys.has(k));
  const labels = {
    ...template?.metadata?.labels,
    ...Object.fromEntries(unitOwn),
    ...unitLabels(ew.metadata.name, unit.name),
  };
  const annotations = { ...template?.metadata?.annotations, ...unit.annotations };

  const nodeSelector = { ...spec.nodeSelector, ...unit.nodeSelector };
  if (Object.keys(nodeSelector).length) spec.nodeSelector = nodeSelector;
  const tolerations: V1Toleration[] = [...(spec.tolerations ?? [])];
  for (const t of unit.tolerations ?? []) {
    if (!tolerations.some((have) => stableJson(have) === stableJson(t))) tolerations.push(structuredClone(t));
  }
  if (tolerations.length) spec.tolerations = tolerations;
  if (unit.affinity && Object.keys(unit.affinity).length) {
    spec.affinity = { ...spec.affinity, ...structuredClone(unit.affinity) };
  }
  return {
    // Only labels and annotations: name/namespace/creationTimestamp of a template mean nothing here.
    metadata: { labels, ...(Object.keys(annotations).length ? { annotations } : {}) },
    spec,
  };
}

/**
 * The apply configuration of one unit Deployment (apps/v1), owned by the ElasticWorkload. Its Deployment-level
 * rollout settings are the source's, so a unit rolls out like the source does; its pod template is
 * {@link unitPodTemplate}, so any change of the source's template rolls out to every unit on the next apply.
 * The template hash annotation lets the controller see whether a unit is current without a deep compare.
 */
export function unitDeployment(
  ew: ElasticWorkload,
  source: V1Deployment,
  unit: ElasticUnit,
  replicas: number,
): V1Deployment {
  const sourceName = source.metadata?.name ?? ew.spec.sourceTarget.name;
  const template = unitPodTemplate(ew, source, unit);
  const sourceSelector = source.spec?.selector ?? {};
  const s = source.spec;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: unitDeploymentName(sourceName, unit.name),
      namespace: ew.metadata.namespace ?? source.metadata?.namespace,
      labels: { ...unitLabels(ew.metadata.name, unit.name), 'app.kubernetes.io/managed-by': 'spillway' },
      annotations: { [ANNOTATION_TEMPLATE_HASH]: templateHash(template) },
      ownerReferences: [ownerReference(ew)],
    },
    spec: {
      replicas,
      selector: {
        matchLabels: { ...sourceSelector.matchLabels, ...unitLabels(ew.metadata.name, unit.name) },
        ...(sourceSelector.matchExpressions?.length
          ? { matchExpressions: structuredClone(sourceSelector.matchExpressions) }
          : {}),
      },
      template,
      ...(s?.strategy ? { strategy: structuredClone(s.strategy) } : {}),
      ...(s?.minReadySeconds !== undefined ? { minReadySeconds: s.minReadySeconds } : {}),
      ...(s?.revisionHistoryLimit !== undefined ? { revisionHistoryLimit: s.revisionHistoryLimit } : {}),
      ...(s?.progressDeadlineSeconds !== undefined
        ? { progressDeadlineSeconds: s.progressDeadlineSeconds }
        : {}),
    },
  };
}

/** Short, stable hash of a pod template (key order and `undefined` fields do not matter). */
export function templateHash(template: V1PodTemplateSpec): string {
  return createHash('sha256').update(stableJson(template)).digest('hex').slice(0, 16);
}

/** True when an existing unit Deployment was built from the same template as `desired`. */
export function unitIsCurrent(existing: V1Deployment, desired: V1Deployment): boolean {
  const have = existing.metadata?.annotations?.[ANNOTATION_TEMPLATE_HASH];
  return have !== undefined && have === desired.metadata?.annotations?.[ANNOTATION_TEMPLATE_HASH];
}

/**
 * `status.selector` of an ElasticWorkload: the source's selector in the string form the scale subresource
 * needs (`app=web,tier in (a,b)`). It matches every pod of the workload, on the source and on every unit.
 */
export function workloadSelector(source: V1Deployment): string {
  return labelSelectorString(source.spec?.selector ?? {});
}

/** A LabelSelector in Kubernetes' string syntax, requirements sorted by key as `metav1.FormatLabelSelector` does. */
export function labelSelectorString(selector: V1LabelSelector): string {
  const parts: Array<[string, string]> = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => [
    k,
    `${k}=${v}`,
  ]);
  for (const e of selector.matchExpressions ?? []) {
    const values = [...(e.values ?? [])].sort().join(',');
    const text =
      e.operator === 'In'
        ? `${e.key} in (${values})`
        : e.operator === 'NotIn'
          ? `${e.key} notin (${values})`
          : e.operator === 'Exists'
            ? e.key
            : e.operator === 'DoesNotExist'
              ? `!${e.key}`
              : undefined;
    if (text === undefined)
      throw new Error(`label selector operator "${e.operator}" on key ${e.key} is not valid`);
    parts.push([e.key, text]);
  }
  return parts
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, text]) => text)
    .join(',');
}

function selectorLabelKeys(selector: V1LabelSelector | undefined): Set<string> {
  return new Set([
    ...Object.keys(selector?.matchLabels ?? {}),
    ...(selector?.matchExpressions ?? []).map((e) => e.key),
  ]);
}

/** JSON with sorted keys and without `undefined`, so that equal objects hash equally. */
/** JSON with object keys sorted and undefined fields dropped: equal for equal content, whatever the key order. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>)
            .filter(([, x]) => x !== undefined)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}
