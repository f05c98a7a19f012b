/**
 * The AdmissionReview v1 envelope: just enough checking to answer safely, and the response shape. Deliberately
 * hand-written instead of a schema parse: it runs on every pod creation (p99 budget: 5 ms), and the object
 * inside must stay exactly as the apiserver sent it, because patches are diffs against it (patch.ts).
 */
import { encodePatch, type PatchOperation } from './patch.ts';

/** Group/version/kind as an AdmissionRequest names it. */
export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** The fields of an AdmissionRequest (admission.k8s.io/v1) that spillway reads; the rest pass through untouched. */
export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  /** The raw object: plain parsed JSON, never schema-parsed. */
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
}

/** An AdmissionReview as received. */
export interface AdmissionReview {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  request: AdmissionRequest;
}

/** What a webhook decided: allowed (maybe with a patch), or denied with a status the user sees. */
export type AdmissionOutcome =
  | { allowed: true; patch?: PatchOperation[]; warnings?: string[] }
  | { allowed: false; code: number; message: string; warnings?: string[] };

/** A webhook: a synchronous, pure-ish function of one request. Throwing means an internal error (HTTP 500). */
export type AdmissionHandler = (request: AdmissionRequest) => AdmissionOutcome;

/** A request the server cannot answer with an AdmissionReview (malformed JSON, wrong kind, no uid): HTTP 400. */
export class InvalidAdmissionReview extends Error {
  override name = 'InvalidAdmissionReview';
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses and checks an AdmissionReview v1 request body.
 * @throws InvalidAdmissionReview with a message that says what is wrong
 */
export function parseAdmissionReview(body: string): AdmissionReview {
  let review: unknown;
  try {
    review = JSON.parse(body);
  } catch (err) {
    throw new InvalidAdmissionReview(`request body is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(review)) throw new InvalidAdmissionReview('request body is not a JSON object');
  if (review.kind !== 'AdmissionReview') {
    throw new InvalidAdmissionReview(`expected kind AdmissionReview, got ${JSON.stringify(review.kind)}`);
  }
  if (review.apiVersion !== 'admission.k8s.io/v1') {
    throw new InvalidAdmissionReview(
      `expected apiVersion admission.k8s.io/v1, got ${JSON.stringify(review.apiVersion)} ` +
        '(register the webhook with admissionReviewVersions: [v1])',
    );
  }
  const request = review.request;
  if (!isObject(request)) throw new InvalidAdmissionReview('AdmissionReview has no request');
  if (typeof request.uid !== 'string' || request.uid === '') {
    throw new InvalidAdmissionReview('AdmissionReview request has no uid');
  }
  const kind = request.kind;
  if (!isObject(kind) || typeof kind.kind !== 'string' || typeof kind.group !== 'string') {
    throw new InvalidAdmissionReview('AdmissionReview request has no kind {group, version, kind}');
  }
  if (typeof request.operation !== 'string') {
    throw new InvalidAdmissionReview('AdmissionReview request has no operation');
  }
  for (const field of ['object', 'oldObject'] as const) {
    const value = request[field];
    if (value !== undefined && value !== null && !isObject(value)) {
      throw new InvalidAdmissionReview(`AdmissionReview request.${field} is not an object`);
    }
  }
  // The handlers read these as strings (the objects' own fields are checked by shape.ts).
  for (const field of ['namespace', 'name', 'subResource'] as const) {
    const value = request[field];
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new InvalidAdmissionReview(`AdmissionReview request.${field} is not a string`);
    }
  }
  return review as unknown as AdmissionReview;
}

/** Builds the AdmissionReview response for `uid`; the patch is base64 JSONPatch, empty patches are omitted. */
export function admissionResponse(uid: string, outcome: AdmissionOutcome): object {
  const response: Record<string, unknown> = { uid, allowed: outcome.allowed };
  if (outcome.allowed) {
    const patch = outcome.patch && encodePatch(outcome.patch);
    if (patch) {
      response.patchType = 'JSONPatch';
      response.patch = patch;
    }
  } else {
    response.status = {
      status: 'Failure',
      code: outcome.code,
      reason: reasonFor(outcome.code),
      message: outcome.message,
    };
  }
  if (outcome.warnings && outcome.warnings.length > 0) response.warnings = outcome.warnings;
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

function reasonFor(code: number): string {
  if (code === 403) return 'Forbidden';
  if (code === 422) return 'Invalid';
  return code >= 500 ? 'InternalError' : 'BadRequest';
}
