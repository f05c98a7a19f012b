/** Small helpers for integration tests: kubectl against the test cluster, and reading objects. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CustomObjectsApi, type KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import { defaultBinDir } from './cluster.ts';

const run = promisify(execFile);

/** Runs the built kubectl against `kubeconfig`; resolves with stdout, rejects with stderr in the message. */
export async function kubectl(kubeconfig: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(join(defaultBinDir, 'kubectl'), args, {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      maxBuffer: 16 << 20,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

/** The Deployment, or undefined when it does not exist. */
export async function getDeployment(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<V1Deployment | undefined> {
  try {
    return await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace, name });
  } catch {
    return undefined;
  }
}

/** A custom object as plain JSON, or undefined. */
export async function getCustomObject<T>(
  kc: KubeConfig,
  group: string,
  version: string,
  plural: string,
  namespace: string,
  name: string,
): Promise<T | undefined> {
  try {
    return (await kc
      .makeApiClient(CustomObjectsApi)
      .getNamespacedCustomObject({ group, version, plural, namespace, name })) as T;
  } catch {
    return undefined;
  }
}
