/**
 * The ECI provider's factory: the provider config file (docs/eci.md), credentials from the environment when the
 * file has none, validated by `config.ts` before anything is built.
 */
import type { ProviderContext, ProviderFactory } from '../factory.ts';
import type { SandboxProvider } from '../types.ts';
import { parseEciConfig, type EciConfig } from './config.ts';

/**
 * ECI credentials from the environment, the way the chart passes them: RRSA (the variables ACK's pod identity
 * webhook sets) first, then an AccessKey pair mounted from a Secret. Never logged.
 */
export function eciCredentialsFromEnv(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
  if (
    env.ALIBABA_CLOUD_ROLE_ARN &&
    env.ALIBABA_CLOUD_OIDC_PROVIDER_ARN &&
    env.ALIBABA_CLOUD_OIDC_TOKEN_FILE
  ) {
    return {
      type: 'oidc_role_arn',
      roleArn: env.ALIBABA_CLOUD_ROLE_ARN,
      oidcProviderArn: env.ALIBABA_CLOUD_OIDC_PROVIDER_ARN,
      oidcTokenFilePath: env.ALIBABA_CLOUD_OIDC_TOKEN_FILE,
    };
  }
  if (env.ALIBABA_CLOUD_ACCESS_KEY_ID && env.ALIBABA_CLOUD_ACCESS_KEY_SECRET) {
    return {
      type: 'access_key',
      accessKeyId: env.ALIBABA_CLOUD_ACCESS_KEY_ID,
      accessKeySecret: env.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
    };
  }
  return undefined;
}

/** The raw ECI configuration the file and the environment make (what {@link parseEciConfig} reads). */
function eciInput(input: unknown, ctx: ProviderContext): Record<string, unknown> {
  if (input === undefined) {
    throw new Error(
      'the eci provider needs --provider-config FILE with at least regionId, clusterId, vSwitchIds and securityGroupId (docs/eci.md)',
    );
  }
  const file = input as Record<string, unknown>;
  const credentials = file.credentials ?? eciCredentialsFromEnv(ctx.env);
  return { ...file, ...(credentials ? { credentials } : {}), nodeName: ctx.nodeName };
}

/** Parses an ECI provider's configuration; throws every missing or invalid field at once. */
export function parseEciProviderConfig(input: unknown, ctx: ProviderContext): EciConfig {
  return parseEciConfig(eciInput(input, ctx));
}

/** Builds an ECI provider from its configuration. */
export async function createEciProvider(input: unknown, ctx: ProviderContext): Promise<SandboxProvider> {
  const config = eciInput(input, ctx);
  parseEciConfig(config);
  // Loaded only when an ECI node runs: the Alibaba Cloud SDK is large.
  const { EciProvider } = await import('./provider.ts');
  return new EciProvider({ config });
}

/** The ECI provider's registry entry. */
export const eciProviderFactory: ProviderFactory = {
  summary: 'Alibaba Cloud Elastic Container Instance (needs --provider-config, docs/eci.md)',
  validate: (input, ctx) => void parseEciProviderConfig(input, ctx),
  create: createEciProvider,
};
