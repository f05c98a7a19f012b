/**
 * A virtual node's identity towards the apiserver, as kubelet's TLS bootstrap and certificate manager give a
 * kubelet its own: a fresh key, a CertificateSigningRequest for `system:node:<name>` in `system:nodes` with the
 * kubelet client signer, sent with the node's bootstrap identity (its ServiceAccount; the admin under
 * `make run`); once approved (spillway's controller) and signed (kube-controller-manager), a KubeConfig that
 * authenticates with that certificate. The certificate is renewed at a jittered 70–90 % of its lifetime and the
 * new one is swapped into the same KubeConfig: every client built from it uses it from its next request on.
 *
 * The key lives in memory only: a restarted process asks again (the chart's pod has a read-only file system).
 */
import { CertificatesV1Api, KubeConfig } from '@kubernetes/client-node';
import { apiErrorMessage } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';
import { certNotAfter } from '../shared/pki.ts';
import * as x509 from '@peculiar/x509';
import { awaitCertificate, submitCertificateRequest } from './certificate-request.ts';
import { KUBELET_CLIENT_SIGNER, NODE_CLIENT_USAGES, NODE_USER_PREFIX, nodeClientRequest } from './csr.ts';

/** The certificate lifetime a virtual node asks for (the signer may cap it; the apiserver's minimum is 600 s). */
export const DEFAULT_CERTIFICATE_SECONDS = 24 * 3600;
/** How long a failed renewal waits before it tries again (never past the current certificate's expiry). */
const RETRY_MS = 30_000;

/**
 * When to renew a certificate valid from `notBefore` to `notAfter`: at 70–90 % of its lifetime (`jitter` in
 * [0, 1) picks where), as kubelet's certificate manager does, so that many nodes do not all ask at once and a
 * failed renewal has most of the remaining 10–30 % to be retried.
 */
export function renewalTime(notBefore: Date, notAfter: Date, jitter: number): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + lifetime * (0.7 + 0.2 * Math.min(Math.max(jitter, 0), 0.999)));
}

/** A node identity in use. */
export interface NodeIdentity {
  /** Authenticates as `system:node:<name>`; its certificate is replaced in place on renewal. */
  readonly kc: KubeConfig;
  /** The current certificate (PEM) and its validity. */
  readonly certificatePem: string;
  readonly notAfter: Date;
  /** When the next renewal is due. */
  readonly renewAt: Date;
  /** Obtains a new certificate now and swaps it in (the renewal loop then starts over from it). */
  rotate(): Promise<void>;
  stop(): void;
}

/** How a node identity is obtained. */
export interface NodeIdentityOptions {
  /** The bootstrap identity: allowed to create and get CertificateSigningRequests, nothing a node may do. */
  bootstrap: KubeConfig;
  nodeName: string;
  /** The `expirationSeconds` the request asks for; default {@link DEFAULT_CERTIFICATE_SECONDS}. */
  expirationSeconds?: number;
  /** How long to wait for approval and signing before giving up; default 5 minutes. */
  timeoutMs?: number;
  logger: Logger;
  /** In [0, 1); default Math.random. */
  jitter?: () => number;
  /** Obtains one certificate; default {@link requestNodeCertificate} (tests replace the apiserver). */
  request?: typeof requestNodeCertificate;
}

/** Asks for one certificate and waits until it is issued; rejects with the reason when denied or failed. */
export async function requestNodeCertificate(
  opts: NodeIdentityOptions,
): Promise<{ certificatePem: string; keyPem: string; csrName: string }> {
  const api = opts.bootstrap.makeApiClient(CertificatesV1Api);
  const { requestPem, keyPem } = await nodeClientRequest(opts.nodeName);
  const name = await submitCertificateRequest(api, {
    nodeName: opts.nodeName,
    requestPem,
    signerName: KUBELET_CLIENT_SIGNER,
    usages: NODE_CLIENT_USAGES,
    expirationSeconds: opts.expirationSeconds ?? DEFAULT_CERTIFICATE_SECONDS,
  });
  opts.logger.info({ csr: name }, 'node client certificate requested');
  const certificatePem = await awaitCertificate(api, name, {
    what: `the node client certificate request of ${opts.nodeName}`,
    timeoutMs: opts.timeoutMs ?? 300_000,
    notApprovedHint: 'is the spillway controller running and does it manage this node?',
    notSignedHint: `is kube-controller-manager signing ${KUBELET_CLIENT_SIGNER}?`,
    logger: opts.logger,
  });
  return { certificatePem, keyPem, csrName: name };
}

/** A KubeConfig for the bootstrap identity's cluster that authenticates with the given client certificate. */
export function nodeKubeConfig(
  bootstrap: KubeConfig,
  nodeName: string,
  certPem: string,
  keyPem: string,
): KubeConfig {
  const cluster = bootstrap.getCurrentCluster();
  if (!cluster) throw new Error('the bootstrap kubeconfig has no current cluster');
  const kc = new KubeConfig();
  const user = `${NODE_USER_PREFIX}${nodeName}`;
  kc.loadFromOptions({
    clusters: [cluster],
    users: [nodeUser(user, certPem, keyPem)],
    contexts: [{ name: user, cluster: cluster.name, user }],
    currentContext: user,
  });
  return kc;
}

function nodeUser(name: string, certPem: string, keyPem: string) {
  return {
    name,
    certData: Buffer.from(certPem).toString('base64'),
    keyData: Buffer.from(keyPem).toString('base64'),
  };
}

/** Obtains the node identity (resolves once the first certificate is issued) and keeps renewing it. */
export async function startNodeIdentity(opts: NodeIdentityOptions): Promise<NodeIdentity> {
  const jitter = opts.jitter ?? Math.random;
  const request = opts.request ?? requestNodeCertificate;
  const first = await request(opts);
  const kc = nodeKubeConfig(opts.bootstrap, opts.nodeName, first.certificatePem, first.keyPem);
  let certificatePem = first.certificatePem;
  let notAfter = certNotAfter(certificatePem);
  let renewAt = new Date();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const schedule = (at: Date) => {
    clearTimeout(timer);
    if (stopped) return;
    renewAt = at;
    // setTimeout overflows past 2^31-1 ms (24.8 days): wake up earlier and look again.
    const ms = Math.min(Math.max(at.getTime() - Date.now(), 0), 2 ** 31 - 1);
    timer = setTimeout(() => {
      if (Date.now() < renewAt.getTime()) schedule(renewAt);
      else void identity.rotate().catch(() => {});
    }, ms);
    timer.unref();
  };
  const swapIn = (certPem: string, keyPem: string) => {
    // Every API client built from `kc` reads the current user on each request; a new certificate gets a new
    // connection pool (operator/shared/client.ts shareConnections keys pools by certificate).
    kc.users = [nodeUser(kc.getCurrentUser()!.name, certPem, keyPem)];
    certificatePem = certPem;
    notAfter = certNotAfter(certPem);
    const notBefore = new x509.X509Certificate(certPem).notBefore;
    schedule(renewalTime(notBefore, notAfter, jitter()));
  };

  const identity: NodeIdentity = {
    kc,
    get certificatePem() {
      return certificatePem;
    },
    get notAfter() {
      return notAfter;
    },
    get renewAt() {
      return renewAt;
    },
    async rotate() {
      try {
        const next = await request(opts);
        if (stopped) return;
        swapIn(next.certificatePem, next.keyPem);
        opts.logger.info(
          { csr: next.csrName, notAfter: notAfter.toISOString(), renewAt: renewAt.toISOString() },
          'node client certificate renewed',
        );
      } catch (err) {
        const retry = new Date(
          Math.min(Date.now() + RETRY_MS, Math.max(notAfter.getTime() - 1000, Date.now())),
        );
        schedule(retry);
        opts.logger.warn(
          { err: apiErrorMessage(err), retryAt: retry.toISOString(), notAfter: notAfter.toISOString() },
          'node client certificate not renewed',
        );
        throw err;
      }
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
  swapIn(first.certificatePem, first.keyPem);
  opts.logger.info(
    { csr: first.csrName, notAfter: notAfter.toISOString(), renewAt: renewAt.toISOString() },
    'node identity obtained',
  );
  return identity;
}
