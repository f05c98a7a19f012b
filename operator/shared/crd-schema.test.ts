import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  customResourceDefinition,
  StructuralSchemaError,
  toStructuralSchema,
  zodToStructuralSchema,
  type StructuralSchema,
} from './crd-schema.ts';

const Shared = z.object({ x: z.string() }).meta({ id: 'Shared' });

describe('zodToStructuralSchema', () => {
  it.each<[string, z.ZodType, StructuralSchema]>([
    ['a string with bounds', z.string().min(1).max(63), { type: 'string', minLength: 1, maxLength: 63 }],
    ['a user pattern is kept', z.string().regex(/^[a-z]+$/), { type: 'string', pattern: '^[a-z]+$' }],
    ['z.int32() gets format int32', z.int32().min(0), { type: 'integer', format: 'int32', minimum: 0 }],
    ['z.int() gets format int64', z.int(), { type: 'integer', format: 'int64' }],
    [
      'an int32 with its own maximum keeps it',
      z.int32().max(10),
      { type: 'integer', format: 'int32', maximum: 10 },
    ],
    ['a positive number', z.number().positive(), { type: 'number', minimum: 0, exclusiveMinimum: true }],
    ['a boolean', z.boolean(), { type: 'boolean' }],
    [
      'an enum with a default',
      z.enum(['A', 'B']).default('A'),
      { type: 'string', enum: ['A', 'B'], default: 'A' },
    ],
    ['a literal', z.literal('Deployment'), { type: 'string', enum: ['Deployment'] }],
    ['a union of literals', z.union([z.literal('a'), z.literal('b')]), { type: 'string', enum: ['a', 'b'] }],
    ['a nullable string', z.string().nullable(), { type: 'string', nullable: true }],
    [
      'a nullable object',
      z.object({ a: z.string() }).nullable(),
      { type: 'object', nullable: true, properties: { a: { type: 'string' } }, required: ['a'] },
    ],
    ['string | integer', z.union([z.string(), z.int()]), { 'x-kubernetes-int-or-string': true }],
    [
      'a known format drops zod’s JavaScript pattern',
      z.iso.datetime(),
      { type: 'string', format: 'date-time' },
    ],
    ['an unknown format is dropped', z.string().meta({ format: 'cuid9' }), { type: 'string' }],
    [
      'optional and defaulted fields are not required',
      z.object({ a: z.string(), b: z.string().optional(), c: z.int32().default(3) }),
      {
        type: 'object',
        properties: {
          a: { type: 'string' },
          b: { type: 'string' },
          c: { type: 'integer', format: 'int32', default: 3 },
        },
        required: ['a'],
      },
    ],
    [
      'a prefaulted object gets default {} so nested defaults apply',
      z.object({ o: z.object({ p: z.string().default('x') }).prefault({}) }),
      {
        type: 'object',
        properties: {
          o: { type: 'object', default: {}, properties: { p: { type: 'string', default: 'x' } } },
        },
      },
    ],
    [
      'a strict object loses additionalProperties: false',
      z.strictObject({ a: z.string() }),
      { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
    ],
    [
      'a record becomes an additionalProperties map',
      z.record(z.string().max(3), z.string()),
      { type: 'object', additionalProperties: { type: 'string' } },
    ],
    [
      'a loose object preserves unknown fields',
      z.looseObject({ a: z.string().optional() }),
      { type: 'object', properties: { a: { type: 'string' } }, 'x-kubernetes-preserve-unknown-fields': true },
    ],
    ['z.unknown() preserves anything', z.unknown(), { 'x-kubernetes-preserve-unknown-fields': true }],
    [
      'x-kubernetes extensions pass through .meta()',
      z.object({ n: z.string() }).meta({
        description: 'd',
        'x-kubernetes-validations': [{ rule: "self.n != ''", message: 'n must not be empty' }],
      }),
      {
        type: 'object',
        description: 'd',
        properties: { n: { type: 'string' } },
        required: ['n'],
        'x-kubernetes-validations': [{ rule: "self.n != ''", message: 'n must not be empty' }],
      },
    ],
    [
      'a list map keeps its extensions and bounds',
      z
        .array(z.object({ type: z.string() }))
        .max(8)
        .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
      {
        type: 'array',
        maxItems: 8,
        items: { type: 'object', properties: { type: { type: 'string' } }, required: ['type'] },
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
      },
    ],
    [
      'a $ref is inlined at every use',
      z.object({ a: Shared, b: Shared }),
      {
        type: 'object',
        properties: {
          a: { type: 'object', properties: { x: { type: 'string' } }, required: ['x'] },
          b: { type: 'object', properties: { x: { type: 'string' } }, required: ['x'] },
        },
        required: ['a', 'b'],
      },
    ],
    [
      'several patterns stay as untyped allOf members',
      z.string().regex(/^a/).regex(/b$/),
      { type: 'string', allOf: [{ pattern: '^a' }, { pattern: 'b$' }] },
    ],
  ])('%s', (_name, schema, expected) => {
    expect(zodToStructuralSchema(schema)).toEqual(expected);
  });

  it.each<[string, z.ZodType, string]>([
    [
      'a union of objects',
      z.union([z.object({ a: z.string() }), z.object({ b: z.int() })]),
      'u: a union of object',
    ],
    ['a tuple', z.tuple([z.string(), z.int()]), 'u: tuples are not structural'],
    ['a catchall', z.object({ a: z.string() }).catchall(z.int()), 'u: typed additionalProperties'],
  ])('refuses %s, naming the field', (_name, schema, message) => {
    expect(() => zodToStructuralSchema(z.object({ u: schema }))).toThrow(message);
  });

  it('refuses a recursive schema instead of looping', () => {
    interface Tree {
      children: Tree[];
    }
    const Tree: z.ZodType<Tree> = z.object({ children: z.array(z.lazy(() => Tree)) });
    expect(() => zodToStructuralSchema(Tree)).toThrow(StructuralSchemaError);
  });
});

describe('toStructuralSchema (draft 2020-12 input)', () => {
  it.each<[string, Record<string, unknown>, StructuralSchema]>([
    ['type [string, null]', { type: ['string', 'null'] }, { type: 'string', nullable: true }],
    [
      'numeric exclusiveMinimum',
      { type: 'number', exclusiveMinimum: 0 },
      { type: 'number', minimum: 0, exclusiveMinimum: true },
    ],
    [
      'anyOf with null',
      { anyOf: [{ type: 'integer' }, { type: 'null' }] },
      { type: 'integer', nullable: true },
    ],
    ['const', { type: 'string', const: 'x' }, { type: 'string', enum: ['x'] }],
    [
      'a unique list of strings',
      { type: 'array', uniqueItems: true, items: { type: 'string' } },
      { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set' },
    ],
    [
      '$schema, $defs and propertyNames are dropped',
      {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        propertyNames: { type: 'string' },
        additionalProperties: { $ref: '#/$defs/S' },
        $defs: { S: { type: 'string' } },
      },
      { type: 'object', additionalProperties: { type: 'string' } },
    ],
  ])('%s', (_name, json, expected) => {
    expect(toStructuralSchema(json)).toEqual(expected);
  });
});

describe('customResourceDefinition', () => {
  const Widget = z
    .object({
      apiVersion: z.literal('example.dev/v1'),
      kind: z.literal('Widget'),
      metadata: z.looseObject({ name: z.string() }),
      spec: z.object({ size: z.int32().min(0) }),
      status: z.object({ ready: z.boolean() }).optional(),
    })
    .meta({
      'x-kubernetes-validations': [{ rule: 'size(self.metadata.name) <= 63', message: 'name too long' }],
    });

  const crd = customResourceDefinition({
    group: 'example.dev',
    kind: 'Widget',
    plural: 'widgets',
    scope: 'Namespaced',
    shortNames: ['wg'],
    versions: [{ name: 'v1', schema: Widget, subresources: { status: {} } }],
  });

  it('names and stores the only version', () => {
    expect(crd.metadata.name).toBe('widgets.example.dev');
    expect(crd.spec.names).toEqual({
      kind: 'Widget',
      listKind: 'WidgetList',
      plural: 'widgets',
      singular: 'widget',
      shortNames: ['wg'],
    });
    expect(crd.spec.versions[0]).toMatchObject({
      name: 'v1',
      served: true,
      storage: true,
      subresources: { status: {} },
    });
  });

  it('replaces apiVersion, kind and metadata by the standard fields and keeps root CEL rules', () => {
    const root = crd.spec.versions[0]!.schema.openAPIV3Schema;
    expect(root.properties?.metadata).toEqual({ type: 'object' });
    expect(root.properties?.apiVersion?.type).toBe('string');
    expect(root.properties?.apiVersion?.enum).toBeUndefined();
    expect(root.required).toEqual(['spec']);
    expect(root['x-kubernetes-validations']).toEqual([
      { rule: 'size(self.metadata.name) <= 63', message: 'name too long' },
    ]);
  });

  it('refuses two storage versions', () => {
    expect(() =>
      customResourceDefinition({
        group: 'example.dev',
        kind: 'Widget',
        plural: 'widgets',
        scope: 'Namespaced',
        versions: [
          { name: 'v1', schema: Widget, storage: true },
          { name: 'v2', schema: Widget, storage: true },
        ],
      }),
    ).toThrow('exactly one version must be stored');
  });
});
