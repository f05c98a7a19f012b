/**
 * The ElasticWorkload CustomResourceDefinition: the schema from api.ts plus what only a CRD has (names,
 * subresources, printer columns). `hack/gen-crds.ts` writes it to crds/elasticworkload/; the operator applies
 * the same object at start-up, so the two never disagree.
 */
import { customResourceDefinition, type CustomResourceDefinition } from '../shared/crd-schema.ts';
import { ElasticWorkloadSchema, GROUP, KIND, PLURAL, VERSION } from '../../api/elasticworkload.ts';

/**
 * The CRD. Printer columns answer "where are my replicas": DESIRED (spec.replicas), SOURCE and UNITS (what
 * the controller placed on each side), READY (ready pods over both), STATUS (the Ready condition's reason:
 * why not, when not ready, e.g. SourceNotFound) and AGE; `-o wide` adds the overflow policy, the replicas left
 * unplaced and the Ready condition's message.
 */
export function elasticWorkloadCrd(): CustomResourceDefinition {
  return customResourceDefinition({
    group: GROUP,
    kind: KIND,
    plural: PLURAL,
    singular: 'elasticworkload',
    shortNames: ['ew'],
    // Not in `all`: sig-cli keeps that category for built-in kinds, and `kubectl get all` already lists the
    // source and unit Deployments an ElasticWorkload drives. `kubectl get spillway` lists spillway's kinds.
    categories: ['spillway'],
    scope: 'Namespaced',
    labels: { 'app.kubernetes.io/part-of': 'spillway' },
    versions: [
      {
        name: VERSION,
        schema: ElasticWorkloadSchema,
        subresources: {
          status: {},
          scale: {
            specReplicasPath: '.spec.replicas',
            statusReplicasPath: '.status.replicas',
            labelSelectorPath: '.status.selector',
          },
        },
        additionalPrinterColumns: [
          {
            name: 'Desired',
            type: 'integer',
            jsonPath: '.spec.replicas',
            description: 'Total replicas asked for.',
          },
          {
            name: 'Source',
            type: 'integer',
            jsonPath: '.status.sourceTarget.desiredReplicas',
            description: 'Replicas placed on the source Deployment (normal nodes).',
          },
          {
            name: 'Units',
            type: 'integer',
            jsonPath: '.status.elasticUnitReplicas',
            description: 'Replicas placed on elastic units, all units together.',
          },
          {
            name: 'Ready',
            type: 'integer',
            jsonPath: '.status.readyReplicas',
            description: 'Ready pods on the source and every unit.',
          },
          {
            name: 'Status',
            type: 'string',
            jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
            description:
              'Why the workload is or is not ready (the Ready condition’s reason), e.g. SourceNotFound, ProviderRefusesPodSpec.',
          },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          {
            name: 'Policy',
            type: 'string',
            jsonPath: '.spec.overflow.policy',
            description: 'Overflow policy.',
            priority: 1,
          },
          {
            name: 'Capped',
            type: 'integer',
            jsonPath: '.status.cappedReplicas',
            description:
              'Replicas not placed: the source and every unit are at their max, or the units cannot run them.',
            priority: 1,
          },
          {
            name: 'Message',
            type: 'string',
            jsonPath: '.status.conditions[?(@.type=="Ready")].message',
            description: 'The Ready condition’s message.',
            priority: 1,
          },
        ],
      },
    ],
  });
}
