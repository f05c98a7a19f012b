/**
 * kube-proxy for tests: the operator's own launcher (operator/providers/local/kube-proxy.ts), which
 * `spillway run --provider local` uses, re-exported so that tests run exactly what the operator runs. Only the
 * defaults a test wants are added here: the test cluster's kubeconfig (its CA key beside it, so kube-proxy runs as
 * `system:kube-proxy`), bin/kube-proxy, and warnings (restarts) on stderr.
 */
import { join } from 'node:path';
import pino from 'pino';
import {
  startKubeProxy as startOperatorKubeProxy,
  type RunningKubeProxy,
  type StartKubeProxyOptions,
} from '../../operator/providers/local/kube-proxy.ts';
import { defaultBinDir, defaultClusterDir } from './cluster.ts';

export {
  cleanupKubeProxy,
  KUBE_PROXY_TABLES,
  stopKubeProxyIn,
  type RunningKubeProxy,
} from '../../operator/providers/local/kube-proxy.ts';

/** Options of {@link startKubeProxy}: the operator's, with the test cluster's kubeconfig and binary by default. */
export type KubeProxyOptions = Omit<StartKubeProxyOptions, 'kubeconfigPath'> & { kubeconfigPath?: string };

/** bin/kube-proxy of this repository. */
export const testKubeProxyBinary = join(defaultBinDir, 'kube-proxy');

/** Starts a supervised kube-proxy for the test cluster (SPILLWAY_CLUSTER_DIR's). */
export function startKubeProxy(opts: KubeProxyOptions): Promise<RunningKubeProxy> {
  return startOperatorKubeProxy({
    kubeconfigPath: join(defaultClusterDir, 'kubeconfig'),
    binary: testKubeProxyBinary,
    logger: pino({ level: 'warn', base: { component: 'kube-proxy' } }, pino.destination(2)),
    ...opts,
  });
}
