/**
 * The ElasticWorkload CustomResourceDefinition: the schema from api.ts plus what only a CRD has (names,
 * subresources, printer columns). `hack/gen-crds.ts` writes it to crds/elasticworkload/; the operator applies
 * the same object at start-up, so the two never disagree.
 */
import { customResourceDefinition, type CustomResourceDefinition } from '../shared/crd-schema.ts';
import { ElasticWorkloadSchema, GROUP, KIND, PLURAL, VERSION } from './api.ts';

/**
 * The CRD. Printer columns answer "where are my replicas": DESIRED (spec.replicas), SOURCE and UNITS (what
 * the controller placed on each side), READY (ready pods over both) and AGE; `-o wide` adds the overflow policy
 * and the replicas left unplaced because every target is at its max.
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
            description: 'Replicas not placed: the source and every unit are at their max.',
            priority: 1,
          },
        ],
      },
    ],
  });
}
