/**
 * JSON Patches for admission responses. The rule (DESIGN.md §7): diff the RAW request object against a mutated
 * deep copy of it. A copy that went through a schema (zod, or client-node's typed deserializer) has lost the
 * fields the schema does not know, and a diff against it would tell the apiserver to delete them.
 */
import { createPatch, type Operation } from 'rfc6902';

/** One JSON Patch operation (RFC 6902). */
export type PatchOperation = Operation;

/**
 * The operations that turn `raw` into `mutated`. Pointers are escaped by rfc6902 (`/` → `~1`, `~` → `~0`), which
 * matters for label and annotation keys such as `spillway.dev/burst`.
 * @param raw the object exactly as the AdmissionRequest carried it (parsed JSON, never schema-parsed)
 * @param mutated a `structuredClone(raw)` that the decision function changed
 */
export function admissionPatch(raw: unknown, mutated: unknown): PatchOperation[] {
  return createPatch(raw, mutated);
}

/** The base64 form an AdmissionResponse carries, or undefined for an empty patch (then the field is omitted). */
export function encodePatch(ops: readonly PatchOperation[]): string | undefined {
  return ops.length === 0 ? undefined : Buffer.from(JSON.stringify(ops)).toString('base64');
}
