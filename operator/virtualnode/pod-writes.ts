/**
 * The pod controller's writes to Pods, over the narrow part of the API client it needs: the status patch, the
 * final delete and the eviction. Each write names the Pod by UID where the API allows it, so that a pod
 * re-created under the same name is never touched by what was meant for the old one.
 */
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type V1PodStatus } from '@kubernetes/client-node';
import { isApiError } from '../shared/client.ts';
import type { SandboxKey } from '../providers/types.ts';

/** The Pod calls of the CoreV1 API the pod controller makes (tests pass a recording fake). */
export type PodClient = Pick<
  CoreV1Api,
  'patchNamespacedPodStatus' | 'deleteNamespacedPod' | 'createNamespacedPodEviction'
>;

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Writes the status of `namespace/name`; a Pod that is gone (404) is not an error. Returns whether it wrote. */
export async function patchPodStatus(
  client: PodClient,
  namespace: string,
  name: string,
  status: V1PodStatus,
): Promise<boolean> {
  try {
    await client.patchNamespacedPodStatus(
      {
        name,
        namespace,
        // A merge patch leaves out what is undefined: a reason, message or address that no longer holds is
        // cleared with an explicit null, or it would stay on the pod for good.
        body: {
          status: {
            ...status,
            reason: status.reason ?? null,
            message: status.message ?? null,
            podIP: status.podIP ?? null,
          },
        },
      },
      mergePatch,
    );
    return true;
  } catch (err) {
    if (!isApiError(err, 404)) throw err;
    return false;
  }
}

/**
 * Deletes the Pod at once (grace 0: its containers are already stopped), only if it is still the pod `k.uid`.
 * A Pod already gone (404) or re-created under the same name (409) is left alone.
 */
export async function deletePodNow(client: PodClient, k: SandboxKey): Promise<void> {
  try {
    await client.deleteNamespacedPod({
      name: k.name,
      namespace: k.namespace,
      gracePeriodSeconds: 0,
      body: { gracePeriodSeconds: 0, preconditions: { uid: k.uid } },
    });
  } catch (err) {
    if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
  }
}

/**
 * Evicts the pod `k.uid` (graceful, and only this pod: the UID precondition). An eviction a PodDisruptionBudget
 * refuses (429) throws, so that the caller retries; a pod gone or replaced is left alone.
 */
export async function evictPod(client: PodClient, k: SandboxKey): Promise<void> {
  try {
    await client.createNamespacedPodEviction({
      name: k.name,
      namespace: k.namespace,
      body: {
        apiVersion: 'policy/v1',
        kind: 'Eviction',
        metadata: { name: k.name, namespace: k.namespace },
        deleteOptions: { preconditions: { uid: k.uid } },
      },
    });
  } catch (err) {
    if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
  }
}
