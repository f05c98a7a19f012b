/**
 * The local provider's configuration and factory. Its configuration is the node's pod CIDR (the node file's
 * `podCIDR`); a provider config file, if any, is not read. It needs root: the check is part of validation, so
 * that `spillway run --provider local` refuses before it touches the cluster.
 */
import { z } from 'zod';
import { configProblems, type ProviderContext, type ProviderFactory } from '../factory.ts';
import type { SandboxProvider } from '../types.ts';

/** A local node's pod CIDR when its configuration sets none; the bridge gets its first address. */
export const LOCAL_NODE_CIDR = '10.250.0.0/24';

/** The local provider's configuration. */
export const LocalConfigSchema = z.object({
  nodeName: z.string().min(1),
  nodeCIDR: z.cidrv4('an IPv4 CIDR such as 10.250.0.0/24').default(LOCAL_NODE_CIDR),
});

/** The parsed configuration of a local provider. */
export type LocalConfig = z.infer<typeof LocalConfigSchema>;

/** Parses a local provider's configuration from the node's; throws every problem at once. */
export function parseLocalConfig(_input: unknown, ctx: ProviderContext): LocalConfig {
  const result = LocalConfigSchema.safeParse({
    nodeName: ctx.nodeName,
    ...(ctx.podCIDR ? { nodeCIDR: ctx.podCIDR } : {}),
  });
  if (result.success) return result.data;
  throw configProblems(`invalid local provider configuration of node ${ctx.nodeName}`, 'local', result.error);
}

function needsRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the local provider runs sandboxes in Linux namespaces and needs root: run it as root (sudo make run PROVIDER=local)',
    );
  }
}

/** Builds a local provider: installs its network guard and bridge and adopts the sandboxes left running. */
export async function createLocalProvider(input: unknown, ctx: ProviderContext): Promise<SandboxProvider> {
  needsRoot();
  const config = parseLocalConfig(input, ctx);
  // Loaded only when a local node runs: the other commands never need its modules.
  const { LocalProvider } = await import('./provider.ts');
  return LocalProvider.start(config);
}

/** The local provider's registry entry. */
export const localProviderFactory: ProviderFactory = {
  summary: 'sandboxes on this host in Linux namespaces (needs root; make run PROVIDER=local)',
  defaultPodCIDR: LOCAL_NODE_CIDR,
  validate: (input, ctx) => {
    needsRoot();
    parseLocalConfig(input, ctx);
  },
  create: createLocalProvider,
};
