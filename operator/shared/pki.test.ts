import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { certNotAfter, createCA, createSigningKey, issueCert } from './pki.ts';

describe('pki', () => {
  it('issues a server certificate that verifies against its CA and names its SANs', async () => {
    const ca = await createCA('spillway-test-ca', 3600_000);
    const leaf = await issueCert(ca, {
      subject: 'CN=webhook',
      dnsNames: ['spillway-webhook.spillway.svc'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validForMs: 600_000,
    });
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(leaf.certPem);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.subjectAltName).toContain('DNS:spillway-webhook.spillway.svc');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
    expect(certNotAfter(leaf.certPem).getTime()).toBeGreaterThan(Date.now() + 590_000);
  });

  it('puts the organisation of a client certificate in its subject', async () => {
    const ca = await createCA('ca', 3600_000);
    const admin = await issueCert(ca, {
      subject: 'CN=kubernetes-admin, O=system:masters',
      usage: 'client',
      validForMs: 3600_000,
    });
    expect(new X509Certificate(admin.certPem).subject).toMatch(/O=system:masters/);
  });

  it('creates a signing key pair node can load', async () => {
    const { privatePem, publicPem } = await createSigningKey();
    expect(createPrivateKey(privatePem).asymmetricKeyType).toBe('ec');
    expect(createPublicKey(publicPem).asymmetricKeyType).toBe('ec');
  });
});
