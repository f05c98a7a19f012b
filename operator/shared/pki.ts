/**
 * A small certificate authority: ECDSA P-256 keys and X.509 certificates for the local control plane and the
 * webhook server's self-managed TLS. Pure TypeScript (WebCrypto + @peculiar/x509): no openssl needed in a pod.
 */
import { randomBytes, webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// Node's WebCrypto is the standard Crypto interface; its type lives in node:crypto, not in lib.dom.
x509.cryptoProvider.set(webcrypto as never);

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A certificate with its private key, both PEM-encoded. */
export interface KeyPair {
  certPem: string;
  keyPem: string;
}

/** What a certificate is for and whom it names. */
export interface CertRequest {
  /** Distinguished name, e.g. `CN=kubernetes-admin, O=system:masters`. */
  subject: string;
  /** DNS names and IP addresses for the subjectAltName extension. */
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: 'server' | 'client' | 'server+client';
  /** Lifetime; the certificate is valid from one minute ago to allow for clock skew. */
  validForMs: number;
  now?: Date;
}

const serialNumber = () => '01' + randomBytes(15).toString('hex');

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function importKey(keyPem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(keyPem);
  return webcrypto.subtle.importKey('pkcs8', der, algorithm, true, ['sign']);
}

function validity(now: Date, validForMs: number) {
  return { notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + validForMs) };
}

/** Creates a self-signed CA certificate. */
export async function createCA(commonName: string, validForMs: number, now = new Date()): Promise<KeyPair> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${commonName}`,
    ...validity(now, validForMs),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** Issues a leaf certificate signed by `ca`. */
export async function issueCert(ca: KeyPair, req: CertRequest): Promise<KeyPair> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = await generateKeys();
  const usages = {
    server: [x509.ExtendedKeyUsage.serverAuth],
    client: [x509.ExtendedKeyUsage.clientAuth],
    'server+client': [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
  }[req.usage];
  const names = [
    ...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(req.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: req.subject,
    issuer: caCert.subject,
    ...validity(req.now ?? new Date(), req.validForMs),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(usages, false),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** A bare key pair (PKCS#8 private, SPKI public), e.g. for service-account token signing. */
export async function createSigningKey(): Promise<{ privatePem: string; publicPem: string }> {
  const keys = await generateKeys();
  const spki = await webcrypto.subtle.exportKey('spki', keys.publicKey);
  return {
    privatePem: await keyToPem(keys.privateKey),
    publicPem: x509.PemConverter.encode(spki, 'PUBLIC KEY'),
  };
}

/** When the certificate in `certPem` stops being valid. */
export function certNotAfter(certPem: string): Date {
  return new x509.X509Certificate(certPem).notAfter;
}
