/**
 * Stand-ins for the CRDs of cert-manager (Certificate, Issuer) and the Prometheus Operator (ServiceMonitor), so
 * that the apiserver can dry-run a rendered chart that uses them. They accept any spec: they prove the kinds
 * and metadata resolve, not what cert-manager or Prometheus would do. Created only when absent, removed after.
 */
import {
  ApiextensionsV1Api,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { waitFor } from './cluster.ts';

const STUB_LABEL = 'spillway.dev/test-stub';

function stub(group: string, kind: string, plural: string): V1CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}`, labels: { [STUB_LABEL]: 'true' } },
    spec: {
      group,
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: { spec: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
            },
          },
        },
      ],
    },
  };
}

const STUBS = [
  stub('cert-manager.io', 'Certificate', 'certificates'),
  stub('cert-manager.io', 'Issuer', 'issuers'),
  stub('monitoring.coreos.com', 'ServiceMonitor', 'servicemonitors'),
];

/** Creates the stubs that are missing and waits until they are established; resolves with a remover. */
export async function installThirdPartyCrdStubs(kc: KubeConfig): Promise<() => Promise<void>> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const created: string[] = [];
  for (const crd of STUBS) {
    const name = crd.metadata!.name!;
    try {
      await api.readCustomResourceDefinition({ name });
      continue; // the real one (or an earlier stub) is there
    } catch {
      await api.createCustomResourceDefinition({ body: crd });
      created.push(name);
    }
    await waitFor(`CRD ${name} established`, 30_000, async () => {
      const c = await api.readCustomResourceDefinition({ name });
      return !!c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True');
    });
  }
  return async () => {
    for (const name of created) await api.deleteCustomResourceDefinition({ name }).catch(() => undefined);
  };
}
