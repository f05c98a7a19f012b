/**
 * zod → Kubernetes CRD. A CRD's `openAPIV3Schema` must be *structural* (apiextensions.k8s.io/v1): every node
 * has a `type` (or preserves unknown fields), there are no `$ref`s, unions carry no types, and
 * `additionalProperties` never sits beside `properties`. zod's JSON Schema output is none of that, so
 * {@link toStructuralSchema} rewrites it, and {@link customResourceDefinition} wraps the result in a CRD.
 *
 * Anything the rewriter cannot express faithfully throws with the field path, rather than silently producing a
 * schema that validates something other than the zod schema does.
 *
 * The output uses wire names (`x-kubernetes-validations`, not client-node's `xKubernetesValidations`): send it
 * as raw JSON. client-node's ObjectSerializer would drop the wire-named keys of a `V1CustomResourceDefinition`.
 */
import { z } from 'zod';

/** A JSON Schema node as zod emits it (draft 2020-12 or OpenAPI 3.0). */
export type JsonSchema = Record<string, unknown>;

/** One `x-kubernetes-validations` entry: a CEL rule and what to tell the user when it fails. */
export interface CelRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  /** JSONPath of the field the error is reported on, relative to the node holding the rule (e.g. `.max`). */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  optionalOldSelf?: boolean;
}

/** A structural OpenAPI v3 schema node, with the wire names the apiserver expects. */
export interface StructuralSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  description?: string;
  title?: string;
  default?: unknown;
  enum?: unknown[];
  nullable?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  required?: string[];
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  allOf?: StructuralSchema[];
  'x-kubernetes-preserve-unknown-fields'?: true;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: CelRule[];
}

const words = (text: string) => text.trim().split(/\s+/);

/** Keys copied as they are. `.meta()` may set any of them. */
const PASSTHROUGH = new Set(
  words(`
  description title default enum nullable format minimum maximum multipleOf minLength maxLength pattern minItems maxItems
  minProperties maxProperties example externalDocs x-kubernetes-preserve-unknown-fields
  x-kubernetes-int-or-string x-kubernetes-embedded-resource x-kubernetes-list-type
  x-kubernetes-list-map-keys x-kubernetes-map-type x-kubernetes-validations
  `),
);

/**
 * Dropped: annotations with no OpenAPI v3 counterpart, which never change what validates, and `propertyNames`
 * (a record's key schema), which has no structural form: map keys are strings anyway.
 */
const DROPPED = new Set(
  words(`
  $schema $id id $comment $defs definitions examples readOnly writeOnly deprecated contentEncoding
  contentMediaType propertyNames
  `),
);

/** String formats the apiserver validates itself (k8s.io/apiextensions-apiserver supported formats). */
const KUBERNETES_STRING_FORMATS = new Set(
  words(`
  bsonobjectid uri email hostname ipv4 ipv6 cidr mac uuid uuid3 uuid4 uuid5 isbn isbn10 isbn13
  creditcard ssn hexcolor rgbcolor byte password date duration datetime date-time
  `),
);

const INT32 = { min: -2147483648, max: 2147483647 };
const SAFE_INT = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };

/** Thrown for a zod construct that has no faithful structural form; `path` names the field. */
export class StructuralSchemaError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path || '<root>'}: ${message}`);
    this.name = 'StructuralSchemaError';
    this.path = path;
  }
}

/**
 * Rewrites a JSON Schema produced by `z.toJSONSchema` into a structural schema.
 * - `$ref` is inlined from `$defs`/`definitions` (a recursive schema throws: structural schemas cannot recurse);
 * - `T | null` becomes `nullable: true`; a union of literals becomes one `enum`; `string | integer` becomes
 *   `x-kubernetes-int-or-string`; any other union throws;
 * - `const` becomes a one-value `enum`; numeric `exclusiveMinimum`/`exclusiveMaximum` become the OpenAPI 3.0
 *   boolean form;
 * - zod's integer range sentinels become `format: int32` (`z.int32()`) or `format: int64` (`z.int()`);
 * - `additionalProperties: false` is dropped (pruning already removes unknown fields), `{}`/`true` become
 *   `x-kubernetes-preserve-unknown-fields`, a schema stays as a map (`z.record`);
 * - a string format the apiserver checks itself drops zod's pattern for it (zod's regexes are JavaScript, the
 *   apiserver's are RE2); an unknown format is dropped and its pattern kept;
 * - `uniqueItems` on scalars becomes `x-kubernetes-list-type: set`;
 * - `default`, `description` and every `x-kubernetes-*` extension (set through `.meta()`) are kept.
 */
export function toStructuralSchema(root: JsonSchema): StructuralSchema {
  return rewrite(root, '', { defs: { ...asRecord(root.definitions), ...asRecord(root.$defs) }, refs: [] });
}

/**
 * `z.toJSONSchema` with the options a CRD needs, then rewritten. The input shape, because that is what users
 * write (a defaulted field is optional); draft 2020-12, because zod's OpenAPI 3.0 output turns a tuple into a
 * list of a union, which would be rewritten into something else instead of being refused.
 */
export function zodToStructuralSchema(schema: z.ZodType): StructuralSchema {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'throw' });
  return toStructuralSchema(json as JsonSchema);
}

/** The `$defs` to inline, and the chain of `$ref`s being inlined (to refuse recursion). */
interface Refs {
  defs: Record<string, unknown>;
  refs: string[];
}

function rewrite(node: JsonSchema, path: string, ctx: Refs): StructuralSchema {
  if (typeof node.$ref === 'string') {
    const name = node.$ref.replace(/^#\/(\$defs|definitions)\//, '');
    if (ctx.refs.includes(name))
      throw new StructuralSchemaError(path, `recursive schema "${name}" cannot be inlined`);
    const target = ctx.defs[name];
    if (!isRecord(target)) throw new StructuralSchemaError(path, `unresolved $ref ${node.$ref}`);
    const { $ref: _ref, ...siblings } = node;
    return rewrite({ ...target, ...siblings }, path, { defs: ctx.defs, refs: [...ctx.refs, name] });
  }
  const union = node.anyOf ?? node.oneOf;
  if (Array.isArray(union)) return rewrite(mergeUnion(node, union as JsonSchema[], path), path, ctx);

  const out: StructuralSchema = {};
  const raw = out as Record<string, unknown>;
  const types = (
    Array.isArray(node.type) ? node.type : node.type === undefined ? [] : [node.type]
  ) as string[];
  if (types.includes('null')) out.nullable = true;
  const nonNull = types.filter((t) => t !== 'null');
  if (nonNull.length > 1) {
    throw new StructuralSchemaError(
      path,
      `a field of several types (${nonNull.join(', ')}) is not structural`,
    );
  }
  if (nonNull[0]) out.type = nonNull[0] as StructuralSchema['type'];

  for (const [key, value] of Object.entries(node)) {
    if (DROPPED.has(key) || key === 'type' || key === '$ref') continue;
    if (PASSTHROUGH.has(key)) {
      raw[key] = value;
      continue;
    }
    switch (key) {
      case 'const':
        out.enum = [value];
        break;
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
        if (typeof value === 'number') raw[bound] = value;
        if (value !== false) raw[key] = true;
        break;
      }
      case 'required': {
        const required = [...new Set(value as string[])];
        if (required.length) out.required = required;
        break;
      }
      case 'properties': {
        const entries = Object.entries(value as Record<string, JsonSchema>);
        if (entries.length) {
          out.properties = Object.fromEntries(
            entries.map(([name, child]) => [name, rewrite(child, join(path, name), ctx)]),
          );
        }
        break;
      }
      case 'additionalProperties':
      case 'items':
      case 'prefixItems':
      case 'uniqueItems':
      case 'allOf':
        break; // handled below, once the node's own keys are known
      default:
        throw new StructuralSchemaError(path, `JSON Schema keyword "${key}" has no structural form`);
    }
  }

  rewriteAdditionalProperties(node, out, path, ctx);
  rewriteItems(node, out, path, ctx);
  if (Array.isArray(node.allOf))
    out.allOf = node.allOf.map((v, i) => valueValidation(v, out, `${path}.allOf[${i}]`));
  if (out.type === 'integer') integerFormat(out);
  if (out.type === 'string' && typeof out.format === 'string') {
    if (KUBERNETES_STRING_FORMATS.has(out.format)) delete out.pattern;
    else delete out.format;
  }
  if (out.required && !out.properties) {
    throw new StructuralSchemaError(path, `required fields ${out.required.join(', ')} have no properties`);
  }
  if (!out.type && !out['x-kubernetes-int-or-string'] && !out['x-kubernetes-preserve-unknown-fields']) {
    if (out.properties || out.items || out.enum) {
      throw new StructuralSchemaError(path, 'a field with properties, items or enum needs a type');
    }
    // z.unknown()/z.any(): keep whatever the user wrote.
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  return canonicalOrder(out);
}

/** Key order of the generated YAML: what a field is first, then its bounds, then its children and rules. */
const KEY_ORDER = words(`
  type format description title default enum nullable minimum exclusiveMinimum maximum
  exclusiveMaximum multipleOf minLength maxLength pattern minItems maxItems minProperties
  maxProperties
`);

function canonicalOrder(out: StructuralSchema): StructuralSchema {
  const rank = (key: string) => {
    const i = KEY_ORDER.indexOf(key);
    return i >= 0 ? i : key.startsWith('x-kubernetes-') ? KEY_ORDER.length + 1 : KEY_ORDER.length;
  };
  const keys = Object.keys(out).sort((a, b) => rank(a) - rank(b));
  return Object.fromEntries(keys.map((k) => [k, (out as Record<string, unknown>)[k]])) as StructuralSchema;
}

function rewriteAdditionalProperties(node: JsonSchema, out: StructuralSchema, path: string, ctx: Refs): void {
  const ap = node.additionalProperties;
  if (ap === undefined || ap === false) return;
  if (ap === true || (isRecord(ap) && Object.keys(ap).length === 0)) {
    out['x-kubernetes-preserve-unknown-fields'] = true;
    return;
  }
  if (!isRecord(ap))
    throw new StructuralSchemaError(path, 'additionalProperties must be a boolean or a schema');
  if (out.properties) {
    throw new StructuralSchemaError(
      path,
      'typed additionalProperties beside properties (.catchall) is not structural',
    );
  }
  out.additionalProperties = rewrite(ap, `${path}[*]`, ctx);
}

function rewriteItems(node: JsonSchema, out: StructuralSchema, path: string, ctx: Refs): void {
  if (node.prefixItems !== undefined || Array.isArray(node.items) || node.items === false) {
    throw new StructuralSchemaError(path, 'tuples are not structural: use an object');
  }
  if (isRecord(node.items)) out.items = rewrite(node.items, `${path}[*]`, ctx);
  if (node.uniqueItems === true) {
    const itemType = out.items?.type;
    if (itemType === 'object' || itemType === 'array' || itemType === undefined) {
      throw new StructuralSchemaError(
        path,
        'uniqueItems is only expressible for lists of scalars (list-type set)',
      );
    }
    out['x-kubernetes-list-type'] = 'set';
  }
}

/** The members of an `allOf` may only add value validations (zod uses it for several patterns or divisors). */
function valueValidation(member: unknown, parent: StructuralSchema, path: string): StructuralSchema {
  if (!isRecord(member)) throw new StructuralSchemaError(path, 'allOf member must be a schema');
  const { type, ...rest } = member;
  if (type !== undefined && type !== parent.type) {
    throw new StructuralSchemaError(
      path,
      `allOf member of type ${String(type)} inside a ${parent.type} field`,
    );
  }
  const allowed = ['pattern', 'multipleOf', 'minLength', 'maxLength', 'minimum', 'maximum', 'enum'];
  for (const key of Object.keys(rest)) {
    if (!allowed.includes(key)) throw new StructuralSchemaError(path, `allOf member sets "${key}"`);
  }
  return rest as StructuralSchema;
}

/** Collapses the unions that have a structural form into one node; throws for the others. */
function mergeUnion(node: JsonSchema, members: JsonSchema[], path: string): JsonSchema {
  const { anyOf: _a, oneOf: _o, ...siblings } = node;
  const isNull = (m: JsonSchema) =>
    m.type === 'null' || (Array.isArray(m.enum) && m.enum.length === 1 && m.enum[0] === null);
  const nullable = members.some(isNull) || siblings.nullable === true;
  const rest = members.filter((m) => !isNull(m));
  const withNull = (n: JsonSchema): JsonSchema => (nullable ? { ...n, nullable: true } : n);
  if (rest.length === 1) return withNull({ ...rest[0], ...siblings });
  const types = new Set(rest.map((m) => m.type));
  const literal = (m: JsonSchema) => 'const' in m || Array.isArray(m.enum);
  if (types.size === 1 && typeof rest[0]?.type === 'string' && rest.every(literal)) {
    const values = rest.flatMap((m) => ('const' in m ? [m.const] : (m.enum as unknown[])));
    return withNull({ type: rest[0].type, enum: [...new Set(values)], ...siblings });
  }
  if (rest.length === 2 && types.has('string') && types.has('integer')) {
    return withNull({ 'x-kubernetes-int-or-string': true, ...siblings });
  }
  throw new StructuralSchemaError(
    path,
    `a union of ${[...types].join(', ')} is not structural: use one object with optional fields and a CEL rule`,
  );
}

/** zod spells int32/int64 as range sentinels; Kubernetes spells them as formats. */
function integerFormat(out: StructuralSchema): void {
  for (const [format, range] of [
    ['int32', INT32],
    ['int64', SAFE_INT],
  ] as const) {
    const atMin = out.minimum === range.min;
    const atMax = out.maximum === range.max;
    if (atMin) delete out.minimum;
    if (atMax) delete out.maximum;
    if ((atMin || atMax) && !out.format) out.format = format;
  }
}

function join(path: string, name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)
    ? path
      ? `${path}.${name}`
      : name
    : `${path}[${JSON.stringify(name)}]`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asRecord(v: unknown): Record<string, unknown> {
  return isRecord(v) ? v : {};
}

/** One `additionalPrinterColumns` entry of a CRD version. */
export interface PrinterColumn {
  name: string;
  type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  format?: string;
  /** 0 shows in `kubectl get`; higher only with `-o wide`. */
  priority?: number;
}

/** One served version of a custom resource, its schema being the zod schema of the whole object. */
export interface CrdVersion {
  name: string;
  /** The zod schema of the object; its `apiVersion`, `kind` and `metadata` are replaced by the standard ones. */
  schema: z.ZodType;
  served?: boolean;
  storage?: boolean;
  subresources?: {
    status?: Record<string, never>;
    scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string };
  };
  additionalPrinterColumns?: PrinterColumn[];
}

/** What a CRD needs beyond its schema. */
export interface CrdOptions {
  group: string;
  kind: string;
  plural: string;
  singular?: string;
  listKind?: string;
  shortNames?: string[];
  categories?: string[];
  scope: 'Namespaced' | 'Cluster';
  versions: CrdVersion[];
  /** Labels on the CRD object itself. */
  labels?: Record<string, string>;
}

/** A CustomResourceDefinition as plain wire-format JSON, ready to serialize or apply. */
export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames?: string[];
      categories?: string[];
    };
    scope: 'Namespaced' | 'Cluster';
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: StructuralSchema };
      subresources?: CrdVersion['subresources'];
      additionalPrinterColumns?: PrinterColumn[];
    }>;
  };
}

/**
 * Builds a CRD from zod schemas. The root's `apiVersion`/`kind`/`metadata` are replaced by what every
 * Kubernetes object has (the apiserver forbids constraining `metadata` beyond name rules, which belong in a
 * root CEL rule on `self.metadata.name`); root-level `.meta()` extensions such as CEL rules are kept.
 */
export function customResourceDefinition(opts: CrdOptions): CustomResourceDefinition {
  const storage = opts.versions.filter((v) => v.storage ?? opts.versions.length === 1);
  if (storage.length !== 1)
    throw new Error(`CRD ${opts.plural}.${opts.group}: exactly one version must be stored`);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${opts.plural}.${opts.group}`, ...(opts.labels ? { labels: opts.labels } : {}) },
    spec: {
      group: opts.group,
      names: {
        kind: opts.kind,
        listKind: opts.listKind ?? `${opts.kind}List`,
        plural: opts.plural,
        singular: opts.singular ?? opts.kind.toLowerCase(),
        ...(opts.shortNames ? { shortNames: opts.shortNames } : {}),
        ...(opts.categories ? { categories: opts.categories } : {}),
      },
      scope: opts.scope,
      versions: opts.versions.map((v) => ({
        name: v.name,
        served: v.served ?? true,
        storage: v === storage[0],
        schema: { openAPIV3Schema: objectRoot(zodToStructuralSchema(v.schema)) },
        ...(v.subresources ? { subresources: v.subresources } : {}),
        ...(v.additionalPrinterColumns ? { additionalPrinterColumns: v.additionalPrinterColumns } : {}),
      })),
    },
  };
}

function objectRoot(schema: StructuralSchema): StructuralSchema {
  if (schema.type !== 'object')
    throw new StructuralSchemaError('', 'a custom resource schema must be an object');
  const standard: Record<string, StructuralSchema> = {
    apiVersion: {
      type: 'string',
      description:
        'The versioned schema of this representation of an object; see the Kubernetes API conventions.',
    },
    kind: {
      type: 'string',
      description: 'The REST resource this object represents; see the Kubernetes API conventions.',
    },
    metadata: { type: 'object' },
  };
  const required = (schema.required ?? []).filter((name) => !(name in standard));
  const { required: _r, properties = {}, ...rest } = schema;
  return { ...rest, properties: { ...properties, ...standard }, ...(required.length ? { required } : {}) };
}
