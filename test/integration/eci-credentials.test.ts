/**
 * What an ECI instance carries from the cluster, on the local control plane with the fake ECI endpoint: the
 * kube-proxy sidecar's token, minted by the virtual node for a read-only ServiceAccount and bound to the Node
 * (checked against the real apiserver: it may read Services, not Secrets, and dies with the Node), and a
 * ConfigMap change written into the running instance by the volume refresh.
 */
import {
  AppsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EciProvider } from '../../operator/providers/eci/provider.ts';
import { clusterCA } from '../../operator/virtualnode/sidecar-credentials.ts';
import { startVirtualNode, type RunningVirtualNode } from '../../operator/virtualnode/run.ts';
import { groupFiles, type FakeGroup } from '../support/fake-eci/groups.ts';
import { fakeEciConfig } from '../support/fake-eci/provider-config.ts';
import { FakeEci } from '../support/fake-eci/server.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const nodeName = 'spillway-virtual-eci-kp';
const saName = 'spillway-kube-proxy';

describe('what an ECI instance carries from the cluster', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let fake: FakeEci;
  let provider: EciProvider;
  let vn: RunningVirtualNode;
  let core: CoreV1Api;
  let rbac: RbacAuthorizationV1Api;
  let pod: V1Pod;
  let group: FakeGroup;
  const roleName = () => `${ns.name}-kube-proxy`;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    ns = await createTestNamespace(cluster.kc, 'eci-kp');
    // What the chart creates with providers.eci.kubeProxy.enabled (charts/spillway/templates/kube-proxy-rbac.yaml).
    await core.createNamespacedServiceAccount({
      namespace: ns.name,
      body: { metadata: { name: saName }, automountServiceAccountToken: false },
    });
    await rbac.createClusterRole({
      body: {
        metadata: { name: roleName() },
        rules: [
          { apiGroups: [''], resources: ['services', 'nodes'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: ['networking.k8s.io'], resources: ['servicecidrs'], verbs: ['list', 'watch'] },
          { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: roleName() },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName() },
        subjects: [{ kind: 'ServiceAccount', name: saName, namespace: ns.name }],
      },
    });
    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: {
        metadata: { name: 'app-config' },
        data: { 'app.conf': 'color=blue\n' },
        binaryData: { 'logo.png': Buffer.from([0x89, 0x50, 0x4e, 0x47]).toString('base64') },
      },
    });

    fake = await FakeEci.start({ timings: { schedulingMs: 50, pendingMs: 50 } });
    provider = new EciProvider({
      config: fakeEciConfig(fake, {
        nodeName,
        clusterId: 'spillway-test',
        kubeProxy: {
          enabled: true,
          serviceAccount: { namespace: ns.name, name: saName },
          apiServer: cluster.kc.getCurrentCluster()!.server,
          tokenExpirationSeconds: 3600,
        },
      }),
    });
    vn = await startVirtualNode({
      kc: cluster.kc,
      provider,
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: await freePort() },
    });

    await cluster.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              nodeSelector: { 'kubernetes.io/hostname': nodeName },
              tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
              containers: [
                {
                  name: 'app',
                  image: 'nginx:1.27',
                  volumeMounts: [{ name: 'cfg', mountPath: '/etc/app' }],
                },
              ],
              volumes: [{ name: 'cfg', configMap: { name: 'app-config' } }],
            },
          },
        },
      },
    });
    await waitFor('the pod Running on the ECI node', 60_000, async () => {
      const [p] = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' })).items;
      if (p?.status?.phase === 'Running') pod = p;
      return p?.status?.phase === 'Running';
    });
    group = fake.groupByUid(pod.metadata!.uid!)!;
  });
  afterAll(async () => {
    await vn?.stop().catch(() => undefined);
    await provider?.close();
    await fake?.close();
    await ns?.remove();
    await rbac?.deleteClusterRoleBinding({ name: roleName() }).catch(() => undefined);
    await rbac?.deleteClusterRole({ name: roleName() }).catch(() => undefined);
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
  });

  /** A client that authenticates with `token` the way the sidecar's kubeconfig does. */
  const asSidecar = (token: string) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'c',
          server: cluster.kc.getCurrentCluster()!.server,
          caData: Buffer.from(clusterCA(cluster.kc)).toString('base64'),
        },
      ],
      users: [{ name: 'kube-proxy', token }],
      contexts: [{ name: 'c', cluster: 'c', user: 'kube-proxy' }],
      currentContext: 'c',
    });
    return kc.makeApiClient(CoreV1Api);
  };

  it('gives the sidecar a token of the read-only ServiceAccount, bound to the Node', async () => {
    const files = groupFiles(group, 'spillway-kube-proxy');
    const kubeconfig = parse(files.kubeconfig!) as {
      clusters: { cluster: { server: string } }[];
      users: { user: { tokenFile: string } }[];
    };
    expect(kubeconfig.clusters[0]!.cluster.server).toBe(cluster.kc.getCurrentCluster()!.server);
    expect(kubeconfig.users[0]!.user.tokenFile).toBe('/var/lib/spillway-kube-proxy/token');
    expect(files['ca.crt']).toBe(clusterCA(cluster.kc));

    const review = await cluster.kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { spec: { token: files.token! } },
    });
    expect(review.status?.authenticated).toBe(true);
    expect(review.status?.user?.username).toBe(`system:serviceaccount:${ns.name}:${saName}`);
    expect(review.status?.user?.extra?.['authentication.kubernetes.io/node-name']).toEqual([nodeName]);

    const sidecar = asSidecar(files.token!);
    const services = await sidecar.listServiceForAllNamespaces();
    expect(services.items.some((s) => s.metadata?.name === 'kubernetes')).toBe(true);
    await expect(sidecar.listSecretForAllNamespaces()).rejects.toMatchObject({ code: 403 });
    await expect(
      sidecar.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'x' } } }),
    ).rejects.toMatchObject({ code: 403 });
  });

  it('does not rewrite the instance for a renewal while its token is fresh', async () => {
    const before = vn.sidecarCredentials!.expiresAt;
    await vn.sidecarCredentials!.renew();
    expect(vn.sidecarCredentials!.expiresAt.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect(group.updates).toHaveLength(0);
  });

  it('writes a ConfigMap (data and binaryData) into the instance, and its change at the next refresh', async () => {
    const volume = (group.request.Volume as { Name: string; ConfigFileVolume?: unknown }[]).find(
      (v) => v.Name === 'cfg',
    ) as { ConfigFileVolume: { ConfigFileToPath: { Path: string; Content: string }[] } };
    const logo = volume.ConfigFileVolume.ConfigFileToPath.find((f) => f.Path === 'logo.png');
    expect(Buffer.from(logo!.Content, 'base64')).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    expect(groupFiles(group, 'cfg')['app.conf']).toBe('color=blue\n');

    await core.replaceNamespacedConfigMap({
      namespace: ns.name,
      name: 'app-config',
      body: { metadata: { name: 'app-config' }, data: { 'app.conf': 'color=green\n' } },
    });
    await waitFor('the new content in the instance', 30_000, async () => {
      await vn.pods.refreshVolumes();
      return groupFiles(group, 'cfg')['app.conf'] === 'color=green\n';
    });
    expect(group.updates).toHaveLength(1);
    expect(group.status).not.toBe('Failed');
  });

  it('the sidecar token stops working once its Node is gone', async () => {
    const token = groupFiles(group, 'spillway-kube-proxy').token!;
    await vn.stop();
    await core.deleteNode({ name: nodeName });
    await waitFor('the Node-bound token rejected', 30_000, async () => {
      try {
        await asSidecar(token).listServiceForAllNamespaces();
        return false;
      } catch (err) {
        return (err as { code?: number }).code === 401;
      }
    });
  });
});
