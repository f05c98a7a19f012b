import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCA } from '../operator/shared/pki.ts';
import {
  applyTlsPlan,
  mergeBundles,
  planTls,
  servingDnsNames,
  splitPem,
  validBundle,
  type StoredTls,
  type TlsPlan,
  type TlsSettings,
} from './tls.ts';

const DAY = 86_400_000;
const t0 = new Date('2030-01-01T00:00:00Z');
const at = (days: number, ms = 0) => new Date(t0.getTime() + days * DAY + ms);
const settings: TlsSettings = {
  namespace: 'spillway-system',
  secretName: 'spillway-webhook-tls',
  serviceName: 'spillway-webhook',
  caValidForMs: 300 * DAY,
  certValidForMs: 30 * DAY,
};

async function apply(stored: StoredTls | undefined, now: Date, s = settings): Promise<StoredTls> {
  const plan = planTls(stored, s, now);
  if (plan.action === 'keep') throw new Error('expected a change');
  return (await applyTlsPlan(stored, plan, s, now))!;
}

let fresh: StoredTls; // created at t0
let renewed: StoredTls; // serving certificate renewed at day 199
let rotated: StoredTls; // CA rotated at day 201, serving certificate still from the first CA
let switched: StoredTls; // serving certificate re-issued from the new CA at day 201 + 3 min
beforeAll(async () => {
  fresh = await apply(undefined, t0);
  renewed = await apply(fresh, at(199));
  rotated = await apply(renewed, at(201));
  switched = await apply(rotated, at(201, 3 * 60_000));
});

const action = (p: TlsPlan) => (p.action === 'keep' ? 'keep' : `${p.action}: ${p.reason}`);

describe('planTls', () => {
  it.each<[string, () => StoredTls | undefined, Date, RegExp, TlsSettings?]>([
    ['no Secret', () => undefined, t0, /^create: no TLS Secret/],
    ['a fresh Secret', () => fresh, at(1), /^keep$/],
    [
      'serving certificate within its last third',
      () => fresh,
      at(21),
      /^renew-cert: the serving certificate expires at/,
    ],
    ['serving certificate expired', () => fresh, at(31), /^renew-cert: the serving certificate has expired/],
    ['CA within its last third', () => fresh, at(201), /^rotate-ca: the CA expires at/],
    ['right after a CA rotation: wait for trust', () => rotated, at(201, 60_000), /^keep$/],
    [
      'after the trust delay: switch',
      () => rotated,
      at(201, 3 * 60_000),
      /^renew-cert: .*issued by a previous CA/,
    ],
    ['after the switch', () => switched, at(202), /^keep$/],
    ['old CA expired: prune it', () => switched, at(301), /^fix-bundle: .*expired or duplicate/],
    [
      'bundle lost the current CA',
      () => ({ ...fresh, caBundlePem: '' }),
      at(1),
      /^fix-bundle: .*does not contain the current CA/,
    ],
    [
      'unreadable CA',
      () => ({ ...fresh, ca: { certPem: 'junk', keyPem: 'junk' } }),
      at(1),
      /^create: the stored CA is unreadable/,
    ],
    [
      'unreadable serving certificate',
      () => ({ ...fresh, cert: { certPem: 'x', keyPem: 'y' } }),
      at(1),
      /^renew-cert: .*unreadable/,
    ],
    [
      'dev mode adds 127.0.0.1',
      () => fresh,
      at(1),
      /^renew-cert: the serving certificate names DNS:.*, not .*IP Address:127\.0\.0\.1/,
      { ...settings, ipAddresses: ['127.0.0.1'] },
    ],
    [
      'the Service was renamed',
      () => fresh,
      at(1),
      /^renew-cert: .*names/,
      { ...settings, serviceName: 'other' },
    ],
  ])('%s', (_name, stored, now, expected, s = settings) => {
    expect(action(planTls(stored(), s, now))).toMatch(expected);
  });

  it('an expired serving certificate is replaced even during the trust delay', () => {
    const stale = { ...rotated, cert: fresh.cert }; // expired around day 30
    expect(action(planTls(stale, settings, at(201, 60_000)))).toMatch(/^renew-cert: .*has expired/);
  });

  it('schedules the next check at the earliest renewal', () => {
    const plan = planTls(fresh, settings, at(1));
    if (plan.action !== 'keep') throw new Error('expected keep');
    // The serving certificate (30 days) is due first: two thirds into its life.
    expect(plan.recheckAt.getTime()).toBeGreaterThan(at(19).getTime());
    expect(plan.recheckAt.getTime()).toBeLessThan(at(21).getTime());
  });

  it('waits exactly until the trust delay has passed', () => {
    const plan = planTls(rotated, settings, at(201, 60_000));
    expect(plan).toEqual({ action: 'keep', recheckAt: new Date(rotated.caCreatedAt.getTime() + 120_000) });
  });
});

describe('applyTlsPlan', () => {
  it('creates a CA and a serving certificate for the Service', () => {
    const cert = new X509Certificate(fresh.cert.certPem);
    expect(cert.subjectAltName).toBe(
      servingDnsNames('spillway-webhook', 'spillway-system')
        .map((d) => `DNS:${d}`)
        .join(', '),
    );
    expect(cert.verify(new X509Certificate(fresh.ca.certPem).publicKey)).toBe(true);
    expect(splitPem(fresh.caBundlePem)).toEqual([
      fresh.ca.certPem.endsWith('\n') ? fresh.ca.certPem : `${fresh.ca.certPem}\n`,
    ]);
    expect(fresh.caCreatedAt).toEqual(t0);
  });

  it('a CA rotation keeps the serving certificate and trusts both CAs', () => {
    expect(rotated.cert).toEqual(renewed.cert);
    expect(rotated.ca.certPem).not.toEqual(renewed.ca.certPem);
    const bundle = splitPem(rotated.caBundlePem).map((p) => new X509Certificate(p).fingerprint256);
    expect(bundle).toEqual(
      [rotated.ca.certPem, fresh.ca.certPem].map((p) => new X509Certificate(p).fingerprint256),
    );
  });

  it('the switched serving certificate is signed by the new CA and does not outlive it', () => {
    const cert = new X509Certificate(switched.cert.certPem);
    const ca = new X509Certificate(switched.ca.certPem);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.validToDate.getTime()).toBeLessThanOrEqual(ca.validToDate.getTime());
  });

  it('dev mode certificates carry the IP', async () => {
    const dev = await apply(fresh, at(1), { ...settings, ipAddresses: ['127.0.0.1'] });
    expect(new X509Certificate(dev.cert.certPem).subjectAltName).toContain('IP Address:127.0.0.1');
    expect(dev.ca).toEqual(fresh.ca);
  });
});

describe('trust bundles', () => {
  it('mergeBundles keeps both, drops duplicates and expired certificates', async () => {
    const a = await createCA('a', 10 * DAY, t0);
    const b = await createCA('b', 100 * DAY, t0);
    expect(splitPem(mergeBundles(a.certPem, b.certPem + a.certPem, at(1)))).toHaveLength(2);
    expect(splitPem(mergeBundles(a.certPem, b.certPem, at(11)))).toEqual(splitPem(b.certPem));
    expect(validBundle('not a certificate', at(1))).toEqual([]);
  });
});
