/**
 * One CertificateSigningRequest of a virtual node, from creation to the issued certificate: the part the node
 * client certificate (./client-certificate.ts) and the kubelet serving certificate (./serving-certificate.ts)
 * share. Creating, then reading back until the signer has written `status.certificate` or someone has denied
 * it, as kubelet's certificate manager does.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CertificatesV1Api } from '@kubernetes/client-node';
import { apiErrorMessage } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';

/** What one request asks for. */
export interface CertificateRequestSpec {
  /** The node the certificate is for: names the request (`<node>-xxxxx`). */
  nodeName: string;
  requestPem: string;
  signerName: string;
  usages: readonly string[];
  /** The lifetime asked for (the signer may cap it; the apiserver's minimum is 600 s). */
  expirationSeconds: number;
}

/** Creates the CertificateSigningRequest; returns its name. */
export async function submitCertificateRequest(
  api: CertificatesV1Api,
  spec: CertificateRequestSpec,
): Promise<string> {
  const created = await api.createCertificateSigningRequest({
    body: {
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { generateName: `${spec.nodeName.slice(0, 200)}-` },
      spec: {
        request: Buffer.from(spec.requestPem).toString('base64'),
        signerName: spec.signerName,
        usages: [...spec.usages],
        expirationSeconds: spec.expirationSeconds,
      },
    },
  });
  return created.metadata!.name!;
}

/** How long to wait for one request, and what to tell the user when it is not issued. */
export interface AwaitCertificateOptions {
  /** What is asked for, for messages: "the node client certificate request of vn-eci". */
  what: string;
  timeoutMs: number;
  /** The longest pause between two reads (the pauses grow from 100 ms); default 2 s. */
  maxPollMs?: number;
  /** What to check when the request stays unapproved, and when it is approved but not signed. */
  notApprovedHint: string;
  notSignedHint: string;
  /** Stops waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
  logger: Logger;
}

/** Waits until request `name` is issued; resolves to the certificate (PEM), rejects with the reason otherwise. */
export async function awaitCertificate(
  api: CertificatesV1Api,
  name: string,
  opts: AwaitCertificateOptions,
): Promise<string> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = 100;
  for (;;) {
    opts.signal?.throwIfAborted();
    const csr = await api.readCertificateSigningRequest({ name }).catch((err: unknown) => {
      opts.logger.debug({ csr: name, err: apiErrorMessage(err) }, 'CSR not readable yet');
      return undefined;
    });
    const refused = csr?.status?.conditions?.find(
      (c) => (c.type === 'Denied' || c.type === 'Failed') && c.status !== 'False',
    );
    if (refused)
      throw new Error(
        `${opts.what} (CSR ${name}) was ${refused.type.toLowerCase()}: ${refused.reason ?? ''} ${refused.message ?? ''}`.trim(),
      );
    if (csr?.status?.certificate) return Buffer.from(csr.status.certificate, 'base64').toString();
    if (Date.now() > deadline) {
      const approved = csr?.status?.conditions?.some((c) => c.type === 'Approved' && c.status !== 'False');
      throw new Error(
        `${opts.what} (CSR ${name}) was not ${approved ? `signed (${opts.notSignedHint})` : `approved (${opts.notApprovedHint})`}`,
      );
    }
    await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : {});
    delay = Math.min(delay * 2, opts.maxPollMs ?? 2000);
  }
}
