/**
 * The node client certificate request of a virtual node, both sides of it: the PKCS#10 request a virtual node
 * sends (as kubelet's TLS bootstrap does: `CN=system:node:<name>, O=system:nodes`, no other names, signer
 * `kubernetes.io/kube-apiserver-client-kubelet`) and the decision spillway's approver takes on one.
 */
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';

x509.cryptoProvider.set(webcrypto as never);

/** The signer of kubelet client certificates; kube-controller-manager's csrsigning controller signs for it. */
export const KUBELET_CLIENT_SIGNER = 'kubernetes.io/kube-apiserver-client-kubelet';
/** The group every node identity is in (the Node authorizer and NodeRestriction key on it). */
export const NODES_GROUP = 'system:nodes';
/** The user name prefix of a node identity. */
export const NODE_USER_PREFIX = 'system:node:';
/** What an ECDSA client certificate is for (RSA keys would add `key encipherment`). */
export const NODE_CLIENT_USAGES = ['digital signature', 'client auth'] as const;
/** Usages a node client certificate may carry: the signer's own allowed set. */
const ALLOWED_USAGES = new Set(['digital signature', 'key encipherment', 'client auth']);

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A fresh ECDSA P-256 key and the PEM request naming `system:node:<nodeName>` in `system:nodes`. */
export async function nodeClientRequest(nodeName: string): Promise<{ requestPem: string; keyPem: string }> {
  return nodeRequest(nodeName);
}

/** A fresh ECDSA P-256 key and a PEM request for `CN=system:node:<nodeName>, O=system:nodes` with `extensions`. */
export async function nodeRequest(
  nodeName: string,
  extensions: x509.Extension[] = [],
): Promise<{ requestPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [`${NODE_USER_PREFIX}${nodeName}`] }, { O: [NODES_GROUP] }],
    keys,
    signingAlgorithm: algorithm,
    extensions,
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    requestPem: request.toString('pem'),
    keyPem: x509.PemConverter.encode(der, 'PRIVATE KEY'),
  };
}

/** Who may get a node client certificate approved by spillway. */
export interface NodeClientPolicy {
  /** Is `name` one of the virtual nodes this spillway manages? */
  isManagedNode: (name: string) => boolean;
  /** User names of the virtual nodes' bootstrap identity (their ServiceAccount; the admin under `make run`). */
  bootstrapUsers: readonly string[];
}

/** What the approver does with one request. */
export type CsrDecision =
  | { action: 'approve'; message: string }
  | { action: 'deny'; reason: string; message: string }
  /** Not spillway's to decide (another signer, another node's kubelet, already decided). */
  | { action: 'ignore'; message: string };

/** Approved, Denied or Failed: a request with one of these is settled. */
export function csrSettled(csr: V1CertificateSigningRequest): string | undefined {
  return csr.status?.conditions?.find(
    (c) => ['Approved', 'Denied', 'Failed'].includes(c.type) && c.status !== 'False',
  )?.type;
}

/** The subject's attributes as `[type, value]` pairs, and every subjectAltName, of a PEM request. */
export function describeRequest(requestPem: string): {
  subject: [string, string][];
  altNames: string[];
} {
  const req = new x509.Pkcs10CertificateRequest(requestPem);
  const subject: [string, string][] = [];
  for (const rdn of req.subjectName.toJSON())
    for (const [type, values] of Object.entries(rdn)) for (const v of values) subject.push([type, v]);
  // Every subjectAltName extension the request carries (a request may repeat one to hide a name).
  const altNames = req
    .getExtensions('2.5.29.17')
    .flatMap((e) => new x509.SubjectAlternativeNameExtension(e.rawData).names.toJSON())
    .map((n) => `${n.type}:${n.value}`);
  return { subject, altNames };
}

/** The single CN of a subject and the node it names (`system:node:<name>`), or '' for either. */
export function subjectNode(subject: [string, string][]): { cn: string; nodeName: string } {
  const cns = subject.filter(([t]) => t === 'CN').map(([, v]) => v);
  const cn = cns.length === 1 ? cns[0]! : '';
  return { cn, nodeName: cn.startsWith(NODE_USER_PREFIX) ? cn.slice(NODE_USER_PREFIX.length) : '' };
}

/** Why a node certificate's subject is not exactly `CN=<cn>, O=system:nodes`, or undefined when it is. */
export function unexpectedSubject(subject: [string, string][], cn: string): string | undefined {
  const others = subject.filter(([t, v]) => !(t === 'CN' || (t === 'O' && v === NODES_GROUP)));
  const orgs = subject.filter(([t]) => t === 'O');
  if (others.length === 0 && orgs.length === 1) return undefined;
  return `the subject must be exactly CN=${cn}, O=${NODES_GROUP}; it also names ${subject
    .filter(([t, v]) => !(t === 'CN' && v === cn) && !(t === 'O' && v === NODES_GROUP))
    .map(([t, v]) => `${t}=${v}`)
    .join(', ')}`;
}

/**
 * Decides one CertificateSigningRequest. Spillway approves only what kubelet's TLS bootstrap would ask for one
 * of its own virtual nodes, from that node's bootstrap identity: a request that names a managed node or comes
 * from the bootstrap identity but asks for anything more is denied with the reason; anything else (a real
 * kubelet's request, another signer) is left to whoever approves those.
 */
export function decideNodeClientCSR(csr: V1CertificateSigningRequest, policy: NodeClientPolicy): CsrDecision {
  const spec = csr.spec;
  if (spec?.signerName !== KUBELET_CLIENT_SIGNER) return { action: 'ignore', message: 'another signer' };
  const settled = csrSettled(csr);
  if (settled) return { action: 'ignore', message: `already ${settled}` };
  let described: ReturnType<typeof describeRequest>;
  try {
    described = describeRequest(Buffer.from(spec.request, 'base64').toString());
  } catch {
    return policy.bootstrapUsers.includes(spec.username ?? '')
      ? { action: 'deny', reason: 'InvalidRequest', message: 'the request is not a PEM PKCS#10 request' }
      : { action: 'ignore', message: 'unparsable request from another requester' };
  }
  const { cn, nodeName } = subjectNode(described.subject);
  const managed = nodeName !== '' && policy.isManagedNode(nodeName);
  const fromBootstrap = policy.bootstrapUsers.includes(spec.username ?? '');
  if (!managed && !fromBootstrap) return { action: 'ignore', message: 'not a spillway virtual node' };

  const deny = (reason: string, message: string): CsrDecision => ({ action: 'deny', reason, message });
  if (!fromBootstrap)
    return deny(
      'UnexpectedRequester',
      `requested by ${spec.username ?? '(unknown)'}, not by the virtual nodes' bootstrap identity`,
    );
  if (!managed)
    return deny('NotAVirtualNode', `${cn || '(no single CN)'} is not a virtual node spillway manages`);
  const subjectProblem = unexpectedSubject(described.subject, cn);
  if (subjectProblem) return deny('UnexpectedSubject', subjectProblem);
  if (described.altNames.length > 0)
    return deny(
      'UnexpectedNames',
      `a node client certificate has no alternative names: ${described.altNames.join(', ')}`,
    );
  const usages = spec.usages ?? [];
  const extra = usages.filter((u) => !ALLOWED_USAGES.has(u));
  if (extra.length > 0 || !usages.includes('client auth'))
    return deny(
      'UnexpectedUsages',
      `usages must be client auth with digital signature (and key encipherment for RSA), not: ${usages.join(', ')}`,
    );
  return {
    action: 'approve',
    message: `virtual node ${nodeName}: client certificate from its bootstrap identity`,
  };
}
