/**
 * Server-side verification of Alibaba Cloud's `ACS3-HMAC-SHA256` request signature (V3 signing), written from
 * the published algorithm and checked against `@alicloud/openapi-util`'s `getAuthorization` (the code the
 * official SDK signs with), so that the fake ECI endpoint accepts exactly what the real one accepts:
 *
 * ```
 * CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HashedPayload
 * StringToSign     = "ACS3-HMAC-SHA256" \n hex(sha256(CanonicalRequest))
 * Signature        = hex(hmac-sha256(AccessKeySecret, StringToSign))
 * ```
 *
 * CanonicalQuery: the decoded parameters sorted by name (code-unit order), `name=value`, both percent-encoded like
 * `encodeURIComponent` plus `!'()*`. CanonicalHeaders: `host`, `content-type` and every `x-acs-*` header, lower-case,
 * sorted, `name:trimmed-value\n` each. HashedPayload: the `x-acs-content-sha256` header, which must be the hex
 * SHA-256 of the body.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** The algorithm the SDK uses by default; the only one the fake accepts. */
export const ALGORITHM = 'ACS3-HMAC-SHA256';

/** RFC 3986 percent-encoding as Alibaba's canonicalisation defines it. */
export function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** The parts of an `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..` header. */
export interface ParsedAuthorization {
  accessKeyId: string;
  signedHeaders: string[];
  signature: string;
}

/** Parses the Authorization header; undefined when it is absent or not ACS3-HMAC-SHA256. */
export function parseAuthorization(header: string | undefined): ParsedAuthorization | undefined {
  if (!header?.startsWith(`${ALGORITHM} `)) return undefined;
  const fields = new Map<string, string>();
  for (const part of header.slice(ALGORITHM.length + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const accessKeyId = fields.get('Credential');
  const signed = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!accessKeyId || !signed || !signature) return undefined;
  return { accessKeyId, signedHeaders: signed.split(';'), signature };
}

/** One request as the server received it. */
export interface ReceivedRequest {
  method: string;
  /** The path of the request URL, e.g. `/`. */
  pathname: string;
  /** Decoded query parameters. */
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Builds the canonical request the client must have signed. */
export function canonicalRequest(req: ReceivedRequest, signedHeaders: readonly string[]): string {
  const names = [...new Set(req.query.keys())].sort();
  const query = names.map((k) => `${percentEncode(k)}=${percentEncode(req.query.get(k) ?? '')}`).join('&');
  const headers = signedHeaders.map((h) => `${h}:${headerValue(req.headers, h).trim()}\n`).join('');
  const payload = headerValue(req.headers, 'x-acs-content-sha256');
  return [req.method, req.pathname, query, headers, signedHeaders.join(';'), payload].join('\n');
}

function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

/** Why a request was rejected, as ECI's error code and message. */
export interface SignatureFailure {
  status: number;
  code: string;
  message: string;
}

/**
 * Verifies a request against `secretFor(accessKeyId)`. Returns the access key ID on success, or the error ECI
 * would answer. Also checks what the algorithm requires beyond the HMAC: every `x-acs-*` header, `host` and
 * `content-type` are signed, and the payload hash matches the body.
 */
export function verifySignature(
  req: ReceivedRequest,
  secretFor: (accessKeyId: string) => string | undefined,
): { accessKeyId: string } | SignatureFailure {
  const auth = parseAuthorization(headerValue(req.headers, 'authorization') || undefined);
  if (!auth)
    return {
      status: 400,
      code: 'MissingAuthorization',
      message: `an ${ALGORITHM} Authorization header is required`,
    };
  const secret = secretFor(auth.accessKeyId);
  if (secret === undefined) {
    return {
      status: 404,
      code: 'InvalidAccessKeyId.NotFound',
      message: 'Specified access key is not found.',
    };
  }
  const sorted = [...auth.signedHeaders].sort();
  const mustSign = Object.keys(req.headers).filter(
    (h) => h.startsWith('x-acs-') || h === 'host' || h === 'content-type',
  );
  const unsigned = mustSign.filter((h) => !auth.signedHeaders.includes(h));
  if (unsigned.length > 0 || sorted.join(';') !== auth.signedHeaders.join(';')) {
    return {
      status: 400,
      code: 'SignatureDoesNotMatch',
      message: `SignedHeaders must list host, content-type and every x-acs-* header, sorted; unsigned: ${unsigned.join(',')}`,
    };
  }
  if (headerValue(req.headers, 'x-acs-content-sha256') !== sha256Hex(req.body)) {
    return {
      status: 400,
      code: 'ContentSHA256NotMatch',
      message: 'x-acs-content-sha256 does not match the body',
    };
  }
  const stringToSign = `${ALGORITHM}\n${sha256Hex(canonicalRequest(req, auth.signedHeaders))}`;
  const expected = createHmac('sha256', secret).update(stringToSign).digest('hex');
  const given = Buffer.from(auth.signature);
  if (given.length !== expected.length || !timingSafeEqual(given, Buffer.from(expected))) {
    return {
      status: 400,
      code: 'SignatureDoesNotMatch',
      message: `The request signature does not conform to Aliyun standards. server string to sign is:${stringToSign}`,
    };
  }
  return { accessKeyId: auth.accessKeyId };
}
