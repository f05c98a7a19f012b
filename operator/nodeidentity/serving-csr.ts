/**
 * The kubelet serving certificate request of a virtual node, both sides of it: the PKCS#10 request a virtual
 * node sends as itself (as kubelet's `serverTLSBootstrap` does: `CN=system:node:<name>, O=system:nodes`, its
 * name and InternalIP as subjectAltNames, signer `kubernetes.io/kubelet-serving`) and the decision spillway's
 * approver takes on one. kube-controller-manager never approves this signer itself: without an approver a
 * kubelet serving certificate is never issued.
 */
import * as x509 from '@peculiar/x509';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import {
  csrSettled,
  describeRequest,
  NODE_USER_PREFIX,
  NODES_GROUP,
  nodeRequest,
  subjectNode,
  unexpectedSubject,
  type CsrDecision,
} from './csr.ts';

/** The signer of kubelet serving certificates; kube-controller-manager's csrsigning controller signs for it. */
export const KUBELET_SERVING_SIGNER = 'kubernetes.io/kubelet-serving';
/** What an ECDSA serving certificate is for (RSA keys would add `key encipherment`). */
export const NODE_SERVING_USAGES = ['digital signature', 'server auth'] as const;
/** The two usage sets the signer accepts: exactly one of these (kube-controller-manager fails anything else). */
const ALLOWED_USAGE_SETS = [
  ['digital signature', 'server auth'],
  ['digital signature', 'key encipherment', 'server auth'],
];

/** What a virtual node's kubelet API is reached by. */
export interface ServingNames {
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
}

/** A fresh ECDSA P-256 key and the PEM request for the kubelet API of `nodeName`, naming `names`. */
export async function nodeServingRequest(
  nodeName: string,
  names: ServingNames,
): Promise<{ requestPem: string; keyPem: string }> {
  return nodeRequest(nodeName, [
    new x509.SubjectAlternativeNameExtension([
      ...names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...names.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
    ]),
  ]);
}

/** Who may get a kubelet serving certificate approved by spillway, and for which names. */
export interface NodeServingPolicy {
  /** Is `name` one of the virtual nodes this spillway manages? */
  isManagedNode: (name: string) => boolean;
  /** The InternalIP addresses of Node `name` as registered, or undefined when there is no such Node. */
  internalIPs: (name: string) => readonly string[] | undefined;
}

/** The node a request comes from: `system:node:<name>` in `system:nodes`, or '' for anyone else. */
export function requestingNode(csr: V1CertificateSigningRequest): string {
  const user = csr.spec?.username ?? '';
  if (!user.startsWith(NODE_USER_PREFIX) || !(csr.spec?.groups ?? []).includes(NODES_GROUP)) return '';
  return user.slice(NODE_USER_PREFIX.length);
}

/** An IP address as `describeRequest` prints it: IPv6 compressed and lower-case, IPv4 as is. */
function canonicalIP(ip: string): string {
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

/**
 * Decides one kubelet serving CertificateSigningRequest. Spillway approves only what a managed virtual node asks
 * for its own kubelet API, as itself: `CN=system:node:<name>, O=system:nodes`, asked by `system:node:<name>`,
 * naming nothing but the node's name and the InternalIPs its Node object has, for server auth. A request that
 * claims a managed node (by its subject or its requester) but asks for anything more is denied with the
 * reason; anything else (a real kubelet's request) is left to whoever approves those.
 */
export function decideKubeletServingCSR(
  csr: V1CertificateSigningRequest,
  policy: NodeServingPolicy,
): CsrDecision {
  const spec = csr.spec;
  if (spec?.signerName !== KUBELET_SERVING_SIGNER) return { action: 'ignore', message: 'another signer' };
  const settled = csrSettled(csr);
  if (settled) return { action: 'ignore', message: `already ${settled}` };
  const requester = requestingNode(csr);
  const requesterManaged = requester !== '' && policy.isManagedNode(requester);
  let described: ReturnType<typeof describeRequest>;
  try {
    described = describeRequest(Buffer.from(spec.request, 'base64').toString());
  } catch {
    return requesterManaged
      ? { action: 'deny', reason: 'InvalidRequest', message: 'the request is not a PEM PKCS#10 request' }
      : { action: 'ignore', message: 'unparsable request from another requester' };
  }
  const { cn, nodeName } = subjectNode(described.subject);
  const subjectManaged = nodeName !== '' && policy.isManagedNode(nodeName);
  if (!requesterManaged && !subjectManaged)
    return { action: 'ignore', message: 'not a spillway virtual node' };

  const deny = (reason: string, message: string): CsrDecision => ({ action: 'deny', reason, message });
  if (requester !== nodeName)
    return deny(
      'UnexpectedRequester',
      `a virtual node asks for its own serving certificate as ${NODE_USER_PREFIX}<name> in ${NODES_GROUP}; ` +
        `${cn || '(no single CN)'} was requested by ${spec.username ?? '(unknown)'}`,
    );
  const subjectProblem = unexpectedSubject(described.subject, cn);
  if (subjectProblem) return deny('UnexpectedSubject', subjectProblem);
  const internalIPs = policy.internalIPs(nodeName);
  if (!internalIPs)
    return deny(
      'NodeNotRegistered',
      `there is no Node ${nodeName} to take its addresses from (a virtual node asks once it is registered)`,
    );
  const allowed = new Set([`dns:${nodeName}`, ...internalIPs.map((ip) => `ip:${canonicalIP(ip)}`)]);
  if (described.altNames.length === 0)
    return deny('UnexpectedNames', `a serving certificate names its node: ${[...allowed].join(', ')}`);
  const extra = described.altNames.filter((n) => !allowed.has(n));
  if (extra.length > 0)
    return deny(
      'UnexpectedNames',
      `virtual node ${nodeName} may name only ${[...allowed].join(', ')}; the request also names ${extra.join(', ')}`,
    );
  const usages = [...new Set(spec.usages ?? [])].sort();
  if (!ALLOWED_USAGE_SETS.some((set) => set.length === usages.length && set.every((u) => usages.includes(u))))
    return deny(
      'UnexpectedUsages',
      `usages must be server auth with digital signature (and key encipherment for RSA), not: ${usages.join(', ')}`,
    );
  return {
    action: 'approve',
    message: `virtual node ${nodeName}: kubelet serving certificate for ${described.altNames.join(', ')}`,
  };
}
