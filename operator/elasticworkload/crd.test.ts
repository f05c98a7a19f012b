import { describe, expect, it } from 'vitest';
import type { StructuralSchema } from '../shared/crd-schema.ts';
import { elasticWorkloadCrd } from './crd.ts';

const crd = elasticWorkloadCrd();
const version = crd.spec.versions[0]!;
const root = version.schema.openAPIV3Schema;

/** The schema node at a JSONPath like `.status.sourceTarget.desiredReplicas`, if the schema defines it. */
function at(path: string): StructuralSchema | undefined {
  let node: StructuralSchema | undefined = root;
  // A list filter (`conditions[?(@.type=="Ready")]`) steps into the list's items.
  for (const part of path
    .replace(/\[\?\(@\.[a-z]+=="[A-Za-z]+"\)\]/g, '[]')
    .split('.')
    .slice(1)) {
    const list = part.endsWith('[]');
    node = node?.properties?.[list ? part.slice(0, -2) : part];
    if (list) node = node?.items;
  }
  return node;
}

/** Every node of the schema with its path. */
function* walk(node: StructuralSchema, path = ''): Generator<[string, StructuralSchema]> {
  yield [path, node];
  for (const [k, v] of Object.entries(node.properties ?? {})) yield* walk(v, `${path}.${k}`);
  if (node.items) yield* walk(node.items, `${path}[*]`);
  if (node.additionalProperties) yield* walk(node.additionalProperties, `${path}{*}`);
}

describe('ElasticWorkload CRD', () => {
  it('is elasticworkloads.elastic.spillway.dev, namespaced, short name ew', () => {
    expect(crd.metadata.name).toBe('elasticworkloads.elastic.spillway.dev');
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names.shortNames).toEqual(['ew']);
    expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true });
  });

  it('has the status and scale subresources that kubectl scale and an HPA use', () => {
    expect(version.subresources).toEqual({
      status: {},
      scale: {
        specReplicasPath: '.spec.replicas',
        statusReplicasPath: '.status.replicas',
        labelSelectorPath: '.status.selector',
      },
    });
    expect(at('.spec.replicas')?.type).toBe('integer');
    expect(at('.status.replicas')?.type).toBe('integer');
    expect(at('.status.selector')?.type).toBe('string');
  });

  it('prints where the replicas are, each column reading a field the schema defines', () => {
    const columns = version.additionalPrinterColumns!;
    expect(columns.filter((c) => !c.priority).map((c) => c.name)).toEqual([
      'Desired',
      'Source',
      'Units',
      'Ready',
      'Status',
      'Age',
    ]);
    for (const c of columns) {
      if (c.jsonPath === '.metadata.creationTimestamp') continue;
      expect(at(c.jsonPath), c.jsonPath).toBeDefined();
    }
  });

  it('refuses a StatefulSet source with a message saying it is not supported yet', () => {
    const rules = at('.spec.sourceTarget.kind')?.['x-kubernetes-validations'] ?? [];
    expect(rules).toContainEqual({
      rule: "self != 'StatefulSet'",
      message: expect.stringMatching(/^StatefulSet sources are not supported yet/),
    });
  });

  it('checks min <= max and unique unit names with CEL', () => {
    const source = at('.spec.sourceTarget')?.['x-kubernetes-validations']?.map((r) => r.rule);
    expect(source).toContain('!has(self.max) || !has(self.min) || self.min <= self.max');
    expect(at('.spec.elasticUnit')?.['x-kubernetes-validations']?.[0]?.message).toBe(
      'elasticUnit names must be unique',
    );
  });

  it('refuses negative replica counts', () => {
    for (const path of ['.spec.replicas', '.spec.sourceTarget.min', '.spec.sourceTarget.max']) {
      expect(at(path)?.minimum, path).toBe(0);
    }
    expect(at('.spec.elasticUnit')?.items?.properties?.max?.minimum).toBe(0);
  });

  it('bounds every list and map of the spec, so that CEL cost estimates stay finite', () => {
    for (const [path, node] of walk(at('.spec')!, '.spec')) {
      if (node.type === 'array') expect(node.maxItems, path).toBeGreaterThan(0);
      if (node.additionalProperties) expect(node.maxProperties, path).toBeGreaterThan(0);
    }
  });

  it('reports every CEL error on a field the schema defines', () => {
    for (const [path, node] of walk(root)) {
      for (const rule of node['x-kubernetes-validations'] ?? []) {
        if (!rule.fieldPath) continue;
        expect(node.properties?.[rule.fieldPath.slice(1)], `${path} ${rule.fieldPath}`).toBeDefined();
      }
    }
  });
});
