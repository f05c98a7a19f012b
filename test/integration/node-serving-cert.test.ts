/**
 * The virtual node's kubelet API as metrics-server sees it: the node asks, as `system:node:<name>`, for a
 * `kubernetes.io/kubelet-serving` certificate naming itself and its InternalIP; spillway's approver approves it,
 * kube-controller-manager signs it, and the kubelet API serves it, so a client that trusts only the cluster CA
 * (metrics-server's `--kubelet-certificate-authority`) verifies the node. A request for a name the node does not
 * have is denied.
 */
import { readFileSync } from 'node:fs';
import { connect, type PeerCertificate } from 'node:tls';
import {
  CertificatesV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCsrApprover } from '../../operator/nodeidentity/approver.ts';
import { KUBELET_SERVING_SIGNER, nodeServingRequest } from '../../operator/nodeidentity/serving-csr.ts';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-serving';
/** A node spillway does not manage: nobody approves its serving certificate until an administrator does. */
const unapprovedNode = 'spillway-virtual-unapproved';

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
  const roles: string[] = [];
  const started: RunningVirtualNode[] = [];

  /**
   * A bootstrap identity as the chart grants it (test/integration/node-identity.test.ts does the same): ask for
   * certificates, read the cluster's client CA and the Events its node recorded; plus `extra` rules.
   */
  const bootstrapIdentity = async (sa: string, extra: V1PolicyRule[] = []) => {
    const role = `${clusterRole}-${sa}`;
    roles.push(role);
    await admin.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: sa } } });
    const subject = { kind: 'ServiceAccount', name: sa, namespace: ns.name };
    await rbac.createClusterRole({
      body: {
        metadata: { name: role },
        rules: [
          {
            apiGroups: ['certificates.k8s.io'],
            resources: ['certificatesigningrequests'],
            verbs: ['create', 'get'],
          },
          { apiGroups: [''], resources: ['events'], verbs: ['list'] },
          ...extra,
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: role },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [subject],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: 'kube-system',
      body: {
        metadata: { name: role },
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
      name: sa,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const server = cluster.kc.getCurrentCluster()!;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [server],
      users: [{ name: sa, token: token.status!.token }],
      contexts: [{ name: sa, cluster: server.name, user: sa }],
      currentContext: sa,
    });
    return { kc, user: `system:serviceaccount:${ns.name}:${sa}` };
  };

  beforeAll(async () => {
    cluster = await testCluster();
    admin = cluster.kc.makeApiClient(CoreV1Api);
    rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    const server = cluster.kc.getCurrentCluster()!;
    clusterCA = server.caData
      ? Buffer.from(server.caData, 'base64').toString()
      : readFileSync(server.caFile!, 'utf8');
    ns = await createTestNamespace(cluster.kc, 'node-serving');
    const bootstrap = await bootstrapIdentity('vn');
    approver = new NodeCsrApprover({
      kc: cluster.kc,
      policy: { isManagedNode: (n) => n === nodeName, bootstrapUsers: [bootstrap.user] },
    });
    await approver.start();
    port = await freePort();
    vn = await startVirtualNode({
      kc: bootstrap.kc,
      provider: new FakeProvider(),
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: port },
    });
    started.push(vn);
  });
  afterAll(async () => {
    for (const node of started) await node.stop();
    await approver?.stop();
    await ns?.remove();
    for (const name of [nodeName, unapprovedNode]) await admin?.deleteNode({ name }).catch(() => undefined);
    for (const role of roles) {
      await rbac?.deleteClusterRoleBinding({ name: role }).catch(() => undefined);
      await rbac?.deleteClusterRole({ name: role }).catch(() => undefined);
      await rbac
        ?.deleteNamespacedRoleBinding({ name: role, namespace: 'kube-system' })
        .catch(() => undefined);
    }
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

  it('serves a self-signed certificate where nobody approves, and the issued one once an administrator does', async () => {
    // Its client certificate comes from kube-controller-manager's own approver (the nodeclient permission),
    // as on a cluster without spillway's controller.
    const bootstrap = await bootstrapIdentity('vn-unmanaged', [
      {
        apiGroups: ['certificates.k8s.io'],
        resources: ['certificatesigningrequests/nodeclient'],
        verbs: ['create'],
      },
    ]);
    const unmanagedPort = await freePort();
    const unmanaged = await startVirtualNode({
      kc: bootstrap.kc,
      provider: new FakeProvider(),
      config: { name: unapprovedNode, internalIP: '127.0.0.1', kubeletPort: unmanagedPort },
      servingCertificate: { waitMs: 1000 },
    });
    started.push(unmanaged);
    expect(unmanaged.servingCertificate.current.issued).toBe(false);
    const selfSigned = await presented(unmanagedPort, clusterCA);
    expect(selfSigned.authorized).toBe(false);
    expect(selfSigned.peer.issuer.CN).toBe(`${unapprovedNode}-kubelet-ca`);

    // spillway's approver left it alone (not its node): it is pending, and an administrator approves it.
    const admins = cluster.kc.makeApiClient(CertificatesV1Api);
    const pending = (
      await admins.listCertificateSigningRequest({
        fieldSelector: `spec.signerName=${KUBELET_SERVING_SIGNER}`,
      })
    ).items.filter((c) => c.spec.username === `system:node:${unapprovedNode}`);
    expect(pending.map((c) => c.status?.conditions ?? [])).toEqual([[]]);
    const csr = pending[0]!;
    await admins.replaceCertificateSigningRequestApproval({
      name: csr.metadata!.name!,
      body: {
        ...csr,
        status: {
          conditions: [
            { type: 'Approved', status: 'True', reason: 'Test', message: 'kubectl certificate approve' },
          ],
        },
      },
    });
    await waitFor('the issued certificate served', 30_000, async () => {
      const { authorized } = await presented(unmanagedPort, clusterCA);
      return authorized;
    });
    expect(unmanaged.servingCertificate.current.issued).toBe(true);
    expect((await presented(unmanagedPort, clusterCA)).peer.subject.CN).toBe(`system:node:${unapprovedNode}`);
  });
});
