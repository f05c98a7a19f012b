/** Installs the ElasticWorkload CRD (server-side apply) and waits until the apiserver serves it. */
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyRaw } from '../shared/raw.ts';
import { elasticWorkloadCrd } from './crd.ts';

/** Applies the CRD and resolves once it is Established; throws after `timeoutMs`. */
export async function installCrd(
  kc: KubeConfig,
  fieldManager = 'spillway',
  timeoutMs = 30_000,
): Promise<void> {
  const crd = elasticWorkloadCrd();
  await applyRaw(kc, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd, fieldManager);
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await api.readCustomResourceDefinition({ name: crd.metadata.name });
    if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
    if (Date.now() > deadline)
      throw new Error(`CRD ${crd.metadata.name} not Established after ${timeoutMs} ms`);
    await sleep(100);
  }
}
