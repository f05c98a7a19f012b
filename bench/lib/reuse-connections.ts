/**
 * A what-if for diagnosis, never the default: @kubernetes/client-node 2.0.1 builds a new undici Agent in
 * `applySecurityAuthentication`, i.e. for every request, so every API call opens (and leaves open) its own TLS
 * connection to the apiserver. With `BENCH_REUSE_CONNECTIONS=1` a benchmark entry memoises that dispatcher per
 * cluster/user, to show how much of a result that costs. Results say which mode they were measured in.
 */
import type { KubeConfig } from '@kubernetes/client-node';

/** True when the what-if is asked for. */
export const reuseConnections = process.env.BENCH_REUSE_CONNECTIONS === '1';

/** Makes every client built from `kc` share one dispatcher (connection pool) per cluster/user. */
export function shareDispatcher(kc: KubeConfig): void {
  const k = kc as unknown as {
    createDispatcher: (cluster: unknown, options: unknown) => unknown;
    getAgentCacheKey: (cluster: unknown) => string;
  };
  const original = k.createDispatcher.bind(kc);
  const cache = new Map<string, unknown>();
  k.createDispatcher = (cluster, options) => {
    const key = k.getAgentCacheKey(cluster);
    if (!cache.has(key)) cache.set(key, original(cluster, options));
    return cache.get(key);
  };
}
