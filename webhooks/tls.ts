/**
 * Self-managed TLS for the webhook server: a CA and a serving certificate kept in a Secret, rotated before they
 * expire, the CA bundle injected into spillway's webhook configurations, and the certificate hot-reloaded into the
 * running server. Every replica runs the keeper; the Secret's resourceVersion serialises their writes.
 *
 * Rotation is ordered so that the apiserver never meets a certificate it does not trust yet: a new CA first goes
 * into the trust bundle next to the old one (the old serving certificate keeps being served), and only after
 * `caTrustDelayMs` is the serving certificate re-issued from the new CA. An old CA stays in the bundle until it
 * expires. `planTls` decides, `applyTlsPlan` does the cryptography, `TlsKeeper` does the I/O.
 */
import { X509Certificate } from 'node:crypto';
import { createCA, issueCert, type KeyPair } from '../operator/shared/pki.ts';

const DAY = 24 * 60 * 60 * 1000;

/** Where the certificate lives, whom it names, and the timings (all with defaults). */
export interface TlsSettings {
  namespace: string;
  secretName: string;
  /** The Service in front of the webhook: the certificate names `<svc>.<ns>.svc` and `<svc>.<ns>.svc.cluster.local`. */
  serviceName: string;
  /** Extra IP SANs, e.g. `['127.0.0.1']` in dev mode (`clientConfig.url: https://127.0.0.1:PORT/...`). */
  ipAddresses?: string[];
  /** CA lifetime; default 3 years. */
  caValidForMs?: number;
  /** Serving certificate lifetime; default 90 days (short enough that rotation is a path that gets exercised). */
  certValidForMs?: number;
  /** Renew when less than this fraction of the lifetime is left; default 1/3. */
  renewFraction?: number;
  /** Time for a new CA to reach the apiserver's trust before certificates are issued from it; default 2 min. */
  caTrustDelayMs?: number;
}

/** The contents of the TLS Secret. */
export interface StoredTls {
  ca: KeyPair;
  /** The serving certificate. */
  cert: KeyPair;
  /** Every CA the webhook configurations should trust, newest first. */
  caBundlePem: string;
  /** When the current CA was created (starts the trust delay). */
  caCreatedAt: Date;
}

/** What to do with the stored TLS material. */
export type TlsPlan =
  | { action: 'keep'; recheckAt: Date }
  | { action: 'create' | 'rotate-ca' | 'renew-cert' | 'fix-bundle'; reason: string };

/** The settings with every default filled in. */
export function withTlsDefaults(s: TlsSettings): Required<TlsSettings> {
  return {
    ipAddresses: [],
    caValidForMs: 3 * 365 * DAY,
    certValidForMs: 90 * DAY,
    renewFraction: 1 / 3,
    caTrustDelayMs: 2 * 60 * 1000,
    ...s,
  };
}

/** The DNS names the serving certificate must carry for a Service. */
export function servingDnsNames(serviceName: string, namespace: string): string[] {
  return [`${serviceName}.${namespace}.svc`, `${serviceName}.${namespace}.svc.cluster.local`];
}

/** The PEM blocks of a bundle, each normalised to end with a newline. */
export function splitPem(bundle: string): string[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map(
    (b) => `${b}\n`,
  );
}

function parse(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

/** The time at which a certificate should be renewed: when `fraction` of its lifetime is left. */
export function renewalTime(cert: X509Certificate, fraction: number): Date {
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  return new Date(to - (to - from) * fraction);
}

/** The certificates of `bundle` (deduplicated, in order) that are still valid at `now`. */
export function validBundle(bundle: string, now: Date): string[] {
  const seen = new Set<string>();
  return splitPem(bundle).filter((pem) => {
    const cert = parse(pem);
    if (!cert || cert.validToDate <= now || seen.has(cert.fingerprint256)) return false;
    seen.add(cert.fingerprint256);
    return true;
  });
}

function sanList(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').filter(Boolean).sort();
}

function wantedSans(s: Required<TlsSettings>): string[] {
  return [
    ...servingDnsNames(s.serviceName, s.namespace).map((d) => `DNS:${d}`),
    ...s.ipAddresses.map((ip) => `IP Address:${ip}`),
  ].sort();
}

/**
 * Decides what the stored TLS material needs at `now`. Pure: parses certificates, never creates any.
 * @param stored the Secret's contents, or undefined when there is no usable Secret
 */
export function planTls(stored: StoredTls | undefined, settings: TlsSettings, now: Date): TlsPlan {
  const s = withTlsDefaults(settings);
  if (!stored) return { action: 'create', reason: 'no TLS Secret yet' };
  const ca = parse(stored.ca.certPem);
  if (!ca || !stored.ca.keyPem.includes('PRIVATE KEY')) {
    return { action: 'create', reason: 'the stored CA is unreadable' };
  }
  const caRenewAt = renewalTime(ca, s.renewFraction);
  if (caRenewAt <= now)
    return { action: 'rotate-ca', reason: `the CA expires at ${ca.validToDate.toISOString()}` };

  const bundle = validBundle(stored.caBundlePem, now);
  if (!bundle.some((pem) => parse(pem)?.fingerprint256 === ca.fingerprint256)) {
    return { action: 'fix-bundle', reason: 'the CA bundle does not contain the current CA' };
  }
  if (bundle.length !== splitPem(stored.caBundlePem).length) {
    return { action: 'fix-bundle', reason: 'the CA bundle holds expired or duplicate certificates' };
  }

  const cert = parse(stored.cert.certPem);
  const trustedAt = new Date(stored.caCreatedAt.getTime() + s.caTrustDelayMs);
  let reason: string | undefined;
  if (!cert || !stored.cert.keyPem.includes('PRIVATE KEY')) reason = 'the serving certificate is unreadable';
  else if (cert.validToDate <= now) reason = 'the serving certificate has expired';
  else if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    // Issued by the previous CA: switch only once the new CA has had time to reach the apiserver's trust.
    if (trustedAt > now) return { action: 'keep', recheckAt: trustedAt };
    reason = 'the serving certificate was issued by a previous CA';
  } else if (sanList(cert).join() !== wantedSans(s).join()) {
    reason = `the serving certificate names ${sanList(cert).join(', ')}, not ${wantedSans(s).join(', ')}`;
  } else if (renewalTime(cert, s.renewFraction) <= now) {
    reason = `the serving certificate expires at ${cert.validToDate.toISOString()}`;
  }
  if (reason) return { action: 'renew-cert', reason };

  const nextExpiry = Math.min(...bundle.map((pem) => parse(pem)!.validToDate.getTime()));
  const recheckAt = Math.min(caRenewAt.getTime(), renewalTime(cert!, s.renewFraction).getTime(), nextExpiry);
  return { action: 'keep', recheckAt: new Date(recheckAt) };
}

async function issueServing(ca: KeyPair, s: Required<TlsSettings>, now: Date): Promise<KeyPair> {
  const caNotAfter = new X509Certificate(ca.certPem).validToDate.getTime();
  return issueCert(ca, {
    subject: `CN=${s.serviceName}.${s.namespace}.svc`,
    dnsNames: servingDnsNames(s.serviceName, s.namespace),
    ipAddresses: s.ipAddresses,
    usage: 'server',
    // Never outlive the CA that signs it.
    validForMs: Math.min(s.certValidForMs, caNotAfter - now.getTime()),
    now,
  });
}

/** Carries out a plan: the new Secret contents (the input is not modified). */
export async function applyTlsPlan(
  stored: StoredTls | undefined,
  plan: TlsPlan,
  settings: TlsSettings,
  now: Date,
): Promise<StoredTls | undefined> {
  const s = withTlsDefaults(settings);
  const oldBundle = stored ? validBundle(stored.caBundlePem, now) : [];
  const bundleWith = (caPem: string) => validBundle([caPem, ...oldBundle].join(''), now).join('');
  switch (plan.action) {
    case 'keep':
      return undefined;
    case 'create': {
      const ca = await createCA(
        `spillway-webhook-ca@${Math.floor(now.getTime() / 1000)}`,
        s.caValidForMs,
        now,
      );
      return {
        ca,
        cert: await issueServing(ca, s, now),
        caBundlePem: bundleWith(ca.certPem),
        caCreatedAt: now,
      };
    }
    case 'rotate-ca': {
      // The serving certificate stays: it is signed by the old CA, which stays in the bundle.
      const ca = await createCA(
        `spillway-webhook-ca@${Math.floor(now.getTime() / 1000)}`,
        s.caValidForMs,
        now,
      );
      return { ...stored!, ca, caBundlePem: bundleWith(ca.certPem), caCreatedAt: now };
    }
    case 'renew-cert':
      return { ...stored!, cert: await issueServing(stored!.ca, s, now) };
    case 'fix-bundle':
      return { ...stored!, caBundlePem: bundleWith(stored!.ca.certPem) };
  }
}

/**
 * Merges trust bundles for a webhook configuration: ours plus whatever it already trusts that has not expired.
 * Monotone on purpose: a replica acting on a Secret it read a moment ago cannot take a new CA out of the bundle
 * that another replica just put in; a CA leaves the bundle only by expiring.
 */
export function mergeBundles(current: string, ours: string, now: Date): string {
  return validBundle(ours + current, now).join('');
}
