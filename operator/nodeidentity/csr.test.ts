import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { renewalTime } from './client-certificate.ts';
import { decideNodeClientCSR, describeRequest, KUBELET_CLIENT_SIGNER, nodeClientRequest } from './csr.ts';

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const bootstrap = 'system:serviceaccount:spillway-system:spillway-virtual-node';
const policy = { isManagedNode: (n: string) => n === 'vn-eci', bootstrapUsers: [bootstrap] };

/** A PEM request with any subject and extensions (what an attacker could send). */
async function customRequest(name: x509.JsonName, extensions: x509.Extension[] = []): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: algorithm,
    extensions,
  });
  return req.toString('pem');
}

function csr(
  requestPem: string,
  over: Partial<V1CertificateSigningRequest['spec']> = {},
  conditions: { type: string; status: string }[] = [],
): V1CertificateSigningRequest {
  return {
    metadata: { name: 'vn-eci-abcde' },
    spec: {
      request: Buffer.from(requestPem).toString('base64'),
      signerName: KUBELET_CLIENT_SIGNER,
      usages: ['digital signature', 'client auth'],
      username: bootstrap,
      ...over,
    },
    status: { conditions },
  };
}

describe('decideNodeClientCSR', () => {
  it('approves what a virtual node asks for itself through its bootstrap identity', async () => {
    const { requestPem } = await nodeClientRequest('vn-eci');
    expect(describeRequest(requestPem)).toEqual({
      subject: [
        ['CN', 'system:node:vn-eci'],
        ['O', 'system:nodes'],
      ],
      altNames: [],
    });
    expect(decideNodeClientCSR(csr(requestPem), policy)).toMatchObject({ action: 'approve' });
  });

  it('denies, with the reason, anything more or anyone else', async () => {
    const good = (await nodeClientRequest('vn-eci')).requestPem;
    const other = (await nodeClientRequest('kwok-node-0')).requestPem;
    const withSans = await customRequest(
      [{ CN: ['system:node:vn-eci'] }, { O: ['system:nodes'] }],
      [
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'kubernetes.default.svc' },
          { type: 'ip', value: '10.96.0.1' },
        ]),
      ],
    );
    const masters = await customRequest([
      { CN: ['system:node:vn-eci'] },
      { O: ['system:nodes', 'system:masters'] },
    ]);
    const extraAttribute = await customRequest([
      { CN: ['system:node:vn-eci'] },
      { O: ['system:nodes'] },
      { OU: ['admins'] },
    ]);
    const cases: [string, V1CertificateSigningRequest, string][] = [
      ['a node spillway does not manage', csr(other), 'NotAVirtualNode'],
      ['extra SANs', csr(withSans), 'UnexpectedNames'],
      ['a second organisation', csr(masters), 'UnexpectedSubject'],
      ['another subject attribute', csr(extraAttribute), 'UnexpectedSubject'],
      [
        'server auth',
        csr(good, { usages: ['digital signature', 'client auth', 'server auth'] }),
        'UnexpectedUsages',
      ],
      ['no client auth', csr(good, { usages: ['digital signature'] }), 'UnexpectedUsages'],
      [
        'another requester',
        csr(good, { username: 'system:serviceaccount:default:default' }),
        'UnexpectedRequester',
      ],
      ['an unparsable request', csr('not a request'), 'InvalidRequest'],
    ];
    for (const [what, request, reason] of cases)
      expect(decideNodeClientCSR(request, policy), what).toMatchObject({ action: 'deny', reason });
  });

  it('leaves real kubelets, other signers and settled requests alone', async () => {
    const kubelet = (await nodeClientRequest('kwok-node-0')).requestPem;
    const good = (await nodeClientRequest('vn-eci')).requestPem;
    expect(decideNodeClientCSR(csr(kubelet, { username: 'system:node:kwok-node-0' }), policy).action).toBe(
      'ignore',
    );
    expect(
      decideNodeClientCSR(csr(good, { signerName: 'kubernetes.io/kube-apiserver-client' }), policy).action,
    ).toBe('ignore');
    expect(decideNodeClientCSR(csr(good, {}, [{ type: 'Approved', status: 'True' }]), policy).action).toBe(
      'ignore',
    );
    expect(decideNodeClientCSR(csr(good, {}, [{ type: 'Denied', status: 'True' }]), policy).action).toBe(
      'ignore',
    );
  });
});

describe('renewalTime', () => {
  it('renews at 70–90 % of the lifetime, as kubelet does', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2026-01-01T10:00:00Z');
    expect(renewalTime(notBefore, notAfter, 0).toISOString()).toBe('2026-01-01T07:00:00.000Z');
    expect(renewalTime(notBefore, notAfter, 0.5).toISOString()).toBe('2026-01-01T08:00:00.000Z');
    const late = renewalTime(notBefore, notAfter, 1);
    expect(late.getTime()).toBeLessThan(new Date('2026-01-01T09:00:00Z').getTime());
    expect(late.getTime()).toBeGreaterThan(new Date('2026-01-01T08:59:00Z').getTime());
  });
});
