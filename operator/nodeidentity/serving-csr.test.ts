import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { describeRequest } from './csr.ts';
import { decideKubeletServingCSR, KUBELET_SERVING_SIGNER, nodeServingRequest } from './serving-csr.ts';

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const nodes: Record<string, string[]> = { 'vn-eci': ['10.0.0.7', 'fd00::7'], 'vn-other': ['10.0.0.8'] };
const managed = new Set(['vn-eci', 'vn-other']);
const policy = {
  isManagedNode: (n: string) => managed.has(n),
  internalIPs: (n: string) => nodes[n],
};
const asNode = (name: string) => ({
  username: `system:node:${name}`,
  groups: ['system:nodes', 'system:authenticated'],
});
const names = { dnsNames: ['vn-eci'], ipAddresses: ['10.0.0.7'] };

/** A PEM request with any subject and subjectAltNames (what an attacker could send). */
async function customRequest(name: x509.JsonName, altNames: x509.JsonGeneralNames = []): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: algorithm,
    extensions: altNames.length > 0 ? [new x509.SubjectAlternativeNameExtension(altNames)] : [],
  });
  return req.toString('pem');
}

const vnSubject: x509.JsonName = [{ CN: ['system:node:vn-eci'] }, { O: ['system:nodes'] }];

function csr(
  requestPem: string,
  over: Partial<V1CertificateSigningRequest['spec']> = {},
  conditions: { type: string; status: string }[] = [],
): V1CertificateSigningRequest {
  return {
    metadata: { name: 'vn-eci-abcde' },
    spec: {
      request: Buffer.from(requestPem).toString('base64'),
      signerName: KUBELET_SERVING_SIGNER,
      usages: ['digital signature', 'server auth'],
      ...asNode('vn-eci'),
      ...over,
    },
    status: { conditions },
  };
}

describe('decideKubeletServingCSR', () => {
  it('approves what a virtual node asks for its kubelet API, as itself', async () => {
    const { requestPem } = await nodeServingRequest('vn-eci', names);
    expect(describeRequest(requestPem)).toEqual({
      subject: [
        ['CN', 'system:node:vn-eci'],
        ['O', 'system:nodes'],
      ],
      altNames: ['dns:vn-eci', 'ip:10.0.0.7'],
    });
    expect(decideKubeletServingCSR(csr(requestPem), policy)).toMatchObject({ action: 'approve' });
    // An RSA key's usages; a subset of the node's addresses; the IPv6 one written out in full.
    expect(
      decideKubeletServingCSR(
        csr(requestPem, { usages: ['key encipherment', 'server auth', 'digital signature'] }),
        policy,
      ),
    ).toMatchObject({ action: 'approve' });
    const v6 = await customRequest(vnSubject, [{ type: 'ip', value: 'fd00:0:0:0:0:0:0:7' }]);
    expect(decideKubeletServingCSR(csr(v6), policy)).toMatchObject({ action: 'approve' });
  });

  it('denies, with the reason, a request that claims a managed node and asks for more', async () => {
    const good = (await nodeServingRequest('vn-eci', names)).requestPem;
    const cases: [string, Promise<V1CertificateSigningRequest>, string][] = [
      [
        'another name',
        customRequest(vnSubject, [
          { type: 'dns', value: 'vn-eci' },
          { type: 'dns', value: 'kubernetes.default.svc' },
        ]).then((r) => csr(r)),
        'UnexpectedNames',
      ],
      [
        'an address the Node does not have',
        nodeServingRequest('vn-eci', { dnsNames: [], ipAddresses: ['10.0.0.99'] }).then((r) =>
          csr(r.requestPem),
        ),
        'UnexpectedNames',
      ],
      [
        "another virtual node's address",
        nodeServingRequest('vn-eci', { dnsNames: [], ipAddresses: ['10.0.0.8'] }).then((r) =>
          csr(r.requestPem),
        ),
        'UnexpectedNames',
      ],
      [
        'an e-mail or URI name',
        customRequest(vnSubject, [
          { type: 'dns', value: 'vn-eci' },
          { type: 'url', value: 'spiffe://cluster/ns/kube-system' },
        ]).then((r) => csr(r)),
        'UnexpectedNames',
      ],
      ['no name at all', customRequest(vnSubject).then((r) => csr(r)), 'UnexpectedNames'],
      [
        'client auth',
        Promise.resolve(csr(good, { usages: ['digital signature', 'server auth', 'client auth'] })),
        'UnexpectedUsages',
      ],
      ['no server auth', Promise.resolve(csr(good, { usages: ['digital signature'] })), 'UnexpectedUsages'],
      [
        'system:masters in the subject',
        customRequest(
          [{ CN: ['system:node:vn-eci'] }, { O: ['system:nodes'] }, { O: ['system:masters'] }],
          [{ type: 'dns', value: 'vn-eci' }],
        ).then((r) => csr(r)),
        'UnexpectedSubject',
      ],
      ['another node asking for it', Promise.resolve(csr(good, asNode('vn-other'))), 'UnexpectedRequester'],
      [
        "the bootstrap identity asking for the node's",
        Promise.resolve(
          csr(good, {
            username: 'system:serviceaccount:spillway-system:spillway-virtual-node',
            groups: ['system:serviceaccounts'],
          }),
        ),
        'UnexpectedRequester',
      ],
      [
        'a user named like the node but not in system:nodes',
        Promise.resolve(csr(good, { username: 'system:node:vn-eci', groups: ['system:authenticated'] })),
        'UnexpectedRequester',
      ],
      [
        'a managed node asking for a real node',
        nodeServingRequest('kwok-node-0', { dnsNames: ['kwok-node-0'], ipAddresses: [] }).then((r) =>
          csr(r.requestPem),
        ),
        'UnexpectedRequester',
      ],
      [
        'a managed node that is not registered',
        nodeServingRequest('vn-gone', { dnsNames: ['vn-gone'], ipAddresses: [] }).then((r) =>
          csr(r.requestPem, asNode('vn-gone')),
        ),
        'NodeNotRegistered',
      ],
      ['garbage', Promise.resolve(csr('not a request')), 'InvalidRequest'],
    ];
    managed.add('vn-gone');
    try {
      for (const [what, request, reason] of cases)
        expect(decideKubeletServingCSR(await request, policy), what).toMatchObject({
          action: 'deny',
          reason,
        });
    } finally {
      managed.delete('vn-gone');
    }
  });

  const kwok = () =>
    nodeServingRequest('kwok-node-0', { dnsNames: ['kwok-node-0'], ipAddresses: ['10.0.0.9'] });
  const ours = () => nodeServingRequest('vn-eci', names);
  it.each([
    ['another signer', ours, { signerName: 'kubernetes.io/kube-apiserver-client-kubelet' }, []],
    ['a real kubelet', kwok, asNode('kwok-node-0'), []],
    ['an unparsable request from a real kubelet', kwok, { ...asNode('kwok-node-0'), request: 'eA==' }, []],
    ['an approved request', ours, {}, [{ type: 'Approved', status: 'True' }]],
    ['a denied request', ours, {}, [{ type: 'Denied', status: 'True' }]],
  ] as const)('leaves %s alone', async (_what, request, over, conditions) => {
    const { requestPem } = await request();
    expect(decideKubeletServingCSR(csr(requestPem, over, [...conditions]), policy)).toMatchObject({
      action: 'ignore',
    });
  });
});
