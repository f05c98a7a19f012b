/**
 * The Helm chart (charts/spillway) against the local control plane: lint and schema; every ci/ values file
 * rendered and accepted by the real apiserver (server-side dry run, Pod Security "restricted"); the chart's CRD
 * and webhook configurations equal to what the code generates; then an install with the operator running
 * outside the cluster AS THE CHART'S ServiceAccounts and reached through the chart's own webhook configurations,
 * a burst onto the chart's virtual node, `helm test`, `helm upgrade` and a clean `helm uninstall`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AuthorizationV1Api,
  ApiextensionsV1Api,
  CoreV1Api,
  CoordinationV1Api,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1ConfigMap,
  type V1Container,
  type V1Deployment,
  type V1Pod,
  type V1PodTemplateSpec,
  type V1Role,
  type V1RoleBinding,
  type V1Secret,
  type V1Service,
  type V1ServiceAccount,
} from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elasticWorkloadCrd } from '../../operator/elasticworkload/crd.ts';
import { OPERATOR_REPOSITORY } from '../../hack/build-images.ts';
import { DEFAULT_REGISTRY, imageRef } from '../../hack/images/catalog.ts';
import { createProvider } from '../../operator/providers/index.ts';
import { parseLocalConfig } from '../../operator/providers/local/factory.ts';
import {
  mutatingWebhookConfiguration,
  validatingWebhookConfiguration,
} from '../../webhooks/configurations.ts';
import { repoRoot, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import {
  addHostAddress,
  chartArgs,
  chartDir,
  containerOf,
  findObject,
  helm,
  kubeVersion,
  parseManifests,
  renderChart,
  scratchDir,
  serviceAccountKubeconfig,
  startOperator,
  type HostAddress,
  type KubeObject,
  type OperatorProcess,
} from '../support/chart.ts';
import { installThirdPartyCrdStubs } from '../support/chart-stubs.ts';
import { FakeEci } from '../support/fake-eci/server.ts';
import { kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';

const CRD_NAME = 'elasticworkloads.elastic.spillway.dev';
const ciValues = readdirSync(join(chartDir, 'ci')).filter((f) => f.endsWith('.yaml'));
const restricted = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/enforce-version': 'latest',
};

/** The rendered object without what Helm and the chart add to metadata. */
function withoutChartMetadata(o: KubeObject): KubeObject {
  const { labels = {}, annotations = {}, ...meta } = o.metadata;
  const keep = (m: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(m).filter(
        ([k]) =>
          !k.startsWith('app.kubernetes.io/') &&
          !k.startsWith('helm.sh/') &&
          k !== 'cert-manager.io/inject-ca-from',
      ),
    );
  const l = keep(labels);
  const a = keep(annotations);
  return {
    ...o,
    metadata: {
      ...meta,
      ...(Object.keys(l).length ? { labels: l } : {}),
      ...(Object.keys(a).length ? { annotations: a } : {}),
    },
  };
}

/** The HTTP status of an HTTPS GET that verifies the server against `ca` for `servername`. */
function httpsStatus(o: {
  host: string;
  port: number;
  path: string;
  servername: string;
  ca: Buffer;
}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ ...o, method: 'GET', timeout: 10_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * `kubectl auth can-i <verb> <resource> --all-namespaces` as `user`, against the real authorizer: true on "yes",
 * false on "no" (kubectl exits 1), throws on anything else.
 */
async function canI(kubeconfig: string, user: string, verb: string, resource: string): Promise<boolean> {
  try {
    const out = await kubectl(
      kubeconfig,
      'auth',
      'can-i',
      verb,
      resource,
      '--all-namespaces',
      `--as=${user}`,
    );
    return out.trim() === 'yes';
  } catch (err) {
    const out = ((err as Error).cause as { stdout?: string } | undefined)?.stdout?.trim();
    if (out?.startsWith('no')) return false;
    throw err;
  }
}

/**
 * {@link canI} for one namespace (or every one: undefined) with more arguments, e.g. a resource name
 * (`serviceaccounts/x`) and `--subresource=token`.
 */
async function canIOn(
  kubeconfig: string,
  user: string,
  verb: string,
  resource: string,
  namespace: string | undefined,
  ...more: string[]
): Promise<boolean> {
  try {
    const where = namespace ? ['-n', namespace] : ['--all-namespaces'];
    const out = await kubectl(kubeconfig, 'auth', 'can-i', verb, resource, ...where, ...more, `--as=${user}`);
    return out.trim() === 'yes';
  } catch (err) {
    const out = ((err as Error).cause as { stdout?: string } | undefined)?.stdout?.trim();
    if (out?.startsWith('no')) return false;
    throw err;
  }
}

/** The parsed provider.yaml of a rendered virtual node ConfigMap. */
function providerConfig(objects: KubeObject[], workload: string): Record<string, unknown> {
  const cm = findObject<V1ConfigMap>(objects, 'ConfigMap', workload);
  return parse(cm.data!['provider.yaml']!) as Record<string, unknown>;
}

/** The Roles and RoleBindings rendered into `namespace`. */
function rbacIn(objects: KubeObject[], namespace: string): KubeObject[] {
  return objects.filter(
    (o) => o.metadata.namespace === namespace && (o.kind === 'Role' || o.kind === 'RoleBinding'),
  );
}

/** The RBAC rules the kube-proxy sidecar's ClusterRole must hold: what kube-proxy watches, and its events. */
const kubeProxyRules = [
  { apiGroups: [''], resources: ['services', 'nodes'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['networking.k8s.io'], resources: ['servicecidrs'], verbs: ['list', 'watch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];

describe('the chart, rendered', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let removeStubs: () => Promise<void>;

  beforeAll(async () => {
    cluster = await testCluster();
    ns = await createTestNamespace(cluster.kc, 'chart-dry', restricted);
    removeStubs = await installThirdPartyCrdStubs(cluster.kc);
  });
  afterAll(async () => {
    await ns?.remove();
    await removeStubs?.();
  });

  it('passes helm lint --strict with the defaults and with every ci/ values file', async () => {
    for (const values of [undefined, ...ciValues]) {
      const out = await helm(
        cluster.kubeconfigPath,
        'lint',
        chartDir,
        '--strict',
        '--kube-version',
        kubeVersion,
        ...(values ? ['-f', join(chartDir, 'ci', values)] : []),
      );
      expect(out, values).toContain('0 chart(s) failed');
      expect(out, values).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it.each([
    ['a misspelt top-level key', ['--set', 'controler.replicas=3'], 'controler'],
    ['a misspelt nested key', ['--set', 'controller.replica=3'], 'replica'],
    [
      'an unknown key in a virtual node',
      ['--set', 'virtualNodes[0].name=x,virtualNodes[0].provider=fake,virtualNodes[0].cpu=4'],
      'cpu',
    ],
    ['an unknown provider', ['--set', 'virtualNodes[0].name=x,virtualNodes[0].provider=aws'], 'provider'],
    [
      'an eci node without its region',
      ['--set', 'virtualNodes[0].name=x,virtualNodes[0].provider=eci'],
      'regionId',
    ],
    [
      'two virtual nodes with one name',
      [
        '--set',
        'virtualNodes[0].name=x,virtualNodes[0].provider=fake,virtualNodes[1].name=x,virtualNodes[1].provider=fake',
      ],
      'used twice',
    ],
  ])('refuses %s', async (_, args, mentioned) => {
    await expect(renderChart(cluster.kubeconfigPath, 'spillway', ns.name, ...args)).rejects.toThrow(
      mentioned,
    );
  });

  it('templates the CRD generated from the code, kept on uninstall', async () => {
    // The chart's copy is byte-for-byte the generated file (make crds writes both).
    expect(
      readFileSync(join(chartDir, 'files/crds/elastic.spillway.dev_elasticworkloads.yaml'), 'utf8'),
    ).toBe(
      readFileSync(join(repoRoot, 'crds/elasticworkload/elastic.spillway.dev_elasticworkloads.yaml'), 'utf8'),
    );
    const objects = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name);
    const crd = findObject(objects, 'CustomResourceDefinition', CRD_NAME);
    expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(withoutChartMetadata(crd)).toEqual(
      withoutChartMetadata(elasticWorkloadCrd() as unknown as KubeObject),
    );

    const unmanaged = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '--set',
      'crds.install=false',
    );
    expect(unmanaged.some((o) => o.kind === 'CustomResourceDefinition')).toBe(false);
  });

  it('ships the webhook configurations the code builds (CEL, failure policies, namespaces)', async () => {
    const objects = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name);
    const options = {
      client: { service: { name: 'spillway-webhook', namespace: ns.name } },
      ownNamespace: ns.name,
    };
    expect(withoutChartMetadata(findObject(objects, 'MutatingWebhookConfiguration', 'spillway'))).toEqual(
      withoutChartMetadata(mutatingWebhookConfiguration(options) as unknown as KubeObject),
    );
    expect(withoutChartMetadata(findObject(objects, 'ValidatingWebhookConfiguration', 'spillway'))).toEqual(
      withoutChartMetadata(validatingWebhookConfiguration(options) as unknown as KubeObject),
    );
  });

  it.each(ciValues)(
    'renders ci/%s into objects the apiserver accepts (server-side dry run)',
    async (values) => {
      const objects = await renderChart(
        cluster.kubeconfigPath,
        'spillway',
        ns.name,
        '-f',
        join(chartDir, 'ci', values),
      );
      const dir = scratchDir('chart-dry');
      const file = join(dir, 'rendered.yaml');
      writeFileSync(file, objects.map((o) => stringify(o)).join('---\n'));
      const out = await kubectl(cluster.kubeconfigPath, 'apply', '--dry-run=server', '-f', file);
      expect(out.trim().split('\n')).toHaveLength(objects.length);

      // Every pod the chart creates passes Pod Security "restricted" (the namespace enforces it).
      const templates = objects.flatMap((o) =>
        o.kind === 'Deployment' || o.kind === 'Job'
          ? [
              {
                name: o.metadata.name,
                template: (o as unknown as { spec: { template: V1Pod } }).spec.template,
              },
            ]
          : [],
      );
      expect(templates.length).toBeGreaterThan(1);
      for (const { name, template } of templates) {
        // serviceAccountName: default, since the chart's ServiceAccounts exist only in the dry run above.
        const spec = { ...template.spec, serviceAccountName: 'default' };
        const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns.name }, spec };
        const podFile = join(dir, `${name}.json`);
        writeFileSync(podFile, JSON.stringify(pod));
        await kubectl(cluster.kubeconfigPath, 'create', '--dry-run=server', '-f', podFile);
      }
    },
  );

  it('gives the ECI kube-proxy sidecar a read-only ServiceAccount and names it in provider.yaml', async () => {
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '-f',
      join(chartDir, 'ci', 'eci-kube-proxy-values.yaml'),
    );
    const sa = findObject<V1ServiceAccount>(objects, 'ServiceAccount', 'spillway-kube-proxy');
    expect(sa.metadata?.namespace).toBe(ns.name);
    expect(sa.automountServiceAccountToken).toBe(false);

    const role = findObject<V1ClusterRole>(objects, 'ClusterRole', 'spillway-kube-proxy');
    expect(role.rules).toEqual(kubeProxyRules);
    // Read-only but for its own events: no Secret, no Pod, no write on anything else.
    for (const rule of role.rules!) {
      expect(rule.resources).not.toContain('secrets');
      expect(rule.resources).not.toContain('pods');
      const writes = rule.verbs.filter((v) => !['get', 'list', 'watch'].includes(v));
      if (writes.length) {
        expect(rule).toMatchObject({ apiGroups: ['events.k8s.io'], resources: ['events'] });
        expect(writes).toEqual(['create', 'patch']);
      }
    }
    const binding = findObject<V1ClusterRoleBinding>(objects, 'ClusterRoleBinding', 'spillway-kube-proxy');
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'spillway-kube-proxy',
    });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'spillway-kube-proxy', namespace: ns.name },
    ]);

    // The virtual node mints tokens for exactly that ServiceAccount.
    expect(providerConfig(objects, 'spillway-vn-eci').kubeProxy).toEqual({
      enabled: true,
      image: 'registry.k8s.io/kube-proxy:v1.36.3',
      serviceAccount: { namespace: sa.metadata!.namespace, name: sa.metadata!.name },
      clusterCIDR: '172.20.0.0/16',
      tokenExpirationSeconds: 3600,
    });
    // ...and the operator reads the rendered file that way (the CLI's path, credentials from a Secret's env).
    const file = join(scratchDir('chart-provider'), 'provider.yaml');
    writeFileSync(file, stringify(providerConfig(objects, 'spillway-vn-eci')));
    const provider = await createProvider('eci', {
      nodeName: 'spillway-vn-eci',
      configFile: file,
      env: { ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI-test', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'test-secret' },
    });
    expect(provider.sidecarIdentity?.()).toEqual({
      namespace: ns.name,
      name: 'spillway-kube-proxy',
      expirationSeconds: 3600,
    });
    await provider.close();
    // No apiServer URL: the virtual node may read the apiserver's addresses, from one EndpointSlice only.
    const endpoints = findObject<V1Role>(rbacIn(objects, 'default'), 'Role', 'spillway-virtual-node');
    expect(endpoints.rules).toEqual([
      {
        apiGroups: ['discovery.k8s.io'],
        resources: ['endpointslices'],
        resourceNames: ['kubernetes'],
        verbs: ['get'],
      },
    ]);
    const endpointsBinding = findObject<V1RoleBinding>(
      rbacIn(objects, 'default'),
      'RoleBinding',
      'spillway-virtual-node',
    );
    expect(endpointsBinding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'spillway-virtual-node', namespace: ns.name },
    ]);
  });

  it('passes an apiServer URL through and then grants no read in the default namespace', async () => {
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '-f',
      join(chartDir, 'ci', 'eci-kube-proxy-values.yaml'),
      '--set',
      'providers.eci.kubeProxy.apiServer=https://10.0.0.10:6443',
    );
    expect(providerConfig(objects, 'spillway-vn-eci').kubeProxy).toMatchObject({
      apiServer: 'https://10.0.0.10:6443',
    });
    expect(rbacIn(objects, 'default')).toEqual([]);
    await expect(
      renderChart(
        cluster.kubeconfigPath,
        'spillway',
        ns.name,
        '-f',
        join(chartDir, 'ci', 'eci-kube-proxy-values.yaml'),
        '--set',
        'providers.eci.kubeProxy.apiServer=http://10.0.0.10:6443',
      ),
    ).rejects.toThrow('apiServer');
  });

  it('renders no kube-proxy identity and no kubeProxy provider key while the sidecar is off', async () => {
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '-f',
      join(chartDir, 'ci', 'eci-rrsa-values.yaml'),
    );
    expect(objects.filter((o) => o.metadata.name === 'spillway-kube-proxy')).toEqual([]);
    expect(rbacIn(objects, 'default')).toEqual([]);
    for (const workload of ['spillway-vn-eci-spot', 'spillway-vn-eci-on-demand']) {
      expect(providerConfig(objects, workload)).not.toHaveProperty('kubeProxy');
    }
    // On, but no virtual node uses eci: nothing to mint tokens for.
    const fakeOnly = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '-f',
      join(chartDir, 'ci', 'fake-node-values.yaml'),
      '--set',
      'providers.eci.kubeProxy.enabled=true',
    );
    expect(fakeOnly.filter((o) => o.metadata.name === 'spillway-kube-proxy')).toEqual([]);
  });

  describe('the kube-proxy ServiceAccount, applied to the apiserver', () => {
    let kp: { name: string; remove: () => Promise<void> };
    let user: string;

    beforeAll(async () => {
      kp = await createTestNamespace(cluster.kc, 'chart-kube-proxy');
      // The release is the namespace: its name is unique. (The chart's cluster-scoped names are fixed.)
      const objects = await renderChart(
        cluster.kubeconfigPath,
        kp.name,
        kp.name,
        '-f',
        join(chartDir, 'ci', 'eci-kube-proxy-values.yaml'),
      );
      const identity = objects.filter(
        (o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'kube-proxy',
      );
      expect(identity.map((o) => o.kind).sort()).toEqual([
        'ClusterRole',
        'ClusterRoleBinding',
        'Role',
        'RoleBinding',
        'ServiceAccount',
      ]);
      const file = join(scratchDir('chart-kube-proxy'), 'kube-proxy.yaml');
      writeFileSync(file, identity.map((o) => stringify(o)).join('---\n'));
      await kubectl(cluster.kubeconfigPath, 'apply', '-f', file);
      user = `system:serviceaccount:${kp.name}:spillway-kube-proxy`;
    });
    afterAll(async () => {
      const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
      await rbac.deleteClusterRoleBinding({ name: 'spillway-kube-proxy' }).catch(() => undefined);
      await rbac.deleteClusterRole({ name: 'spillway-kube-proxy' }).catch(() => undefined);
      await kp?.remove();
    });

    it.each([
      ['list', 'services', true],
      ['watch', 'endpointslices.discovery.k8s.io', true],
      ['list', 'nodes', true],
      ['watch', 'servicecidrs.networking.k8s.io', true],
      ['create', 'events.events.k8s.io', true],
      ['get', 'secrets', false],
      ['create', 'pods', false],
      ['update', 'services', false],
      ['delete', 'endpointslices.discovery.k8s.io', false],
      ['create', 'serviceaccounts/token', false],
    ])('may %s %s: %s', async (verb, resource, allowed) => {
      expect(await canI(cluster.kubeconfigPath, user, verb, resource)).toBe(allowed);
    });

    it('lets the virtual nodes’ ServiceAccount mint its tokens and no other ServiceAccount’s', async () => {
      const vn = `system:serviceaccount:${kp.name}:spillway-virtual-node`;
      const can = (sa: string, namespace = kp.name) =>
        canIOn(
          cluster.kubeconfigPath,
          vn,
          'create',
          `serviceaccounts/${sa}`,
          namespace,
          '--subresource=token',
        );
      expect(await can('spillway-kube-proxy')).toBe(true);
      expect(await can('default')).toBe(false);
      expect(await can('spillway-kube-proxy', 'default')).toBe(false);
    });
  });

  describe('the virtual node ServiceAccount, applied to the apiserver', () => {
    let vnNs: { name: string; remove: () => Promise<void> };
    let user: string;
    let controller: string;
    let applied: KubeObject[];

    beforeAll(async () => {
      vnNs = await createTestNamespace(cluster.kc, 'chart-vn-rbac');
      const objects = await renderChart(
        cluster.kubeconfigPath,
        vnNs.name,
        vnNs.name,
        '-f',
        join(chartDir, 'ci', 'fake-node-values.yaml'),
      );
      // Its identity, and the controller's approver of its certificates.
      applied = objects.filter(
        (o) =>
          (o.metadata.labels?.['app.kubernetes.io/component'] === 'virtual-node' &&
            ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(
              o.kind,
            )) ||
          o.metadata.name === 'spillway-controller-csr-approver',
      );
      const file = join(scratchDir('chart-vn-rbac'), 'virtual-node-rbac.yaml');
      writeFileSync(file, applied.map((o) => stringify(o)).join('---\n'));
      await kubectl(cluster.kubeconfigPath, 'apply', '-f', file);
      user = `system:serviceaccount:${vnNs.name}:spillway-virtual-node`;
      controller = `system:serviceaccount:${vnNs.name}:spillway-controller`;
    });
    afterAll(async () => {
      const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
      for (const name of ['spillway-virtual-node', 'spillway-controller-csr-approver']) {
        await rbac.deleteClusterRoleBinding({ name }).catch(() => undefined);
        await rbac.deleteClusterRole({ name }).catch(() => undefined);
      }
      await rbac
        .deleteNamespacedRoleBinding({ name: 'spillway-virtual-node', namespace: 'kube-system' })
        .catch(() => undefined);
      await rbac
        .deleteNamespacedRole({ name: 'spillway-virtual-node', namespace: 'kube-system' })
        .catch(() => undefined);
      await vnNs?.remove();
    });

    it('holds no node rights: the node identity (Node authorizer, NodeRestriction) carries those', () => {
      expect(findObject<V1ClusterRole>(applied, 'ClusterRole', 'spillway-virtual-node').rules).toEqual([
        {
          apiGroups: ['certificates.k8s.io'],
          resources: ['certificatesigningrequests'],
          verbs: ['create', 'get'],
        },
        { apiGroups: [''], resources: ['events'], verbs: ['list'] },
      ]);
      const roles = applied.filter((o) => o.kind === 'Role') as unknown as V1Role[];
      expect(roles.map((r) => [r.metadata?.namespace, r.rules])).toEqual([
        [
          'kube-system',
          [
            {
              apiGroups: [''],
              resources: ['configmaps'],
              resourceNames: ['extension-apiserver-authentication'],
              verbs: ['get'],
            },
          ],
        ],
      ]);
      expect(
        findObject<V1ClusterRole>(applied, 'ClusterRole', 'spillway-controller-csr-approver').rules,
      ).toEqual([
        {
          apiGroups: ['certificates.k8s.io'],
          resources: ['certificatesigningrequests'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['certificates.k8s.io'],
          resources: ['certificatesigningrequests/approval'],
          verbs: ['update'],
        },
        {
          apiGroups: ['certificates.k8s.io'],
          resources: ['signers'],
          resourceNames: ['kubernetes.io/kube-apiserver-client-kubelet', 'kubernetes.io/kubelet-serving'],
          verbs: ['approve'],
        },
      ]);
    });

    it.each([
      ['create', 'certificatesigningrequests.certificates.k8s.io', true],
      ['get', 'certificatesigningrequests.certificates.k8s.io', true],
      ['list', 'events', true],
      ['get', 'secrets', false],
      ['list', 'secrets', false],
      ['get', 'configmaps', false],
      ['create', 'serviceaccounts', false, 'token'],
      ['patch', 'pods', false, 'status'],
      ['update', 'certificatesigningrequests.certificates.k8s.io', false, 'approval'],
      ['delete', 'pods', false],
      ['create', 'pods', false, 'eviction'],
      ['list', 'pods', false],
      ['create', 'nodes', false],
      ['patch', 'nodes', false],
      ['patch', 'nodes', false, 'status'],
      ['patch', 'leases.coordination.k8s.io', false],
      ['create', 'events.events.k8s.io', false],
      ['create', 'tokenreviews.authentication.k8s.io', false],
    ] as [string, string, boolean, string?][])(
      'the virtual node ServiceAccount may %s %s cluster-wide: %s (subresource %s)',
      async (verb, resource, allowed, subresource) => {
        const more = subresource ? [`--subresource=${subresource}`] : [];
        expect(await canIOn(cluster.kubeconfigPath, user, verb, resource, undefined, ...more)).toBe(allowed);
      },
    );

    it('reads exactly one ConfigMap in kube-system: the client CA', async () => {
      const can = (resource: string) => canIOn(cluster.kubeconfigPath, user, 'get', resource, 'kube-system');
      expect(await can('configmap/extension-apiserver-authentication')).toBe(true);
      expect(await can('configmap/kube-proxy')).toBe(false);
      expect(await can('secrets')).toBe(false);
    });

    it('lets the controller approve kubelet client and serving certificates and no other signer’s', async () => {
      const can = (verb: string, resource: string, ...more: string[]) =>
        canIOn(cluster.kubeconfigPath, controller, verb, resource, undefined, ...more);
      expect(
        await can('update', 'certificatesigningrequests.certificates.k8s.io', '--subresource=approval'),
      ).toBe(true);
      // Signers are no API resource kubectl can name: ask the authorizer directly.
      const authz = cluster.kc.makeApiClient(AuthorizationV1Api);
      const approve = async (signer: string) =>
        (
          await authz.createSubjectAccessReview({
            body: {
              spec: {
                user: controller,
                groups: ['system:serviceaccounts', 'system:authenticated'],
                resourceAttributes: {
                  group: 'certificates.k8s.io',
                  resource: 'signers',
                  name: `kubernetes.io/${signer}`,
                  verb: 'approve',
                },
              },
            },
          })
        ).status?.allowed;
      expect(await approve('kube-apiserver-client-kubelet')).toBe(true);
      // The virtual nodes' kubelet serving certificates (operator/nodeidentity/approver.ts checks each request).
      expect(await approve('kubelet-serving')).toBe(true);
      expect(await approve('kube-apiserver-client')).toBe(false);
      expect(await approve('legacy-unknown')).toBe(false);
    });
  });
});

/** Every pod template the chart renders (Deployments and the `helm test` Job), by workload name. */
function podTemplates(objects: KubeObject[]): Array<{ name: string; template: V1PodTemplateSpec }> {
  return objects.flatMap((o) =>
    o.kind === 'Deployment' || o.kind === 'Job'
      ? [
          {
            name: o.metadata.name,
            template: (o as unknown as { spec: { template: V1PodTemplateSpec } }).spec.template,
          },
        ]
      : [],
  );
}

/** `kubectl create --dry-run=server` of a Pod with `template`'s spec in `namespace` (Pod Security judges it). */
async function dryRunPod(kubeconfig: string, namespace: string, name: string, template: V1PodTemplateSpec) {
  const spec = { ...template.spec, serviceAccountName: 'default' };
  const file = join(scratchDir('chart-pod'), `${name}.json`);
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec }));
  return kubectl(kubeconfig, 'create', '--dry-run=server', '-f', file);
}

describe('the chart, rendered for the local cluster: registry images, fake ECI, local provider, rollouts', () => {
  const localValues = join(chartDir, 'ci', 'local-values.yaml');
  const appVersion = (parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string })
    .appVersion;
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let privileged: { name: string; remove: () => Promise<void> };

  beforeAll(async () => {
    cluster = await testCluster();
    ns = await createTestNamespace(cluster.kc, 'chart-local', restricted);
    privileged = await createTestNamespace(cluster.kc, 'chart-privileged', {
      'pod-security.kubernetes.io/enforce': 'privileged',
    });
  });
  afterAll(async () => {
    await ns?.remove();
    await privileged?.remove();
  });

  it('pulls every image of ci/local-values.yaml from the loopback registry, under the catalog names', async () => {
    const objects = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name, '-f', localValues);
    const images = podTemplates(objects).flatMap(({ template }) =>
      template.spec!.containers.map((c) => c.image!),
    );
    expect(new Set(images)).toEqual(
      new Set([
        `${DEFAULT_REGISTRY}/${OPERATOR_REPOSITORY}:${appVersion}`,
        imageRef('agnhost'),
        imageRef('fake-eci'),
      ]),
    );
    // `helm test` runs curl itself: agnhost's entrypoint is /agnhost, and no shell is needed.
    const test = podTemplates(objects).find((t) => t.name === 'spillway-test-webhook')!;
    expect(test.template.spec!.containers[0]!.command![0]).toBe('curl');
    // The fake ECI endpoint exists only when asked for.
    const defaults = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name);
    expect(defaults.filter((o) => o.metadata.name === 'spillway-fake-eci')).toEqual([]);
  });

  it('points the ECI virtual node at the fake ECI Service, signing with the AccessKey pair the fake checks', async () => {
    const objects = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name, '-f', localValues);
    const config = providerConfig(objects, 'spillway-vn-eci');
    expect(config).toMatchObject({ endpoint: `spillway-fake-eci.${ns.name}.svc:8080`, protocol: 'http' });
    const service = findObject<V1Service>(objects, 'Service', 'spillway-fake-eci');
    expect(service.spec!.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
    const fake = findObject<V1Deployment>(objects, 'Deployment', 'spillway-fake-eci');
    expect(fake.spec!.template.metadata!.labels).toMatchObject(service.spec!.selector!);
    const fakeContainer = fake.spec!.template.spec!.containers[0]!;
    expect(fakeContainer.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);

    // Both sides read one Secret: the fake as the pair it accepts, the virtual node as the pair it signs with.
    const fromSecret = (c: V1Container, env: string) =>
      c.env!.find((e) => e.name === env)!.valueFrom!.secretKeyRef;
    const vn = containerOf(objects, 'spillway-vn-eci');
    for (const [fakeEnv, vnEnv, key] of [
      ['FAKE_ECI_ACCESS_KEY_ID', 'ALIBABA_CLOUD_ACCESS_KEY_ID', 'access-key-id'],
      ['FAKE_ECI_ACCESS_KEY_SECRET', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET', 'access-key-secret'],
    ] as const) {
      expect(fromSecret(fakeContainer, fakeEnv)).toEqual({ name: 'spillway-fake-eci', key });
      expect(fromSecret(vn, vnEnv)).toEqual({ name: 'spillway-fake-eci', key });
    }
    const secret = findObject<V1Secret>(objects, 'Secret', 'spillway-fake-eci');
    const pair = {
      accessKeyId: Buffer.from(secret.data!['access-key-id']!, 'base64').toString(),
      accessKeySecret: Buffer.from(secret.data!['access-key-secret']!, 'base64').toString(),
    };
    expect(pair.accessKeyId).toMatch(/^LTAI[A-Za-z0-9]{20}$/);
    expect(pair.accessKeySecret).toMatch(/^[A-Za-z0-9]{30}$/);

    // The operator reads the rendered file the CLI's way and talks to a fake with that pair over plain http.
    // The Service's name resolves only inside a cluster: here the same fake listens on loopback instead.
    const region = fakeContainer.env!.find((e) => e.name === 'FAKE_ECI_REGION_ID')!.value!;
    expect(region).toBe(config.regionId);
    const eci = await FakeEci.start({ regionId: region, ...pair });
    try {
      const file = join(scratchDir('chart-provider'), 'provider.yaml');
      writeFileSync(file, stringify({ ...config, endpoint: eci.endpoint }));
      const provider = await createProvider('eci', {
        nodeName: 'spillway-eci',
        configFile: file,
        env: {
          ALIBABA_CLOUD_ACCESS_KEY_ID: pair.accessKeyId,
          ALIBABA_CLOUD_ACCESS_KEY_SECRET: pair.accessKeySecret,
        },
      });
      try {
        expect(await provider.list()).toEqual([]);
      } finally {
        await provider.close();
      }
    } finally {
      await eci.close();
    }
  });

  it('refuses plain http to the regional ECI endpoint', async () => {
    await expect(
      renderChart(
        cluster.kubeconfigPath,
        'spillway',
        ns.name,
        '-f',
        join(chartDir, 'ci', 'eci-secret-values.yaml'),
        '--set',
        'providers.eci.protocol=http',
      ),
    ).rejects.toThrow('providers.eci.protocol http needs providers.eci.endpoint');
  });

  it('runs a local virtual node on its node’s containerd socket: privileged, so only where Pod Security allows it', async () => {
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '--set',
      'virtualNodes[0].name=local,virtualNodes[0].provider=local',
      '--set',
      'virtualNodes[0].nodeSelector.kubernetes\\.io/hostname=node-a',
      '--set',
      'virtualNodes[0].local.criSocket=/run/k8s/containerd.sock',
    );
    const config = providerConfig(objects, 'spillway-vn-local');
    expect(config).toEqual({ criEndpoint: '/run/k8s/containerd.sock', runtimeHandler: 'runc' });
    // The operator accepts the rendered file as the local provider's configuration.
    expect(parseLocalConfig(config, { nodeName: 'spillway-local', env: {} })).toMatchObject({
      criEndpoint: '/run/k8s/containerd.sock',
      runtimeHandler: 'runc',
    });

    const d = findObject<V1Deployment>(objects, 'Deployment', 'spillway-vn-local');
    const pod = d.spec!.template.spec!;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/hostname': 'node-a' });
    const c = pod.containers[0]!;
    expect(c.securityContext).toMatchObject({ privileged: true, runAsNonRoot: false });
    expect(pod.securityContext?.runAsUser).toBe(0);
    // The socket and the provider's state at the node's own paths: containerd resolves them on the node.
    const hostPaths = Object.fromEntries(
      pod.volumes!.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!]),
    );
    expect(hostPaths).toEqual({
      'cri-socket': { path: '/run/k8s/containerd.sock', type: 'Socket' },
      state: { path: '/run/spillway', type: 'DirectoryOrCreate' },
    });
    for (const [name, { path }] of Object.entries(hostPaths)) {
      expect(c.volumeMounts!.find((m) => m.name === name)?.mountPath).toBe(path);
    }
    // On the host network, off the node kubelet's 10250, and listening on the node's address only.
    const nodeFile = parse(
      findObject<V1ConfigMap>(objects, 'ConfigMap', 'spillway-vn-local').data!['node.yaml']!,
    ) as {
      nodes: Array<{ kubeletPort: number }>;
    };
    expect(nodeFile.nodes[0]!.kubeletPort).toBe(10260);
    expect(c.ports!.map((p) => p.containerPort)).toEqual([10260, 10261]);
    expect(c.args).toEqual(
      expect.arrayContaining([
        '--kubelet-host=$(POD_IP)',
        '--metrics-host=$(POD_IP)',
        '--metrics-port=10261',
      ]),
    );

    // Pod Security "restricted" refuses that pod and says why; a namespace that allows "privileged" takes it.
    const local = podTemplates(objects).find((t) => t.name === 'spillway-vn-local')!.template;
    await expect(dryRunPod(cluster.kubeconfigPath, ns.name, 'spillway-vn-local', local)).rejects.toThrow(
      /violates PodSecurity "restricted:latest".*(hostNetwork|privileged)/,
    );
    await dryRunPod(cluster.kubeconfigPath, privileged.name, 'spillway-vn-local', local);
    // Every other pod of the release still passes "restricted".
    for (const { name, template } of podTemplates(objects).filter((t) => t.name !== 'spillway-vn-local')) {
      await dryRunPod(cluster.kubeconfigPath, ns.name, name, template);
    }
  });

  it('rolls the controller without a gap: surge first, ready on /readyz, serving through the endpoint removal', async () => {
    const objects = await renderChart(cluster.kubeconfigPath, 'spillway', ns.name);
    const d = findObject<V1Deployment>(objects, 'Deployment', 'spillway-controller');
    expect(d.spec!.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    const c = d.spec!.template.spec!.containers[0]!;
    expect(c.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'webhook', scheme: 'HTTPS' });
    const delay = c.lifecycle!.preStop!.sleep!.seconds;
    expect(delay).toBe(5);
    // The delay, then the server's drain of in-flight reviews (WebhookServer.close: 10 s), fit in the grace period.
    expect(d.spec!.template.spec!.terminationGracePeriodSeconds).toBeGreaterThan(delay + 10);

    const none = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      ns.name,
      '--set',
      'controller.shutdownDelaySeconds=0',
    );
    expect(containerOf(none, 'spillway-controller').lifecycle).toBeUndefined();
    await expect(
      renderChart(cluster.kubeconfigPath, 'spillway', ns.name, '--set', 'controller.shutdownDelaySeconds=25'),
    ).rejects.toThrow('shutdownDelaySeconds');
  });
});

describe('the chart, rendered: namespaced controller, NetworkPolicies and /metrics authentication', () => {
  let cluster: TestCluster;
  const ns = 'spillway-security';
  const render = (...args: string[]) => renderChart(cluster.kubeconfigPath, 'spillway', ns, ...args);
  type Rule = { apiGroups?: string[]; resources?: string[]; verbs: string[]; nonResourceURLs?: string[] };
  const rulesOf = (o: KubeObject) => ((o as unknown as { rules?: Rule[] }).rules ?? []) as Rule[];
  const writesDeployments = (rules: Rule[]) =>
    rules.some(
      (r) =>
        r.apiGroups?.includes('apps') &&
        r.resources?.includes('deployments') &&
        r.verbs.some((v) => ['create', 'patch', 'update', 'delete', '*'].includes(v)),
    );
  const policy = (objects: KubeObject[], name: string) =>
    findObject<{
      spec: { podSelector: unknown; ingress: Array<{ ports: { port: number }[]; from?: unknown[] }> };
    }>(objects, 'NetworkPolicy', name).spec;

  beforeAll(async () => {
    cluster = await testCluster();
  });

  it('grants Deployment writes cluster-wide by default, and only through Roles in the listed namespaces with watchNamespaces', async () => {
    const wide = await render();
    const clusterRole = findObject(wide, 'ClusterRole', 'spillway-controller');
    expect(writesDeployments(rulesOf(clusterRole))).toBe(true);
    expect(wide.filter((o) => o.metadata.name === 'spillway-controller-workloads')).toEqual([]);
    expect(
      containerOf(wide, 'spillway-controller').args!.some((a) => a.startsWith('--watch-namespaces')),
    ).toBe(false);

    const scoped = await render('--set', 'controller.watchNamespaces={team-a,team-b}');
    const roles = scoped.filter(
      (o) => o.kind === 'Role' && o.metadata.name === 'spillway-controller-workloads',
    );
    expect(roles.map((r) => r.metadata.namespace).sort()).toEqual(['team-a', 'team-b']);
    for (const role of roles) expect(writesDeployments(rulesOf(role))).toBe(true);
    const bindings = scoped.filter(
      (o) => o.kind === 'RoleBinding' && o.metadata.name === 'spillway-controller-workloads',
    );
    expect(bindings.map((b) => b.metadata.namespace).sort()).toEqual(['team-a', 'team-b']);
    for (const b of bindings)
      expect((b as unknown as V1RoleBinding).subjects).toEqual([
        { kind: 'ServiceAccount', name: 'spillway-controller', namespace: ns },
      ]);
    // No ClusterRole of the release lets anyone write Deployments, pods or ElasticWorkloads anywhere.
    for (const role of scoped.filter((o) => o.kind === 'ClusterRole')) {
      expect(writesDeployments(rulesOf(role)), role.metadata.name).toBe(false);
    }
    const narrowed = rulesOf(findObject(scoped, 'ClusterRole', 'spillway-controller'));
    expect(narrowed.flatMap((r) => r.resources ?? []).sort()).toEqual([
      'mutatingwebhookconfigurations',
      'namespaces',
      'nodes',
      'subjectaccessreviews',
      'tokenreviews',
      'validatingwebhookconfigurations',
    ]);
    expect(containerOf(scoped, 'spillway-controller').args).toContain('--watch-namespaces=team-a,team-b');
    await expect(render('--set', 'controller.watchNamespaces={Team_A}')).rejects.toThrow('watchNamespaces');
  });

  it('admits the webhook and kubelet ports from the apiserver CIDRs and metrics-server, the metrics port from the scrapers’ namespaces', async () => {
    const fakeNode = ['-f', join(chartDir, 'ci', 'fake-node-values.yaml')];
    const open = await render(...fakeNode);
    const controllerPolicy = policy(open, 'spillway-controller');
    expect(controllerPolicy.podSelector).toEqual({
      matchLabels: {
        'app.kubernetes.io/name': 'spillway',
        'app.kubernetes.io/instance': 'spillway',
        'app.kubernetes.io/component': 'controller',
      },
    });
    // Without CIDRs the webhook port is open to any source (documented), the metrics port never is.
    expect(controllerPolicy.ingress).toEqual([
      { ports: [{ port: 9443, protocol: 'TCP' }] },
      {
        ports: [{ port: 8080, protocol: 'TCP' }],
        from: [{ namespaceSelector: { matchLabels: { 'spillway.dev/metrics-scraper': 'true' } } }],
      },
    ]);

    const closed = await render(
      ...fakeNode,
      '--set',
      'networkPolicy.apiServerCIDRs={10.0.0.10/32,192.168.0.0/24}',
    );
    const apiserver = [{ ipBlock: { cidr: '10.0.0.10/32' } }, { ipBlock: { cidr: '192.168.0.0/24' } }];
    expect(policy(closed, 'spillway-controller').ingress[0]).toEqual({
      ports: [{ port: 9443, protocol: 'TCP' }],
      from: apiserver,
    });
    const vn = policy(closed, 'spillway-virtual-node');
    expect(vn.ingress).toEqual([
      {
        ports: [{ port: 10250, protocol: 'TCP' }],
        from: [
          ...apiserver,
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            podSelector: { matchLabels: { 'k8s-app': 'metrics-server' } },
          },
        ],
      },
      {
        ports: [{ port: 8080, protocol: 'TCP' }],
        from: [{ namespaceSelector: { matchLabels: { 'spillway.dev/metrics-scraper': 'true' } } }],
      },
    ]);
    // The virtual node policy selects the virtual node pods the chart runs.
    const workload = findObject<{ spec: { template: V1Pod } }>(closed, 'Deployment', 'spillway-vn-fake');
    expect(workload.spec.template.metadata?.labels).toMatchObject(
      (vn.podSelector as { matchLabels: Record<string, string> }).matchLabels,
    );

    expect(
      (await render(...fakeNode, '--set', 'networkPolicy.enabled=false')).filter(
        (o) => o.kind === 'NetworkPolicy',
      ),
    ).toEqual([]);
    await expect(render('--set', 'networkPolicy.apiServerCIDRs={10.0.0.10}')).rejects.toThrow(
      'apiServerCIDRs',
    );
  });

  it('requires a token on /metrics by default: HTTPS, a bearer token in the ServiceMonitor, the reader ClusterRole, the reviews', async () => {
    const fakeNode = ['-f', join(chartDir, 'ci', 'fake-node-values.yaml')];
    const on = await render(...fakeNode, '--set', 'metrics.serviceMonitor.enabled=true');
    expect(containerOf(on, 'spillway-controller').args).toContain('--metrics-auth=kubernetes');
    const vn = containerOf(on, 'spillway-vn-fake');
    expect(vn.args).toContain('--metrics-auth=kubernetes');
    expect(vn.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'metrics', scheme: 'HTTPS' });
    const monitor = findObject<{ spec: { endpoints: Record<string, unknown>[] } }>(
      on,
      'ServiceMonitor',
      'spillway',
    );
    expect(monitor.spec.endpoints[0]).toMatchObject({
      scheme: 'https',
      tlsConfig: { insecureSkipVerify: true },
      bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    });
    expect(rulesOf(findObject(on, 'ClusterRole', 'spillway-metrics-reader'))).toEqual([
      { nonResourceURLs: ['/metrics'], verbs: ['get'] },
    ]);
    expect(rulesOf(findObject(on, 'ClusterRole', 'spillway-controller'))).toEqual(
      expect.arrayContaining([
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ]),
    );
    const secret = await render(
      ...fakeNode,
      '--set',
      'metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.bearerTokenSecret.name=prom,metrics.serviceMonitor.bearerTokenSecret.key=token',
    );
    const withSecret = findObject<{ spec: { endpoints: Record<string, unknown>[] } }>(
      secret,
      'ServiceMonitor',
      'spillway',
    );
    expect(withSecret.spec.endpoints[0]).toMatchObject({
      authorization: { type: 'Bearer', credentials: { name: 'prom', key: 'token' } },
    });
    expect(withSecret.spec.endpoints[0]).not.toHaveProperty('bearerTokenFile');

    const off = await render(
      ...fakeNode,
      '--set',
      'metrics.serviceMonitor.enabled=true,metrics.authentication=false',
    );
    expect(containerOf(off, 'spillway-controller').args).toContain('--metrics-auth=none');
    expect(containerOf(off, 'spillway-vn-fake').livenessProbe?.httpGet).not.toHaveProperty('scheme');
    const plain = findObject<{ spec: { endpoints: Record<string, unknown>[] } }>(
      off,
      'ServiceMonitor',
      'spillway',
    );
    expect(plain.spec.endpoints[0]).not.toHaveProperty('scheme');
    expect(off.filter((o) => o.metadata.name === 'spillway-metrics-reader')).toEqual([]);
    expect(JSON.stringify(findObject(off, 'ClusterRole', 'spillway-controller'))).not.toContain(
      'tokenreviews',
    );
  });
});

describe('the chart, installed, with the operator running as its ServiceAccounts', () => {
  const release = 'spillway';
  const nodeName = 'spillway-chart-test';
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let app: { name: string; remove: () => Promise<void> };
  let core: CoreV1Api;
  let dir: string;
  let webhookPort: number;
  /** A non-loopback address of this host for the webhook server: Endpoints refuse loopback addresses. */
  let webhookHost: HostAddress;
  let values: string;
  const processes: OperatorProcess[] = [];
  /** Where each process serves /metrics (any free loopback port; the pods' is metrics.port). */
  const metricsPorts: { controller?: number; virtualNode?: number } = {};
  let installed = false;

  const installArgs = () => ['--namespace', ns.name, '-f', values, '--wait', '--timeout', '3m'];
  const podsOf = async (namespace: string, selector: string) =>
    (await core.listNamespacedPod({ namespace, labelSelector: selector })).items;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    dir = scratchDir('chart-install');
    ns = await createTestNamespace(cluster.kc, 'spillway-chart', restricted);
    webhookHost = await addHostAddress();
    webhookPort = await freePort();
    values = join(dir, 'values.yaml');
    writeFileSync(
      values,
      stringify({
        virtualNodes: [
          {
            name: 'chart-test',
            provider: 'fake',
            capacity: { cpu: '64', memory: '256Gi', pods: '110' },
            labels: { 'topology.kubernetes.io/zone': 'virtual-a' },
            podCIDR: '10.252.7.0/24',
          },
        ],
        // Test-only: the apiserver calls the webhook Service at its one endpoint, the operator process on this
        // host (the local apiserver resolves Services by their endpoints, so an ExternalName Service will not do).
        webhook: { service: { endpointAddress: webhookHost.address, port: webhookPort } },
      }),
    );
    // A CRD applied earlier by `make run` or another test is adopted, as docs/install.md tells users to.
    const crds = cluster.kc.makeApiClient(ApiextensionsV1Api);
    if (await crds.readCustomResourceDefinition({ name: CRD_NAME }).catch(() => undefined)) {
      await kubectl(
        cluster.kubeconfigPath,
        'label',
        'crd',
        CRD_NAME,
        'app.kubernetes.io/managed-by=Helm',
        '--overwrite',
      );
      await kubectl(
        cluster.kubeconfigPath,
        'annotate',
        'crd',
        CRD_NAME,
        `meta.helm.sh/release-name=${release}`,
        `meta.helm.sh/release-namespace=${ns.name}`,
        '--overwrite',
      );
    }
  });

  afterAll(async () => {
    await app?.remove();
    for (const p of processes) await p.stop();
    if (installed)
      await helm(cluster.kubeconfigPath, 'uninstall', release, '--namespace', ns.name).catch(() => '');
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
    await ns?.remove();
    await webhookHost?.remove();
  });

  it('installs (helm --wait) with every pod admitted under Pod Security "restricted"', async () => {
    await helm(cluster.kubeconfigPath, 'install', release, chartDir, ...installArgs());
    installed = true;
    const controllers = await podsOf(ns.name, 'app.kubernetes.io/component=controller');
    expect(controllers).toHaveLength(2);
    // Anti-affinity spreads the two replicas over the two kwok nodes; neither is on a virtual node.
    expect(new Set(controllers.map((p) => p.spec?.nodeName)).size).toBe(2);
    expect(controllers.every((p) => p.spec?.nodeName?.startsWith('kwok-node-'))).toBe(true);
    expect(await podsOf(ns.name, 'app.kubernetes.io/component=virtual-node')).toHaveLength(1);
    const pdb = await kubectl(
      cluster.kubeconfigPath,
      'get',
      'pdb',
      '-n',
      ns.name,
      'spillway-controller',
      '-o',
      'json',
    );
    expect(JSON.parse(pdb).spec.minAvailable).toBe(1);
  });

  it('lets the controller renew the chart’s leader Lease but create none, so uninstall removes it for good', async () => {
    const controller = `system:serviceaccount:${ns.name}:spillway-controller`;
    const lease = 'leases.coordination.k8s.io/spillway-elasticworkload-controller';
    expect(await canIOn(cluster.kubeconfigPath, controller, 'get', lease, ns.name)).toBe(true);
    expect(await canIOn(cluster.kubeconfigPath, controller, 'update', lease, ns.name)).toBe(true);
    expect(
      await canIOn(cluster.kubeconfigPath, controller, 'create', 'leases.coordination.k8s.io', ns.name),
    ).toBe(false);
  });

  it('runs the controller and the virtual node with the chart command lines and ServiceAccounts', async () => {
    const rendered = parseManifests(
      await helm(cluster.kubeconfigPath, 'get', 'manifest', release, '--namespace', ns.name),
    );
    const env = { POD_NAMESPACE: ns.name, POD_IP: '127.0.0.1' };

    const controllerKubeconfig = await serviceAccountKubeconfig(
      cluster.kc,
      ns.name,
      'spillway-controller',
      dir,
    );
    const controller = startOperator(
      chartArgs(
        containerOf(rendered, 'spillway-controller'),
        {
          'webhook-port': String(webhookPort),
          // The pod listens on every interface; this test only on the Service's endpoint address.
          'webhook-host': webhookHost.address,
          'metrics-host': '127.0.0.1',
          'metrics-port': String((metricsPorts.controller = await freePort())),
        },
        env,
      ),
      controllerKubeconfig,
    );
    processes.push(controller);

    // The virtual node reads its configuration from the chart's ConfigMap, mounted where the chart mounts it.
    const cm = findObject<V1ConfigMap>(rendered, 'ConfigMap', 'spillway-vn-chart-test');
    const nodeFile = parse(cm.data!['node.yaml']!) as { nodes: Array<Record<string, unknown>> };
    nodeFile.nodes[0]!.kubeletPort = await freePort(); // 10250 is the pod's; here, any free loopback port
    nodeFile.nodes[0]!.providerConfig = join(dir, 'provider.yaml');
    writeFileSync(join(dir, 'node.yaml'), stringify(nodeFile));
    writeFileSync(join(dir, 'provider.yaml'), cm.data!['provider.yaml']!);
    const vnKubeconfig = await serviceAccountKubeconfig(cluster.kc, ns.name, 'spillway-virtual-node', dir);
    const vn = startOperator(
      chartArgs(
        containerOf(rendered, 'spillway-vn-chart-test'),
        {
          config: join(dir, 'node.yaml'),
          'kubelet-host': '127.0.0.1',
          'metrics-host': '127.0.0.1',
          'metrics-port': String((metricsPorts.virtualNode = await freePort())),
        },
        env,
      ),
      vnKubeconfig,
    );
    processes.push(vn);

    await waitFor('the chart virtual node to be Ready', 60_000, async () => {
      const node = await core.readNode({ name: nodeName });
      return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- virtual node output ---\n${vn.output().slice(-4000)}`);
    });
    const node = await core.readNode({ name: nodeName });
    expect(node.metadata?.labels).toMatchObject({
      'spillway.dev/virtual-node': 'true',
      'topology.kubernetes.io/zone': 'virtual-a',
      'app.kubernetes.io/managed-by': 'Helm',
    });
    expect(node.spec?.podCIDR).toBe('10.252.7.0/24');
    expect(node.status?.capacity).toMatchObject({ cpu: '64', memory: '256Gi', pods: '110' });

    // The TLS keeper has written its Secret and injected the CA into the chart's two configurations.
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    await waitFor('the CA bundle in the chart webhook configurations', 60_000, async () => {
      const m = await admission.readMutatingWebhookConfiguration({ name: 'spillway' });
      const v = await admission.readValidatingWebhookConfiguration({ name: 'spillway' });
      return [...m.webhooks!, ...v.webhooks!].every((w) => !!w.clientConfig.caBundle);
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- controller output ---\n${controller.output().slice(-4000)}`);
    });
    // Leadership is taken on the chart's Lease.
    const leases = cluster.kc.makeApiClient(CoordinationV1Api);
    await waitFor('a leader on the chart Lease', 60_000, async () => {
      const lease = await leases.readNamespacedLease({
        namespace: ns.name,
        name: 'spillway-elasticworkload-controller',
      });
      return !!lease.spec?.holderIdentity;
    });
    expect(controller.output()).not.toMatch(/forbidden/i);
    expect(vn.output()).not.toMatch(/forbidden/i);
  });

  it('bursts an ElasticWorkload unit onto the virtual node with exactly the chart RBAC', async () => {
    app = await createTestNamespace(cluster.kc, 'chart-app');
    await createDeployment(cluster.kc, app.name, deployment('web', 1));
    await createElasticWorkload(cluster.kc, app.name, 'web', {
      sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', min: 1, max: 1 },
      replicas: 3,
      elasticUnit: [
        {
          name: 'burst',
          labels: { 'spillway.dev/burst': 'always' },
          nodeSelector: { 'kubernetes.io/hostname': nodeName },
        },
      ],
    });
    const running = async () =>
      (await podsOf(app.name, 'app=web')).filter((p) => p.status?.phase === 'Running');
    await waitFor(
      '1 source pod and 2 burst pods Running',
      90_000,
      async () => (await running()).length === 3,
    );
    const pods = await running();
    const burst = pods.filter((p) => p.metadata?.labels?.['spillway.dev/burst'] === 'always');
    const source = pods.filter((p) => !p.metadata?.labels?.['spillway.dev/burst']);
    expect(burst.map((p) => p.spec?.nodeName)).toEqual([nodeName, nodeName]);
    expect(source.map((p) => p.spec?.nodeName?.startsWith('kwok-node-'))).toEqual([true]);
    // The placement webhook (through the chart's configuration) added the toleration for the virtual node.
    for (const p of burst) {
      expect(p.spec?.tolerations).toEqual(
        expect.arrayContaining([expect.objectContaining({ key: 'virtual-kubelet.io/provider' })]),
      );
    }

    // The apiserver reaches the virtual node's kubelet API, which authenticates and authorises it (TokenReview,
    // SubjectAccessReview) with the chart's RBAC.
    const out = await kubectl(
      cluster.kubeconfigPath,
      'exec',
      '-n',
      app.name,
      burst[0]!.metadata!.name!,
      '--',
      'echo',
      'from-the-sandbox',
    );
    expect(out.trim()).toBe('from-the-sandbox');
  });

  it('answers /metrics, on the controller and the virtual node, only to a token bound to spillway-metrics-reader', async () => {
    // A scraper's ServiceAccount bound to the chart's ClusterRole, and one without it.
    await core.createNamespacedServiceAccount({
      namespace: ns.name,
      body: { metadata: { name: 'scraper' } },
    });
    const token = async (sa: string) =>
      (
        await core.createNamespacedServiceAccountToken({
          namespace: ns.name,
          name: sa,
          body: { spec: { audiences: [], expirationSeconds: 600 } },
        })
      ).status!.token;
    const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    const binding = `spillway-metrics-reader-${ns.name}`;
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: binding },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'spillway-metrics-reader',
        },
        subjects: [{ kind: 'ServiceAccount', name: 'scraper', namespace: ns.name }],
      },
    });
    try {
      await waitFor('the reader binding in effect', 30_000, async () =>
        canI(cluster.kubeconfigPath, `system:serviceaccount:${ns.name}:scraper`, 'get', '/metrics').catch(
          () => false,
        ),
      );
      const [scraper, other] = [await token('scraper'), await token('default')];
      /** Status and body of a scrape; each process's certificate is self-signed (the ServiceMonitor skips it). */
      const scrape = (port: number, bearer?: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port,
              path: '/metrics',
              rejectUnauthorized: false,
              headers: bearer ? { Authorization: `Bearer ${bearer}` } : {},
            },
            (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (body += c));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
          req.end();
        });
      // The virtual node reviews tokens as its node identity: its bootstrap ServiceAccount may not.
      for (const [who, port] of Object.entries(metricsPorts)) {
        expect((await scrape(port)).status, who).toBe(401);
        expect((await scrape(port, other)).status, who).toBe(403);
        const allowed = await scrape(port, scraper);
        expect(allowed.status, who).toBe(200);
        expect(allowed.body, who).toContain('process_resident_memory_bytes');
      }
    } finally {
      await rbac.deleteClusterRoleBinding({ name: binding }).catch(() => undefined);
      await core
        .deleteNamespacedServiceAccount({ namespace: ns.name, name: 'scraper' })
        .catch(() => undefined);
    }
  });

  it('denies, through the chart validating webhook, a burst pod a sandbox cannot run', async () => {
    const denied = core.createNamespacedPod({
      namespace: app.name,
      body: {
        metadata: { name: 'host-network', labels: { 'spillway.dev/burst': 'always' } },
        spec: { hostNetwork: true, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] },
      },
    });
    await expect(denied).rejects.toThrow(/spec\.hostNetwork/);
  });

  it('passes helm test: the webhook Service answers /readyz with the CA the apiserver trusts', async () => {
    const testRun = helm(cluster.kubeconfigPath, 'test', release, '--namespace', ns.name, '--timeout', '90s');
    // No container runs on kwok's nodes: this test plays the kubelet. It runs the hook's own check (curl's URL,
    // with the CA from the TLS Secret) against the operator process and reports its outcome as the pod's.
    let hookPod: V1Pod | undefined;
    await waitFor('the helm test pod', 60_000, async () => {
      hookPod = (await podsOf(ns.name, 'job-name=spillway-test-webhook'))[0];
      return !!hookPod;
    });
    const script = hookPod!.spec!.containers[0]!.command!.join(' ');
    const url = new URL(/https:\/\/\S+/.exec(script)![0]);
    expect(url.hostname).toBe(`spillway-webhook.${ns.name}.svc`);
    expect(url.pathname).toBe('/readyz');
    const secret = await core.readNamespacedSecret({ namespace: ns.name, name: 'spillway-webhook-tls' });
    const status = await httpsStatus({
      host: webhookHost.address, // the Service's endpoint
      port: Number(url.port),
      path: url.pathname,
      servername: url.hostname,
      ca: Buffer.from(secret.data!['ca.crt']!, 'base64'),
    });
    expect(status).toBe(200);
    const now = new Date();
    await core.patchNamespacedPodStatus(
      {
        namespace: ns.name,
        name: hookPod!.metadata!.name!,
        body: {
          status: {
            phase: 'Succeeded',
            containerStatuses: [
              {
                name: 'readyz',
                image: hookPod!.spec!.containers[0]!.image!,
                imageID: '',
                ready: false,
                restartCount: 0,
                state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: now, finishedAt: now } },
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await testRun).toMatch(/spillway-test-webhook[\s\S]*Phase:\s+Succeeded/);
  });

  it('upgrades in place without losing the injected CA bundle', async () => {
    await helm(
      cluster.kubeconfigPath,
      'upgrade',
      release,
      chartDir,
      ...installArgs(),
      '--set',
      'webhook.timeoutSeconds=5',
    );
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    const m = await admission.readMutatingWebhookConfiguration({ name: 'spillway' });
    expect(m.webhooks!.map((w) => w.timeoutSeconds)).toEqual([5, 5, 5]);
    expect(m.webhooks!.every((w) => !!w.clientConfig.caBundle)).toBe(true);
    const status = JSON.parse(
      await helm(cluster.kubeconfigPath, 'status', release, '--namespace', ns.name, '-o', 'json'),
    );
    expect(status.version).toBe(2);
    expect(status.info.status).toBe('deployed');

    // Bursting still works after the upgrade: one more replica lands on the virtual node.
    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', app.name, '--replicas=4');
    await waitFor(
      '3 burst pods Running',
      90_000,
      async () =>
        (await podsOf(app.name, 'spillway.dev/burst=always')).filter(
          (p) => p.status?.phase === 'Running' && p.spec?.nodeName === nodeName,
        ).length === 3,
    );
  });

  it('uninstalls cleanly, keeping only the CRD and the webhook TLS Secret', async () => {
    // Workloads first, while the controller can still fold the ElasticWorkload back (its finalizer).
    await app.remove();
    await waitFor(`namespace ${app.name} gone`, 90_000, async () => {
      try {
        await core.readNamespace({ name: app.name });
        return false;
      } catch {
        return true;
      }
    });
    for (const p of processes) await p.stop();
    await helm(cluster.kubeconfigPath, 'uninstall', release, '--namespace', ns.name, '--wait');
    installed = false;

    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    const gone = async (read: () => Promise<unknown>) =>
      read().then(
        () => false,
        () => true,
      );
    expect(await gone(() => admission.readMutatingWebhookConfiguration({ name: 'spillway' }))).toBe(true);
    expect(await gone(() => admission.readValidatingWebhookConfiguration({ name: 'spillway' }))).toBe(true);
    for (const name of ['spillway-controller', 'spillway-virtual-node']) {
      expect(await gone(() => rbac.readClusterRole({ name }))).toBe(true);
      expect(await gone(() => rbac.readClusterRoleBinding({ name }))).toBe(true);
    }
    expect(await gone(() => rbac.readClusterRole({ name: 'spillway-controller-csr-approver' }))).toBe(true);
    expect(
      await gone(() => rbac.readNamespacedRole({ namespace: 'kube-system', name: 'spillway-virtual-node' })),
    ).toBe(true);
    expect(await gone(() => core.readNode({ name: nodeName }))).toBe(true);
    // The node's Lease is owned by the Node: the garbage collector removes it.
    const leases = cluster.kc.makeApiClient(CoordinationV1Api);
    await waitFor('the virtual node Lease collected', 60_000, () =>
      gone(() => leases.readNamespacedLease({ namespace: 'kube-node-lease', name: nodeName })),
    );

    // The release's namespace holds nothing of the chart; the operator's TLS Secret outlives it (docs/install.md).
    const names = async (kind: string) =>
      (await kubectl(cluster.kubeconfigPath, 'get', kind, '-n', ns.name, '-o', 'name'))
        .trim()
        .split('\n')
        .filter(Boolean);
    expect(
      await names(
        'deployments,services,serviceaccounts,configmaps,leases,roles,rolebindings,poddisruptionbudgets,jobs',
      ),
    ).toEqual(['serviceaccount/default', 'configmap/kube-root-ca.crt']);
    expect(await names('secrets')).toEqual(['secret/spillway-webhook-tls']);

    // The CRD stays (helm.sh/resource-policy: keep): uninstalling never deletes users' ElasticWorkloads.
    const crd = await cluster.kc
      .makeApiClient(ApiextensionsV1Api)
      .readCustomResourceDefinition({ name: CRD_NAME });
    expect(crd.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
  });
});
