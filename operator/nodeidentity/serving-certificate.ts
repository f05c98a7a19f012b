/**
 * The serving certificate of a virtual node's kubelet API, as kubelet's `serverTLSBootstrap` gets its own: a
 * fresh key and a CertificateSigningRequest for signer `kubernetes.io/kubelet-serving`, sent as the node itself
 * (`system:node:<name>`), naming the node and its InternalIP; once approved (spillway's controller, or an
 * administrator) and signed (kube-controller-manager), a certificate the cluster CA vouches for, so that
 * metrics-server and an apiserver with `--kubelet-certificate-authority` can verify the node. It is renewed at a
 * jittered 70–90 % of its lifetime, as the client certificate is (./client-certificate.ts).
 *
 * A cluster where nobody approves the request must not leave the kubelet API dark: after a short wait the node
 * serves a self-signed certificate, says what to approve, keeps waiting (and asking again when refused) and
 * swaps the issued certificate in when it comes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificatesV1Api, type KubeConfig } from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { apiErrorMessage } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';
import { certNotAfter, createCA, issueCert } from '../shared/pki.ts';
import { awaitCertificate, submitCertificateRequest } from './certificate-request.ts';
import { DEFAULT_CERTIFICATE_SECONDS, renewalTime } from './client-certificate.ts';
import {
  KUBELET_SERVING_SIGNER,
  NODE_SERVING_USAGES,
  nodeServingRequest,
  type ServingNames,
} from './serving-csr.ts';

/**
 * How long start-up waits for an issued certificate before it serves a self-signed one. spillway's approver and
 * kube-controller-manager issue it in about 0.1 s; without an approver a node must not start much later (a
 * restarted node resumes status within seconds), and the issued one is swapped in whenever it comes.
 */
export const DEFAULT_SERVING_WAIT_MS = 2_000;
/** How long one request may stay pending before the node asks anew (kube-controller-manager drops it at 24 h). */
const PENDING_MS = 3600_000;
/** The first and the longest pause before asking again after a refusal or an error. */
export const DEFAULT_SERVING_RETRY_MS = 30_000;
const MAX_RETRY_MS = 600_000;

/** A certificate and key (PEM) the kubelet API serves. */
export interface ServingPair {
  certPem: string;
  keyPem: string;
  /** Issued by the cluster's signer (false: the self-signed stand-in). */
  issued: boolean;
}

/** One request in flight: its name, and the certificate once issued (rejects when refused or not issued). */
export interface PendingServingRequest {
  csrName: string;
  issued: Promise<{ certPem: string; keyPem: string }>;
}

/** How a serving certificate is obtained. */
export interface ServingCertificateOptions {
  /** The node identity (`system:node:<name>`): nodes may create and read their own requests. */
  kc: KubeConfig;
  nodeName: string;
  /** What the certificate names: the node's name and its InternalIP. */
  names: ServingNames;
  /** The `expirationSeconds` the request asks for; default {@link DEFAULT_CERTIFICATE_SECONDS}. */
  expirationSeconds?: number;
  /** How long start-up waits for the issued certificate; default {@link DEFAULT_SERVING_WAIT_MS}. */
  waitMs?: number;
  /** The first pause before asking again after a refusal (it doubles up to 10 minutes); default 30 s. */
  retryMs?: number;
  logger: Logger;
  /** In [0, 1); default Math.random. */
  jitter?: () => number;
  /** Sends one request; default {@link requestServingCertificate} (tests replace the apiserver). */
  request?: (opts: ServingCertificateOptions, signal: AbortSignal) => Promise<PendingServingRequest>;
  /** The stand-in served until a certificate is issued; default {@link selfSignedServing}. */
  selfSigned?: (names: ServingNames) => Promise<{ certPem: string; keyPem: string }>;
}

/** The kubelet API's certificate in use, replaced as it is issued and renewed. */
export interface ServingCertificate {
  readonly current: ServingPair;
  /** When the next renewal or retry is due (undefined while a request is pending). */
  readonly nextAttemptAt: Date | undefined;
  /** Called with every new certificate; the kubelet API swaps it in (`setSecureContext`). */
  onChange(listener: (pair: ServingPair) => void): void;
  /** Asks for a new certificate now and serves it once issued (renewal then starts over from it). */
  renew(): Promise<void>;
  stop(): void;
}

/** Sends one request as the node; the certificate arrives on `issued`. */
export async function requestServingCertificate(
  opts: ServingCertificateOptions,
  signal: AbortSignal,
): Promise<PendingServingRequest> {
  const api = opts.kc.makeApiClient(CertificatesV1Api);
  const { requestPem, keyPem } = await nodeServingRequest(opts.nodeName, opts.names);
  const csrName = await submitCertificateRequest(api, {
    nodeName: opts.nodeName,
    requestPem,
    signerName: KUBELET_SERVING_SIGNER,
    usages: NODE_SERVING_USAGES,
    expirationSeconds: opts.expirationSeconds ?? DEFAULT_CERTIFICATE_SECONDS,
  });
  opts.logger.info({ csr: csrName }, 'kubelet serving certificate requested');
  const issued = awaitCertificate(api, csrName, {
    what: `the kubelet serving certificate request of ${opts.nodeName}`,
    timeoutMs: PENDING_MS,
    maxPollMs: 5_000,
    notApprovedHint: approveHint(opts.nodeName, csrName),
    notSignedHint: `is kube-controller-manager signing ${KUBELET_SERVING_SIGNER}?`,
    signal,
    logger: opts.logger,
  }).then((certPem) => ({ certPem, keyPem }));
  return { csrName, issued };
}

function approveHint(nodeName: string, csrName: string): string {
  return (
    `run spillway's controller with this node among its virtual nodes, which approves it, or ` +
    `\`kubectl certificate approve ${csrName}\`; kube-controller-manager never approves ${KUBELET_SERVING_SIGNER} ` +
    `itself. Until then metrics-server and an apiserver with --kubelet-certificate-authority cannot verify ${nodeName}`
  );
}

/** A certificate for `names` from a CA made for it alone: what the kubelet API served before CSRs. */
export async function selfSignedServing(names: ServingNames): Promise<{ certPem: string; keyPem: string }> {
  const yearMs = 365 * 24 * 3600_000;
  const ca = await createCA(`${names.dnsNames[0] ?? 'virtual-node'}-kubelet-ca`, yearMs);
  return issueCert(ca, {
    subject: `CN=${names.dnsNames[0] ?? names.ipAddresses[0] ?? 'virtual-node'}`,
    dnsNames: [...names.dnsNames],
    ipAddresses: [...names.ipAddresses],
    usage: 'server',
    validForMs: yearMs,
  });
}

/**
 * Obtains the kubelet API's serving certificate: resolves with the issued one when it comes within `waitMs`,
 * else with the self-signed stand-in (and a warning saying what to approve), and keeps at it in the background.
 */
export async function startServingCertificate(opts: ServingCertificateOptions): Promise<ServingCertificate> {
  const jitter = opts.jitter ?? Math.random;
  const request = opts.request ?? requestServingCertificate;
  const log = opts.logger;
  const stopping = new AbortController();
  const listeners: ((pair: ServingPair) => void)[] = [];
  let current: ServingPair | undefined;
  let nextAttemptAt: Date | undefined;
  let timer: NodeJS.Timeout | undefined;
  const firstRetryMs = opts.retryMs ?? DEFAULT_SERVING_RETRY_MS;
  let retryMs = firstRetryMs;

  const use = (pair: ServingPair) => {
    current = pair;
    for (const listener of listeners) listener(pair);
  };
  const schedule = (at: Date) => {
    clearTimeout(timer);
    if (stopping.signal.aborted) return;
    nextAttemptAt = at;
    // setTimeout overflows past 2^31-1 ms (24.8 days): wake up earlier and look again.
    const ms = Math.min(Math.max(at.getTime() - Date.now(), 0), 2 ** 31 - 1);
    timer = setTimeout(() => {
      if (Date.now() < at.getTime()) schedule(at);
      else void attempt();
    }, ms);
    timer.unref();
  };
  const useIssued = (pair: { certPem: string; keyPem: string }, csrName: string) => {
    if (stopping.signal.aborted) return;
    use({ ...pair, issued: true });
    retryMs = firstRetryMs;
    const notAfter = certNotAfter(pair.certPem);
    schedule(renewalTime(new x509.X509Certificate(pair.certPem).notBefore, notAfter, jitter()));
    log.info(
      { csr: csrName, notAfter: notAfter.toISOString(), renewAt: nextAttemptAt!.toISOString() },
      'kubelet serving certificate issued',
    );
  };
  const failed = (err: unknown) => {
    if (stopping.signal.aborted) return;
    // While an issued certificate is valid, a retry never waits past its expiry.
    const notAfter = current?.issued ? certNotAfter(current.certPem).getTime() : Infinity;
    const at = new Date(Math.min(Date.now() + retryMs, Math.max(notAfter - 1000, Date.now())));
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    schedule(at);
    log.warn(
      {
        err: apiErrorMessage(err),
        retryAt: at.toISOString(),
        serving: current?.issued ? 'issued' : 'self-signed',
      },
      'kubelet serving certificate not issued',
    );
  };
  /** Sends one request and follows it to the end (issued, or failed and scheduled again). */
  const follow = (pending: PendingServingRequest) => {
    nextAttemptAt = undefined;
    pending.issued.then(
      (pair) => useIssued(pair, pending.csrName),
      (err: unknown) => failed(err),
    );
  };
  const attempt = async () => {
    try {
      follow(await request(opts, stopping.signal));
    } catch (err) {
      failed(err);
    }
  };

  // Start-up: the first request gets `waitMs` to be issued before the kubelet API settles for the stand-in.
  let pending: PendingServingRequest | undefined;
  let firstError: unknown;
  let first: { certPem: string; keyPem: string } | undefined;
  const waited = new AbortController();
  try {
    pending = await request(opts, stopping.signal);
    first = await Promise.race([
      pending.issued,
      sleep(opts.waitMs ?? DEFAULT_SERVING_WAIT_MS, undefined, { signal: waited.signal }).then(
        () => undefined,
      ),
    ]);
  } catch (err) {
    firstError = err;
  } finally {
    waited.abort();
  }
  if (first && pending) {
    useIssued(first, pending.csrName);
  } else {
    use({ ...(await (opts.selfSigned ?? selfSignedServing)(opts.names)), issued: false });
    log.warn(
      {
        ...(pending && { csr: pending.csrName }),
        ...(firstError !== undefined && { err: apiErrorMessage(firstError) }),
      },
      `the kubelet API of ${opts.nodeName} serves a self-signed certificate: its ${KUBELET_SERVING_SIGNER} ` +
        (firstError === undefined
          ? `request was not issued within ${Math.round((opts.waitMs ?? DEFAULT_SERVING_WAIT_MS) / 1000)} s; `
          : `request failed (${apiErrorMessage(firstError)}); `) +
        approveHint(opts.nodeName, pending?.csrName ?? '<csr>') +
        '. It keeps asking and serves the issued certificate once there is one',
    );
    if (firstError === undefined && pending) follow(pending);
    else failed(firstError);
  }

  return {
    get current() {
      return current!;
    },
    get nextAttemptAt() {
      return nextAttemptAt;
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async renew() {
      clearTimeout(timer);
      nextAttemptAt = undefined;
      try {
        const pending = await request(opts, stopping.signal);
        useIssued(await pending.issued, pending.csrName);
      } catch (err) {
        failed(err);
        throw err;
      }
    },
    stop() {
      stopping.abort();
      clearTimeout(timer);
    },
  };
}
