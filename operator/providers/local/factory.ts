/**
 * The local provider's configuration and factory: the node's pod CIDR (the node file's `podCIDR`), the container
 * runtime's CRI socket and the RuntimeClass handler sandboxes run with. Each comes from the provider config file
 * (`criEndpoint`, `runtimeHandler`), else from `--cri-endpoint`/`--runtime-handler` (passed on as
 * `$SPILLWAY_CRI_ENDPOINT`/`$SPILLWAY_RUNTIME_HANDLER`), else the defaults: the local cluster's containerd
 * (`<cluster dir>/containerd/containerd.sock`, the cluster dir being `$SPILLWAY_CLUSTER_DIR` or the checkout's
 * `.cluster`) and `runc`. It needs root: the check is part of validation, so that `spillway run --provider local`
 * refuses before it touches the cluster.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configProblems, type ProviderContext, type ProviderFactory } from '../factory.ts';
import type { SandboxProvider } from '../types.ts';

/** A local node's pod CIDR when its configuration sets none; the bridge gets its first address. */
export const LOCAL_NODE_CIDR = '10.250.0.0/24';

/** The local provider's configuration. */
export const LocalConfigSchema = z.object({
  nodeName: z.string().min(1),
  nodeCIDR: z.cidrv4('an IPv4 CIDR such as 10.250.0.0/24').default(LOCAL_NODE_CIDR),
  /** containerd's CRI socket: a path or `unix:///path`. */
  criEndpoint: z.string().min(1, 'the CRI socket path of containerd, e.g. /run/containerd/containerd.sock'),
  /** The RuntimeClass handler of containerd's configuration that runs the sandboxes (`runc`, `kata`, `runsc`). */
  runtimeHandler: z.string().min(1).default('runc'),
});

/** The local cluster's containerd socket: `<cluster dir>/containerd/containerd.sock`. */
export function defaultCriEndpoint(env: NodeJS.ProcessEnv): string {
  const clusterDir =
    env['SPILLWAY_CLUSTER_DIR'] || fileURLToPath(new URL('../../../.cluster', import.meta.url));
  return join(clusterDir, 'containerd', 'containerd.sock');
}

/** The parsed configuration of a local provider. */
export type LocalConfig = z.infer<typeof LocalConfigSchema>;

/** Parses a local provider's configuration from the node's; throws every problem at once. */
export function parseLocalConfig(input: unknown, ctx: ProviderContext): LocalConfig {
  const file = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  const result = LocalConfigSchema.safeParse({
    nodeName: ctx.nodeName,
    ...(ctx.podCIDR ? { nodeCIDR: ctx.podCIDR } : {}),
    criEndpoint: file['criEndpoint'] ?? (ctx.env['SPILLWAY_CRI_ENDPOINT'] || defaultCriEndpoint(ctx.env)),
    ...(file['runtimeHandler'] !== undefined || ctx.env['SPILLWAY_RUNTIME_HANDLER']
      ? { runtimeHandler: file['runtimeHandler'] ?? ctx.env['SPILLWAY_RUNTIME_HANDLER'] }
      : {}),
  });
  if (result.success) return result.data;
  throw configProblems(`invalid local provider configuration of node ${ctx.nodeName}`, 'local', result.error);
}

function needsRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the local provider installs a network guard and a bridge for its pods and needs root: run it as root (sudo make run PROVIDER=local)',
    );
  }
}

/** Builds a local provider: installs its network guard and bridge, reaches containerd, adopts the sandboxes left running. */
export async function createLocalProvider(input: unknown, ctx: ProviderContext): Promise<SandboxProvider> {
  needsRoot();
  const config = parseLocalConfig(input, ctx);
  // Loaded only when a local node runs: the other commands never need its modules.
  const { LocalProvider } = await import('./provider.ts');
  return LocalProvider.start(config);
}

/** The local provider's registry entry. */
export const localProviderFactory: ProviderFactory = {
  summary:
    'pods from their images in containerd sandboxes on this host (needs root; make run PROVIDER=local)',
  defaultPodCIDR: LOCAL_NODE_CIDR,
  validate: (input, ctx) => {
    needsRoot();
    parseLocalConfig(input, ctx);
  },
  create: createLocalProvider,
};
