/**
 * `/metrics` with authentication against the real apiserver: a ServiceAccount token bound to the chart's
 * `spillway-metrics-reader` ClusterRole reads the metrics over HTTPS; a token without it gets 403; a forged or
 * missing token gets 401. TokenReview and SubjectAccessReview are the apiserver's own.
 */
import { request } from 'node:https';
import { CoreV1Api, RbacAuthorizationV1Api, type V1ClusterRole } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeClients } from '../../operator/shared/client.ts';
import { KubernetesMetricsAuth, metricsServingCertificate } from '../../operator/shared/metrics-auth.ts';
import { serveMetrics, type MetricsServer } from '../../operator/shared/metrics.ts';
import { findObject, renderChart } from '../support/chart.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';

/** Status and body of a GET on `url` with `token`; the server's certificate is self-signed. */
function scrape(url: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { rejectUnauthorized: false, headers: token ? { Authorization: `Bearer ${token}` } : {} },
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
}

describe('/metrics authentication against the apiserver', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let server: MetricsServer;
  let readerRole: string;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    cluster = await testCluster();
    ns = await createTestNamespace(cluster.kc, 'metrics-auth');
    const core = cluster.kc.makeApiClient(CoreV1Api);
    const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    // The chart's reader ClusterRole, under a name of this test's own.
    const chartRole = findObject<V1ClusterRole>(
      await renderChart(cluster.kubeconfigPath, 'spillway', ns.name),
      'ClusterRole',
      'spillway-metrics-reader',
    );
    readerRole = `spillway-metrics-reader-${ns.name}`;
    await rbac.createClusterRole({ body: { metadata: { name: readerRole }, rules: chartRole.rules } });
    for (const sa of ['prometheus', 'app']) {
      await core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: sa } } });
      const tr = await core.createNamespacedServiceAccountToken({
        namespace: ns.name,
        name: sa,
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      tokens[sa] = tr.status!.token!;
    }
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: readerRole },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: readerRole },
        subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: ns.name }],
      },
    });
    // Refusals are cached for a while: scrape only once the authorizer knows the binding.
    await waitFor(
      'the reader binding in effect',
      30_000,
      async () =>
        (
          await kubectl(
            cluster.kubeconfigPath,
            'auth',
            'can-i',
            'get',
            '/metrics',
            `--as=system:serviceaccount:${ns.name}:prometheus`,
          ).catch(() => 'no')
        ).trim() === 'yes',
    );
    const pair = await metricsServingCertificate({ ipAddresses: ['127.0.0.1'] });
    server = await serveMetrics({
      port: 0,
      auth: new KubernetesMetricsAuth(makeClients(cluster.kc)),
      tls: { cert: pair.certPem, key: pair.keyPem },
    });
  });

  afterAll(async () => {
    await server?.close();
    const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.deleteClusterRoleBinding({ name: readerRole }).catch(() => undefined);
    await rbac.deleteClusterRole({ name: readerRole }).catch(() => undefined);
    await ns?.remove();
  });

  it('serves a token allowed get /metrics, refuses one without the permission (403) and a forged one (401)', async () => {
    const allowed = await scrape(server.url, tokens.prometheus);
    expect(allowed.status).toBe(200);
    expect(allowed.body).toContain('process_resident_memory_bytes');

    const denied = await scrape(server.url, tokens.app);
    expect(denied.status).toBe(403);
    expect(denied.body).toContain(`system:serviceaccount:${ns.name}:app may not get /metrics`);

    expect((await scrape(server.url, `${tokens.prometheus!.slice(0, -4)}AAAA`)).status).toBe(401);
    expect((await scrape(server.url)).status).toBe(401);
  });
});
