/**
 * The ElasticWorkload API, `elastic.spillway.dev/v1alpha1` (docs/architecture.md#the-elasticworkload-controller): one zod schema from which the
 * TypeScript types and the CRD (`crds/elasticworkload/`, through operator/shared/crd-schema.ts) are derived,
 * and the condition types it reports. Its labels, annotations and finalizer are in labels.ts.
 *
 * Field names follow ACK's `autoscaling.alibabacloud.com/v1beta1` ElasticWorkload so that ACK users migrate by
 * changing `apiVersion`. Rules the apiserver enforces are CEL rules here (`x-kubernetes-validations`), each with a
 * message saying what to change; zod does not repeat them, because the controller only ever reads objects the
 * apiserver has already admitted.
 *
 * Every string and list a CEL rule walks has a `maxLength`/`maxItems`: the apiserver refuses a CRD whose
 * rules' estimated cost is unbounded.
 */
import type { V1Affinity, V1Toleration } from '@kubernetes/client-node';
import { z } from 'zod';
import { LABEL_ELASTIC_WORKLOAD, LABEL_UNIT } from './labels.ts';

/** The API group. */
export const GROUP = 'elastic.spillway.dev';
/** The served and stored version. */
export const VERSION = 'v1alpha1';
/** `apiVersion` of an ElasticWorkload. */
export const API_VERSION = `${GROUP}/${VERSION}`;
/** The kind. */
export const KIND = 'ElasticWorkload';
/** The resource name (`kubectl get elasticworkloads`). */
export const PLURAL = 'elasticworkloads';

/** DNS-1123 label: unit names become label values and part of Deployment names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** DNS-1123 subdomain: Deployment names. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Longest Deployment name whose ReplicaSets (`<name>-<hash of up to 10>`) still fit in 253 characters. */
const MAX_DEPLOYMENT_NAME = 242;

const replicaCount = () => z.int32().min(0);
// maxProperties keeps the CEL cost estimate of rules that look into these maps bounded.
const stringMap = (description: string, maxProperties: number) =>
  z.record(z.string(), z.string()).meta({ description, maxProperties });

/** A Kubernetes object the apiserver keeps verbatim (its own schema is the pod's), typed as `T` for code. */
function kubernetesObject<T extends object>(description: string): z.ZodType<T, T> {
  return z
    .looseObject({})
    .meta({ description, 'x-kubernetes-preserve-unknown-fields': true }) as unknown as z.ZodType<T, T>;
}

/** The workload whose replicas are split: today a Deployment. */
export const SourceTargetSchema = z
  .object({
    apiVersion: z
      .string()
      .max(253)
      .default('apps/v1')
      .meta({ description: 'apiVersion of the source: apps/v1.' }),
    kind: z
      .string()
      .max(63)
      .meta({
        description: 'Kind of the source: Deployment.',
        'x-kubernetes-validations': [
          {
            rule: "self != 'StatefulSet'",
            message:
              'StatefulSet sources are not supported yet: a StatefulSet cannot be split into unit clones without breaking its ordinal identities and volume claims; use a Deployment',
          },
          {
            rule: "self in ['Deployment', 'StatefulSet']",
            message: 'sourceTarget.kind must be Deployment',
          },
        ],
      }),
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(DNS_SUBDOMAIN)
      .meta({
        description: 'Name of the source Deployment, in the ElasticWorkload’s namespace.',
        'x-kubernetes-validations': [
          {
            rule: 'self == oldSelf',
            message:
              'sourceTarget.name is immutable: create another ElasticWorkload to split another Deployment',
          },
        ],
      }),
    min: replicaCount()
      .default(0)
      .meta({ description: 'Replicas that always stay on the source under capacity-aware overflow.' }),
    max: replicaCount().optional().meta({
      description: 'Most replicas placed on the source; the rest go to elastic units. Unbounded if unset.',
    }),
  })
  .meta({
    description: 'The workload whose replicas run on normal nodes first.',
    'x-kubernetes-validations': [
      {
        rule: '!has(self.max) || !has(self.min) || self.min <= self.max',
        // No messageExpression quoting the values: string(int) concatenation alone exceeds the apiserver's
        // CEL cost budget by 100x (kube-apiserver v1.36 refuses the CRD).
        message: 'sourceTarget.min must not exceed sourceTarget.max',
        fieldPath: '.min',
      },
      {
        rule: "self.kind != 'Deployment' || self.apiVersion == 'apps/v1'",
        message: 'a Deployment source has apiVersion apps/v1',
        fieldPath: '.apiVersion',
      },
    ],
  });

/** One elastic unit: a clone of the source with its own scheduling, filled in list order. */
export const ElasticUnitSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(63)
      .regex(DNS_LABEL)
      .meta({ description: 'Unit name: the unit Deployment is `<source>-unit-<name>`.' }),
    labels: stringMap('Labels added to the unit’s pods, e.g. spillway.dev/burst: always.', 64).optional(),
    annotations: stringMap('Annotations added to the unit’s pods.', 64).optional(),
    nodeSelector: stringMap('Merged into the pod nodeSelector; the unit’s value wins.', 32).optional(),
    tolerations: z
      .array(kubernetesObject<V1Toleration>('A pod toleration.'))
      .max(64)
      .optional()
      .meta({ description: 'Appended to the pod tolerations.' }),
    affinity: kubernetesObject<V1Affinity>(
      'Pod affinity; each kind the unit sets (nodeAffinity, podAffinity, podAntiAffinity) replaces the source’s.',
    ).optional(),
    max: replicaCount()
      .optional()
      .meta({ description: 'Most replicas on this unit; the rest go to the next unit. Unbounded if unset.' }),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: `!has(self.labels) || !(('${LABEL_UNIT}' in self.labels) || ('${LABEL_ELASTIC_WORKLOAD}' in self.labels))`,
        message: `labels ${LABEL_UNIT} and ${LABEL_ELASTIC_WORKLOAD} are set by spillway: remove them`,
        fieldPath: '.labels',
      },
    ],
  });

/** Capacity-aware overflow and drain-back (beyond ACK). */
export const OverflowSchema = z
  .object({
    policy: z.enum(['Static', 'WhenUnschedulable']).default('Static').meta({
      description:
        'Static: the source always gets min(replicas, max). WhenUnschedulable: replicas above sourceTarget.min stay on the source while its pods schedule, move to units only for source pods Unschedulable for longer than unschedulableSeconds, and drain back when capacity frees.',
    }),
    unschedulableSeconds: z.int32().min(0).max(86400).default(30).meta({
      description:
        'How long a source pod stays Unschedulable before its replica moves to a unit; also the pause after such a move before replicas try to return to the source.',
    }),
  })
  .prefault({})
  .meta({ description: 'When replicas spill to elastic units, and when they return.' });

/** What the user asks for. */
export const ElasticWorkloadSpecSchema = z
  .object({
    sourceTarget: SourceTargetSchema,
    replicas: replicaCount().meta({
      description: 'Total replicas over the source and every unit. The /scale subresource (HPA) writes it.',
    }),
    elasticUnit: z
      .array(ElasticUnitSchema)
      .max(16)
      .default([])
      .meta({
        description: 'Elastic units in overflow order; scale-in removes from the last one first.',
        'x-kubernetes-validations': [
          {
            rule: 'self.all(u, self.exists_one(v, v.name == u.name))',
            message: 'elasticUnit names must be unique',
          },
        ],
      }),
    overflow: OverflowSchema,
    foldBackTimeoutSeconds: z.int32().min(0).max(86400).default(600).meta({
      description:
        'How long deleting this ElasticWorkload waits for the source to run its replicas again before it removes the units anyway (the source then keeps them as pending pods). 0 removes the units at once; it may be changed while the deletion waits.',
    }),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: `!has(self.elasticUnit) || self.elasticUnit.all(u, size(self.sourceTarget.name) + size(u.name) <= ${MAX_DEPLOYMENT_NAME - '-unit-'.length})`,
        message: `a unit Deployment is named <sourceTarget.name>-unit-<elasticUnit.name>, which must be at most ${MAX_DEPLOYMENT_NAME} characters: shorten the unit name`,
        fieldPath: '.elasticUnit',
      },
    ],
  });

/** Replicas of one target, read from its Deployment's spec and status. */
const TargetStatusSchema = z.object({
  desiredReplicas: replicaCount().meta({ description: 'spec.replicas the controller set.' }),
  readyReplicas: replicaCount().meta({ description: 'Ready pods.' }),
});

/** metav1.Condition, with the apiserver's own bounds. */
export const ConditionSchema = z.object({
  type: z
    .string()
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    ),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: z.iso.datetime(),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});

/** What the controller observed and did. */
export const ElasticWorkloadStatusSchema = z.object({
  observedGeneration: z.int().min(0).optional(),
  replicas: replicaCount()
    .optional()
    .meta({ description: 'Pods of the source and every unit (the /scale subresource reads it).' }),
  readyReplicas: replicaCount().optional().meta({ description: 'Ready pods of the source and every unit.' }),
  selector: z.string().optional().meta({
    description: 'Label selector of every pod of the workload (the source’s; units’ pods match it).',
  }),
  sourceTarget: TargetStatusSchema.optional(),
  elasticUnitReplicas: replicaCount()
    .optional()
    .meta({ description: 'Sum of desiredReplicas over the units (for `kubectl get`).' }),
  elasticUnitsStatus: z
    .array(TargetStatusSchema.extend({ name: z.string() }))
    .optional()
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
  cappedReplicas: replicaCount()
    .optional()
    .meta({ description: 'Replicas not placed because the source and every unit are at their max.' }),
  lastOverflowTime: z.iso
    .datetime()
    .optional()
    .meta({ description: 'When replicas last moved to units because source pods were Unschedulable.' }),
  conditions: z
    .array(ConditionSchema)
    .optional()
    .meta({
      description: 'Ready, Bursting, BurstBlocked and Capped.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
});

/** The whole object. The CRD builder replaces apiVersion/kind/metadata by the standard schemas. */
export const ElasticWorkloadSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(KIND),
    metadata: z.looseObject({
      name: z.string(),
      namespace: z.string().optional(),
      uid: z.string().optional(),
      generation: z.int().optional(),
      resourceVersion: z.string().optional(),
      deletionTimestamp: z.string().optional(),
      finalizers: z.array(z.string()).optional(),
      labels: z.record(z.string(), z.string()).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    spec: ElasticWorkloadSpecSchema,
    status: ElasticWorkloadStatusSchema.optional(),
  })
  .meta({
    description:
      'Keeps up to sourceTarget.max replicas of a Deployment on the cluster’s nodes and bursts the rest onto elastic units.',
    'x-kubernetes-validations': [
      {
        // The name is a label value (spillway.dev/elastic-workload) on every unit pod.
        rule: 'size(self.metadata.name) <= 63',
        // fieldPath cannot point into metadata (the apiserver refuses the CRD), so the message names the field.
        message: 'metadata.name is a label value on the ElasticWorkload’s pods: use at most 63 characters',
      },
    ],
  });

/** An ElasticWorkload as read from the apiserver, defaults applied. */
export type ElasticWorkload = z.infer<typeof ElasticWorkloadSchema>;
/** An ElasticWorkload as a user writes it (defaulted fields optional). */
export type ElasticWorkloadInput = z.input<typeof ElasticWorkloadSchema>;
/** The spec, defaults applied. */
export type ElasticWorkloadSpec = z.infer<typeof ElasticWorkloadSpecSchema>;
/** The status. */
export type ElasticWorkloadStatus = z.infer<typeof ElasticWorkloadStatusSchema>;
/** One elastic unit. */
export type ElasticUnit = z.infer<typeof ElasticUnitSchema>;
/** The source target. */
export type SourceTarget = z.infer<typeof SourceTargetSchema>;
/** The overflow policy name. */
export type OverflowPolicy = z.infer<typeof OverflowSchema>['policy'];
/** A status condition (metav1.Condition). */
export type Condition = z.infer<typeof ConditionSchema>;

/** The condition types an ElasticWorkload reports. */
export const ConditionType = {
  /**
   * Every placed replica is ready on the source and the units. False, with the blocking reason, when replicas run
   * nowhere because the units cannot run them; a replica left out by a max does not make it False.
   */
  Ready: 'Ready',
  /** Some replicas run on elastic units. */
  Bursting: 'Bursting',
  /**
   * Replicas cannot burst, and the message names each field and unit: the source's pod template breaks the
   * sandbox rules (UnsupportedPodSpec: no unit is created), a unit's provider refuses its template
   * (ProviderRefusesPodSpec: that unit gets no replica), or a unit's pods keep failing on the virtual node
   * (UnitPodsFailing: it keeps its ready replicas for a cooldown).
   */
  BurstBlocked: 'BurstBlocked',
  /**
   * Replicas do not run anywhere: the units cannot run them (UnitsCannotRun), the source and every unit are at
   * their max (AllTargetsAtMax), or unit pods wait for room on a virtual node (NoVirtualNodeCapacity).
   */
  Capped: 'Capped',
} as const;
/** One of {@link ConditionType}. */
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];
