/**
 * The virtual node's kubelet API as metrics-server sees it: the node asks, as `system:node:<name>`, for a
 * `kubernetes.io/kubelet-serving` certificate naming itself and its InternalIP; spillway's approver approves it,
 * kube-controller-manager signs it, and the kubelet API serves it, so a client that trusts only the cluster CA
 * (metrics-server's `--kubelet-certificate-authority`) verifies the node. A request for a name the node does not
 * have is denied.
 */
import { readFileSync } from 'node:fs';
import { connect, type PeerCertificate } from 'node:tls';
import { CertificatesV1Api, CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCsrApprover } from '../../operator/nodeidentity/approver.ts';
import { KUBELET_SERVING_SIGNER, nodeServingRequest } from '../../operator/nodeidentity/serving-csr.ts';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-serving';

/** The certificate the kubelet API presents to a client that trusts only `ca`, and whether it verified. */
function presented(
  port: number,
  ca: string,
): Promise<{ authorized: boolean; error?: string; peer: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: false }, () => {
      const peer = socket.getPeerCertificate();
      resolve({
        authorized: socket.authorized,
        ...(socket.authorizationError && { error: String(socket.authorizationError) }),
        peer,
      });
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('the virtual node serving certificate', () => {
  let cluster: TestCluster;
  let admin: CoreV1Api;
  let rbac: RbacAuthorizationV1Api;
  let ns: { name: string; remove: () => Promise<void> };
  let approver: NodeCsrApprover;
  let vn: RunningVirtualNode;
  let port: number;
  let clusterCA: string;
  const clusterRole = `spillway-test-serving-bootstrap-${process.pid}`;

  beforeAll(async () => {
    cluster = await testCluster();
    admin = cluster.kc.makeApiClient(CoreV1Api);
    rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    const server = cluster.kc.getCurrentCluster()!;
    clusterCA = server.caData
      ? Buffer.from(server.caData, 'base64').toString()
      : readFileSync(server.caFile!, 'utf8');
    ns = await createTestNamespace(cluster.kc, 'node-serving');
    // The bootstrap identity, as the chart grants it (test/integration/node-identity.test.ts does the same).
    await admin.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'vn' } } });
    const bootstrapUser = `system:serviceaccount:${ns.name}:vn`;
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
    const bootstrap = new KubeConfig();
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
    port = await freePort();
    vn = await startVirtualNode({
      kc: bootstrap,
      provider: new FakeProvider(),
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: port },
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

  it('serves a certificate the cluster CA vouches for, naming the node and its InternalIP', async () => {
    expect(vn.servingCertificate.current.issued).toBe(true);
    const { authorized, error, peer } = await presented(port, clusterCA);
    expect(error).toBeUndefined();
    expect(authorized).toBe(true);
    expect(peer.subject.CN).toBe(`system:node:${nodeName}`);
    expect(peer.subject.O).toBe('system:nodes');
    expect(peer.subjectaltname?.split(', ').sort()).toEqual([`DNS:${nodeName}`, 'IP Address:127.0.0.1']);
    // The request was the node's own, approved by spillway.
    const csrs = await cluster.kc
      .makeApiClient(CertificatesV1Api)
      .listCertificateSigningRequest({ fieldSelector: `spec.signerName=${KUBELET_SERVING_SIGNER}` });
    const ours = csrs.items.filter((c) => c.spec.username === `system:node:${nodeName}`);
    expect(ours.map((c) => c.status?.conditions?.map((k) => [k.type, k.reason]))).toContainEqual([
      ['Approved', 'SpillwayVirtualNode'],
    ]);
  });

  it('denies the node a certificate for a name it does not have', async () => {
    const asNode = vn.identity.kc.makeApiClient(CertificatesV1Api);
    const { requestPem } = await nodeServingRequest(nodeName, {
      dnsNames: [nodeName, 'kubernetes.default.svc'],
      ipAddresses: ['127.0.0.1'],
    });
    const created = await asNode.createCertificateSigningRequest({
      body: {
        metadata: { generateName: 'node-serving-test-' },
        spec: {
          request: Buffer.from(requestPem).toString('base64'),
          signerName: KUBELET_SERVING_SIGNER,
          usages: ['digital signature', 'server auth'],
        },
      },
    });
    const name = created.metadata!.name!;
    const admins = cluster.kc.makeApiClient(CertificatesV1Api);
    await waitFor(`${name} decided`, 30_000, async () => {
      const csr = await admins.readCertificateSigningRequest({ name });
      return (csr.status?.conditions?.length ?? 0) > 0;
    });
    const csr = await admins.readCertificateSigningRequest({ name });
    expect(csr.status?.conditions?.map((c) => [c.type, c.reason])).toEqual([['Denied', 'UnexpectedNames']]);
    expect(csr.status?.conditions?.[0]?.message).toContain('kubernetes.default.svc');
    expect(csr.status?.certificate).toBeFalsy();
  });

  it('swaps a renewed certificate in: new connections get it', async () => {
    const before = (await presented(port, clusterCA)).peer.serialNumber;
    const changed = new Promise((resolve) => vn.servingCertificate.onChange(resolve));
    // What the renewal timer does at 70–90 % of the lifetime, now.
    await vn.servingCertificate.renew();
    await changed;
    const after = await presented(port, clusterCA);
    expect(after.authorized).toBe(true);
    expect(after.peer.serialNumber).not.toBe(before);
  });
});
