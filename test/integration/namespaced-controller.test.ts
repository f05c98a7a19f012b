/**
 * The ElasticWorkload controller in namespaced mode (the chart's `controller.watchNamespaces`), running as the
 * chart's controller ServiceAccount with exactly the RBAC the chart renders for that mode: Roles in the watched
 * namespace, no cluster-wide right on Deployments. It reconciles an ElasticWorkload in the watched namespace and
 * neither sees nor writes anything in another one.
 */
import { Writable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CustomObjectsApi, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINALIZER } from '../../api/labels.ts';
import { GROUP, PLURAL, VERSION, type ElasticWorkload } from '../../api/elasticworkload.ts';
import {
  ElasticWorkloadController,
  elasticWorkloadController,
} from '../../operator/elasticworkload/controller.ts';
import { installCrd } from '../../operator/elasticworkload/install.ts';
import { createLogger } from '../../operator/shared/log.ts';
import { renderChart, scratchDir, serviceAccountKubeconfig, type KubeObject } from '../support/chart.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { getCustomObject, getDeployment, kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';

type Namespace = { name: string; remove: () => Promise<void> };

/**
 * The chart's RBAC for the controller, with its cluster-scoped names made unique to this test (the chart's are
 * fixed, and another test file installs the chart itself).
 */
function controllerRbac(objects: KubeObject[], suffix: string): KubeObject[] {
  const kinds = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];
  return objects
    .filter(
      (o) => kinds.includes(o.kind) && o.metadata.labels?.['app.kubernetes.io/component'] === 'controller',
    )
    .map((o) => {
      if (o.kind === 'ClusterRole')
        return { ...o, metadata: { ...o.metadata, name: `${o.metadata.name}-${suffix}` } };
      if (o.kind !== 'ClusterRoleBinding') return o;
      const b = o as KubeObject & { roleRef: { name: string } };
      return {
        ...b,
        metadata: { ...b.metadata, name: `${b.metadata.name}-${suffix}` },
        roleRef: { ...b.roleRef, name: `${b.roleRef.name}-${suffix}` },
      };
    });
}

/** `kubectl auth can-i VERB RESOURCE` as `user` in `namespace` (or cluster-wide with '--all-namespaces'). */
async function canI(kubeconfig: string, user: string, verb: string, resource: string, where: string) {
  const scope = where === '--all-namespaces' ? [where] : ['-n', where];
  try {
    return (
      (await kubectl(kubeconfig, 'auth', 'can-i', verb, resource, ...scope, `--as=${user}`)).trim() === 'yes'
    );
  } catch (err) {
    const out = ((err as Error).cause as { stdout?: string } | undefined)?.stdout?.trim();
    if (out?.startsWith('no')) return false;
    throw err;
  }
}

describe('the controller in namespaced mode, as the chart ServiceAccount', () => {
  let cluster: TestCluster;
  let home: Namespace;
  let watched: Namespace;
  let other: Namespace;
  let rbac: KubeObject[] = [];
  let controller: ElasticWorkloadController | undefined;
  let user: string;
  const lines: string[] = [];

  const ewIn = (namespace: string) =>
    getCustomObject<ElasticWorkload>(cluster.kc, GROUP, VERSION, PLURAL, namespace, 'web');
  const spec = (replicas: number) => ({
    sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', min: 1, max: 1 },
    replicas,
    elasticUnit: [{ name: 'burst' }],
  });

  beforeAll(async () => {
    cluster = await testCluster();
    await installCrd(cluster.kc);
    home = await createTestNamespace(cluster.kc, 'ns-mode-home');
    watched = await createTestNamespace(cluster.kc, 'ns-mode-watched');
    other = await createTestNamespace(cluster.kc, 'ns-mode-other');
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      home.name,
      '--set',
      `controller.watchNamespaces={${watched.name}}`,
    );
    rbac = controllerRbac(objects, home.name);
    const dir = scratchDir('ns-mode');
    const file = join(dir, 'rbac.yaml');
    writeFileSync(file, rbac.map((o) => stringify(o)).join('---\n'));
    await kubectl(cluster.kubeconfigPath, 'apply', '-f', file);
    user = `system:serviceaccount:${home.name}:spillway-controller`;
    const kc = new KubeConfig();
    kc.loadFromFile(await serviceAccountKubeconfig(cluster.kc, home.name, 'spillway-controller', dir));
    const logger = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    });
    controller = elasticWorkloadController(kc, { namespaces: [watched.name], logger });
  });

  afterAll(async () => {
    await controller?.stop();
    // The watched ElasticWorkload carries the fold-back finalizer; nothing runs to honour it any more.
    const objects = cluster.kc.makeApiClient(CustomObjectsApi);
    for (const ns of [watched, other]) {
      if (!ns) continue;
      await objects
        .patchNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns.name,
          name: 'web',
          body: [{ op: 'replace', path: '/metadata/finalizers', value: [] }],
        })
        .catch(() => undefined);
    }
    const api = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    for (const o of rbac) {
      if (o.kind === 'ClusterRole')
        await api.deleteClusterRole({ name: o.metadata.name }).catch(() => undefined);
      if (o.kind === 'ClusterRoleBinding')
        await api.deleteClusterRoleBinding({ name: o.metadata.name }).catch(() => undefined);
    }
    await Promise.all([home, watched, other].map((ns) => ns?.remove()));
  });

  it('may write Deployments and pods in the watched namespace only (kubectl auth can-i)', async () => {
    const can = (verb: string, resource: string, where: string) =>
      canI(cluster.kubeconfigPath, user, verb, resource, where);
    expect(await can('patch', 'deployments.apps', watched.name)).toBe(true);
    expect(await can('create', 'deployments.apps', watched.name)).toBe(true);
    expect(await can('delete', 'pods', watched.name)).toBe(true);
    expect(await can('patch', 'elasticworkloads.elastic.spillway.dev', watched.name)).toBe(true);
    expect(await can('patch', 'deployments.apps', other.name)).toBe(false);
    expect(await can('list', 'deployments.apps', other.name)).toBe(false);
    expect(await can('delete', 'pods', other.name)).toBe(false);
    expect(await can('create', 'events.events.k8s.io', other.name)).toBe(false);
    expect(await can('patch', 'deployments.apps', '--all-namespaces')).toBe(false);
    expect(await can('list', 'elasticworkloads.elastic.spillway.dev', '--all-namespaces')).toBe(false);
    // Cluster-scoped needs stay: the webhooks' namespace and node caches, the /metrics reviews.
    expect(await can('watch', 'namespaces', '--all-namespaces')).toBe(true);
    expect(await can('create', 'tokenreviews.authentication.k8s.io', '--all-namespaces')).toBe(true);
  });

  it('reconciles an ElasticWorkload in the watched namespace and touches nothing in another', async () => {
    // The other namespace's first, so that it has been there all along.
    await createDeployment(cluster.kc, other.name, deployment('web', 1));
    await createElasticWorkload(cluster.kc, other.name, 'web', spec(3));
    await createDeployment(cluster.kc, watched.name, deployment('web', 1));
    await createElasticWorkload(cluster.kc, watched.name, 'web', spec(3));

    await controller!.start();
    await waitFor('the watched unit Deployment with 2 replicas', 60_000, async () => {
      const unit = await getDeployment(cluster.kc, watched.name, 'web-unit-burst');
      return unit?.spec?.replicas === 2;
    });
    // A change in the other namespace after start-up is not seen either.
    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', other.name, '--replicas=5');
    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', watched.name, '--replicas=4');
    await waitFor('the watched unit Deployment with 3 replicas', 60_000, async () => {
      const unit = await getDeployment(cluster.kc, watched.name, 'web-unit-burst');
      return unit?.spec?.replicas === 3;
    });
    expect((await ewIn(watched.name))?.metadata.finalizers).toContain(FINALIZER);

    const untouched = await ewIn(other.name);
    expect(untouched?.metadata.finalizers ?? []).toEqual([]);
    expect(untouched?.status).toBeUndefined();
    expect(await getDeployment(cluster.kc, other.name, 'web-unit-burst')).toBeUndefined();
    expect((await getDeployment(cluster.kc, other.name, 'web'))?.spec?.replicas).toBe(1);

    const log = lines.join('');
    expect(log).toContain(`reconciling ElasticWorkloads in ${watched.name} only`);
    expect(log).not.toMatch(/forbidden/i);
  });
});
