/**
 * The virtual node as a node in the apiserver's eyes: it bootstraps from a ServiceAccount that may only ask for
 * a certificate (as the chart's does), spillway's approver approves `system:node:<name>` for the node it
 * manages and nothing else, kube-controller-manager signs, and from then on the Node authorizer and
 * NodeRestriction confine the node to its own pods: it runs a pod with a Secret, a ConfigMap and a projected
 * token, and gets 403 for another Secret, another node's pod and another ServiceAccount's token.
 */
import { webcrypto } from 'node:crypto';
import {
  AuthenticationV1Api,
  CertificatesV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCsrApprover } from '../../operator/nodeidentity/approver.ts';
import { KUBELET_CLIENT_SIGNER, nodeClientRequest } from '../../operator/nodeidentity/csr.ts';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import { apiErrorCode } from '../../operator/shared/client.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-identity';
const onVirtualNode = {
  nodeSelector: { 'spillway.dev/virtual-node': 'true' },
  tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' as const }],
};

/** The HTTP status a call ends with (200 when it succeeds). */
async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (err) {
    return apiErrorCode(err) ?? -1;
  }
}

describe('the virtual node identity', () => {
  let cluster: TestCluster;
  let admin: CoreV1Api;
  let rbac: RbacAuthorizationV1Api;
  let ns: { name: string; remove: () => Promise<void> };
  let bootstrap: KubeConfig;
  let bootstrapUser: string;
  let approver: NodeCsrApprover;
  let vn: RunningVirtualNode;
  const clusterRole = `spillway-test-node-bootstrap-${process.pid}`;

  beforeAll(async () => {
    cluster = await testCluster();
    admin = cluster.kc.makeApiClient(CoreV1Api);
    rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    ns = await createTestNamespace(cluster.kc, 'node-identity');
    // The bootstrap identity, as the chart grants it: ask for certificates, read the cluster's client CA and the
    // Events its node recorded.
    await admin.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'vn' } } });
    bootstrapUser = `system:serviceaccount:${ns.name}:vn`;
    const subject = { kind: 'ServiceAccount', name: 'vn', namespace: ns.name };
    await rbac.createClusterRole({
      body: {
        metadata: { name: clusterRole },
        rules: [
          {
            apiGroups: ['certificates.k8s.io'],
            resources: ['certificatesigningrequests'],
            verbs: ['create', 'get'],
          },
          { apiGroups: [''], resources: ['events'], verbs: ['list'] },
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: clusterRole },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
        subjects: [subject],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: 'kube-system',
      body: {
        metadata: { name: clusterRole },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'Role',
          name: 'extension-apiserver-authentication-reader',
        },
        subjects: [subject],
      },
    });
    const token = await admin.createNamespacedServiceAccountToken({
      namespace: ns.name,
      name: 'vn',
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    bootstrap = new KubeConfig();
    const server = cluster.kc.getCurrentCluster()!;
    bootstrap.loadFromOptions({
      clusters: [server],
      users: [{ name: 'vn', token: token.status!.token }],
      contexts: [{ name: 'vn', cluster: server.name, user: 'vn' }],
      currentContext: 'vn',
    });

    approver = new NodeCsrApprover({
      kc: cluster.kc,
      policy: { isManagedNode: (n) => n === nodeName, bootstrapUsers: [bootstrapUser] },
    });
    await approver.start();
    vn = await startVirtualNode({
      kc: bootstrap,
      provider: new FakeProvider(),
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: await freePort() },
    });
  });
  afterAll(async () => {
    await vn?.stop();
    await approver?.stop();
    await ns?.remove();
    await admin?.deleteNode({ name: nodeName }).catch(() => undefined);
    await rbac?.deleteClusterRoleBinding({ name: clusterRole }).catch(() => undefined);
    await rbac?.deleteClusterRole({ name: clusterRole }).catch(() => undefined);
    await rbac
      ?.deleteNamespacedRoleBinding({ name: clusterRole, namespace: 'kube-system' })
      .catch(() => undefined);
  });

  it('authenticates as system:node:<name> in system:nodes with a certificate spillway approved', async () => {
    const me = await vn.identity.kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    expect(me.status?.userInfo?.username).toBe(`system:node:${nodeName}`);
    expect(me.status?.userInfo?.groups).toContain('system:nodes');
    const csrs = await cluster.kc.makeApiClient(CertificatesV1Api).listCertificateSigningRequest();
    const ours = csrs.items.filter((c) => c.spec.username === bootstrapUser);
    expect(ours.length).toBeGreaterThan(0);
    expect(ours[0]!.status?.conditions?.find((c) => c.type === 'Approved')?.reason).toBe(
      'SpillwayVirtualNode',
    );
    // The bootstrap identity itself is no node and reads no Secrets.
    const asBootstrap = bootstrap.makeApiClient(CoreV1Api);
    expect(await statusOf(() => asBootstrap.readNode({ name: nodeName }))).toBe(403);
  });

  it('runs a pod with a Secret, a ConfigMap and a projected token, and is refused everything else', async () => {
    await admin.createNamespacedSecret({
      namespace: ns.name,
      body: { metadata: { name: 'mine' }, stringData: { password: 'p' } },
    });
    await admin.createNamespacedSecret({
      namespace: ns.name,
      body: { metadata: { name: 'not-mine' }, stringData: { password: 'q' } },
    });
    await admin.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'settings' }, data: { a: 'b' } },
    });
    await admin.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'other' } } });
    const pod = (name: string, spec: Partial<V1Pod['spec']>): V1Pod => ({
      metadata: { name },
      spec: {
        containers: [
          {
            name: 'app',
            image: 'nginx:1.27',
            env: [{ name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'mine', key: 'password' } } }],
            envFrom: [{ configMapRef: { name: 'settings' } }],
          },
        ],
        ...spec,
      },
    });
    await admin.createNamespacedPod({ namespace: ns.name, body: pod('on-virtual', onVirtualNode) });
    // Another node's pod, using the other ServiceAccount (kwok runs it).
    await admin.createNamespacedPod({
      namespace: ns.name,
      body: pod('on-kwok', { nodeName: 'kwok-node-0', serviceAccountName: 'other' }),
    });
    await waitFor('the pod Running on the virtual node', 60_000, async () => {
      const p = await admin.readNamespacedPod({ namespace: ns.name, name: 'on-virtual' });
      return p.status?.phase === 'Running';
    });

    const asNode = vn.identity.kc.makeApiClient(CoreV1Api);
    const kwokPod = await admin.readNamespacedPod({ namespace: ns.name, name: 'on-kwok' });
    expect(await statusOf(() => asNode.readNamespacedSecret({ namespace: ns.name, name: 'mine' }))).toBe(200);
    expect(await statusOf(() => asNode.readNamespacedSecret({ namespace: ns.name, name: 'not-mine' }))).toBe(
      403,
    );
    expect(
      await statusOf(() =>
        asNode.readNamespacedSecret({ namespace: 'kube-system', name: 'bootstrap-token' }),
      ),
    ).toBe(403);
    expect(await statusOf(() => asNode.listSecretForAllNamespaces())).toBe(403);
    expect(
      await statusOf(() =>
        asNode.patchNamespacedPodStatus({
          namespace: ns.name,
          name: 'on-kwok',
          body: [{ op: 'replace', path: '/status/phase', value: 'Failed' }],
        }),
      ),
    ).toBe(403);
    expect(await statusOf(() => asNode.deleteNamespacedPod({ namespace: ns.name, name: 'on-kwok' }))).toBe(
      403,
    );
    for (const boundObjectRef of [
      undefined,
      { apiVersion: 'v1', kind: 'Pod', name: 'on-kwok', uid: kwokPod.metadata!.uid! },
    ])
      expect(
        await statusOf(() =>
          asNode.createNamespacedServiceAccountToken({
            namespace: ns.name,
            name: 'other',
            body: { spec: { audiences: [], ...(boundObjectRef && { boundObjectRef }) } },
          }),
        ),
      ).toBe(403);
    // Another node's Node object (NodeRestriction).
    expect(
      await statusOf(() =>
        asNode.patchNode({
          name: 'kwok-node-0',
          body: [{ op: 'add', path: '/metadata/labels/x', value: 'y' }],
        }),
      ),
    ).toBe(403);
  });

  it('is not approved for a node spillway does not manage, nor with extra names', async () => {
    const api = bootstrap.makeApiClient(CertificatesV1Api);
    const ask = async (requestPem: string) =>
      (
        await api.createCertificateSigningRequest({
          body: {
            metadata: { generateName: 'node-identity-test-' },
            spec: {
              request: Buffer.from(requestPem).toString('base64'),
              signerName: KUBELET_CLIENT_SIGNER,
              usages: ['digital signature', 'client auth'],
            },
          },
        })
      ).metadata!.name!;
    const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const withSans = await x509.Pkcs10CertificateRequestGenerator.create({
      name: [{ CN: [`system:node:${nodeName}`] }, { O: ['system:nodes'] }],
      keys,
      signingAlgorithm: algorithm,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'kubernetes.default.svc' }]),
      ],
    });
    const cases = [
      [await ask((await nodeClientRequest('kwok-node-1')).requestPem), 'NotAVirtualNode'],
      [await ask(withSans.toString('pem')), 'UnexpectedNames'],
    ] as const;
    const admins = cluster.kc.makeApiClient(CertificatesV1Api);
    for (const [name, reason] of cases) {
      await waitFor(`${name} decided`, 30_000, async () => {
        const csr = await admins.readCertificateSigningRequest({ name });
        return (csr.status?.conditions?.length ?? 0) > 0;
      });
      const csr = await admins.readCertificateSigningRequest({ name });
      expect(csr.status?.conditions?.map((c) => [c.type, c.reason])).toEqual([['Denied', reason]]);
      expect(csr.status?.certificate).toBeFalsy();
    }
  });

  it('rotates its certificate in place: the same clients go on with the new one', async () => {
    const before = new x509.X509Certificate(vn.identity.certificatePem);
    await vn.identity.rotate();
    const after = new x509.X509Certificate(vn.identity.certificatePem);
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(after.subject).toBe(before.subject);
    expect(vn.identity.renewAt.getTime()).toBeGreaterThan(Date.now());
    expect(vn.identity.renewAt.getTime()).toBeLessThan(after.notAfter.getTime());
    const used = Buffer.from(vn.identity.kc.getCurrentUser()!.certData!, 'base64').toString();
    expect(new x509.X509Certificate(used).serialNumber).toBe(after.serialNumber);
    // The node keeps working: a new pod runs (informer, status patches, token and ConfigMap reads).
    await admin.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'after-rotation' },
        spec: { ...onVirtualNode, containers: [{ name: 'app', image: 'nginx:1.27' }] },
      },
    });
    await waitFor('a pod Running after the rotation', 60_000, async () => {
      const p = await admin.readNamespacedPod({ namespace: ns.name, name: 'after-rotation' });
      return p.status?.phase === 'Running';
    });
  });
});
