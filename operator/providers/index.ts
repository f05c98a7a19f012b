/**
 * The providers this build knows, by name, so the CLI and the chart pick one with `--provider`.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { FakeProvider } from './fake/fake-provider.ts';
import type { SandboxProvider } from './types.ts';

/** Provider names `--provider` accepts. */
export const PROVIDER_NAMES = ['fake', 'local', 'eci'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/** Options common to every provider; each provider reads its own part. */
export interface ProviderOptions {
  /** The virtual node the provider serves (its instances are tagged with it). */
  nodeName: string;
  /** Fake provider: simulated start latency. */
  fakeStartLatencyMs?: number;
  /** Local provider: this node's pod CIDR (the bridge gets its first address). */
  nodeCIDR?: string;
  /** ECI provider: a YAML file with the provider configuration (docs/eci.md). */
  configFile?: string;
  /** Where credentials come from when the file has none; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

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

/** Builds the provider `name`, or throws a message saying what is missing. */
export async function createProvider(name: string, options: ProviderOptions): Promise<SandboxProvider> {
  switch (name) {
    case 'fake': {
      // A provider configuration may set what the fake node advertises (the chart's virtualNodes[].capacity).
      const file = options.configFile
        ? ((parse(readFileSync(options.configFile, 'utf8')) ?? {}) as { capacity?: Record<string, string> })
        : {};
      return new FakeProvider({
        startLatencyMs: options.fakeStartLatencyMs ?? 0,
        ...(file.capacity ? { capacity: file.capacity } : {}),
      });
    }
    case 'local': {
      if (process.getuid?.() !== 0) {
        throw new Error(
          'the local provider runs sandboxes in Linux namespaces and needs root: run it as root (sudo make run PROVIDER=local)',
        );
      }
      const { LocalProvider } = await import('./local/provider.ts');
      return LocalProvider.start({
        nodeName: options.nodeName,
        ...(options.nodeCIDR ? { nodeCIDR: options.nodeCIDR } : {}),
      });
    }
    case 'eci': {
      if (!options.configFile) {
        throw new Error(
          'the eci provider needs --provider-config FILE with at least regionId, clusterId, vSwitchIds and securityGroupId (docs/eci.md)',
        );
      }
      const file = (parse(readFileSync(options.configFile, 'utf8')) ?? {}) as Record<string, unknown>;
      const credentials = file.credentials ?? eciCredentialsFromEnv(options.env ?? process.env);
      if (!credentials) {
        throw new Error(
          'the eci provider found no credentials: set RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) or ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET from a Secret',
        );
      }
      const { EciProvider } = await import('./eci/provider.ts');
      return new EciProvider({ config: { ...file, credentials, nodeName: options.nodeName } });
    }
    default:
      throw new Error(`unknown provider "${name}": use one of ${PROVIDER_NAMES.join(', ')}`);
  }
}
