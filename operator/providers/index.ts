/**
 * The providers this build knows, by name, so the CLI and the chart pick one with `--provider`.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { FakeProvider } from './fake/fake-provider.ts';
import { parseEciConfig } from './eci/config.ts';
import type { SandboxProvider } from './types.ts';

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

/** A provider this build knows: what `--help` says about it, how its options are checked, how it starts. */
interface ProviderEntry {
  /** One line for `spillway --help`. */
  summary: string;
  /**
   * Checks the options and the configuration file without starting anything or calling any API, so that the
   * command can refuse a bad configuration before it touches the cluster; throws one message listing every problem.
   */
  validate(options: ProviderOptions): void;
  create(options: ProviderOptions): Promise<SandboxProvider>;
}

/** The configuration file's content (a mapping), or `{}` when there is none. */
function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  const parsed: unknown = parse(readFileSync(path, 'utf8')) ?? {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${path}: not a YAML mapping`);
  return parsed as Record<string, unknown>;
}

/** The ECI configuration a file and the environment make, as parsed by {@link parseEciConfig}. */
function eciConfigOf(options: ProviderOptions): Record<string, unknown> {
  if (!options.configFile) {
    throw new Error(
      'the eci provider needs --provider-config FILE with at least regionId, clusterId, vSwitchIds and securityGroupId (docs/eci.md)',
    );
  }
  const file = readConfigFile(options.configFile);
  const credentials = file.credentials ?? eciCredentialsFromEnv(options.env ?? process.env);
  return { ...file, ...(credentials ? { credentials } : {}), nodeName: options.nodeName };
}

const needsRoot = () => {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the local provider runs sandboxes in Linux namespaces and needs root: run it as root (sudo make run PROVIDER=local)',
    );
  }
};

/** Every provider by name: `--provider` accepts these, and `spillway --help` lists them from here. */
export const PROVIDERS = {
  fake: {
    summary: 'in memory, for demos and tests (a provider config may set its capacity)',
    validate: (options) => void readConfigFile(options.configFile),
    create: async (options) => {
      // A provider configuration may set what the fake node advertises (the chart's virtualNodes[].capacity).
      const file = readConfigFile(options.configFile) as { capacity?: Record<string, string> };
      return new FakeProvider({
        startLatencyMs: options.fakeStartLatencyMs ?? 0,
        ...(file.capacity ? { capacity: file.capacity } : {}),
      });
    },
  },
  local: {
    summary: 'sandboxes on this host in Linux namespaces (needs root; make run PROVIDER=local)',
    validate: needsRoot,
    create: async (options) => {
      needsRoot();
      const { LocalProvider } = await import('./local/provider.ts');
      return LocalProvider.start({
        nodeName: options.nodeName,
        ...(options.nodeCIDR ? { nodeCIDR: options.nodeCIDR } : {}),
      });
    },
  },
  eci: {
    summary: 'Alibaba Cloud Elastic Container Instance (needs --provider-config, docs/eci.md)',
    validate: (options) => void parseEciConfig(eciConfigOf(options)),
    create: async (options) => {
      const config = eciConfigOf(options);
      parseEciConfig(config);
      const { EciProvider } = await import('./eci/provider.ts');
      return new EciProvider({ config });
    },
  },
} satisfies Record<string, ProviderEntry>;

/** Provider names `--provider` accepts. */
export type ProviderName = keyof typeof PROVIDERS;
export const PROVIDER_NAMES = Object.keys(PROVIDERS) as ProviderName[];

function entryOf(name: string): ProviderEntry {
  if (!Object.hasOwn(PROVIDERS, name)) {
    throw new Error(`unknown provider "${name}": use one of ${PROVIDER_NAMES.join(', ')}`);
  }
  return PROVIDERS[name as ProviderName];
}

/** The `--help` lines about providers: one per registered provider, with its summary. */
export function providerHelp(indent = '  '): string {
  const width = Math.max(...PROVIDER_NAMES.map((n) => n.length)) + 2;
  return PROVIDER_NAMES.map((n) => `${indent}${n.padEnd(width)}${PROVIDERS[n].summary}`).join('\n');
}

/** Checks provider `name`'s options without starting it; throws a message saying what is wrong or missing. */
export function validateProvider(name: string, options: ProviderOptions): void {
  entryOf(name).validate(options);
}

/** Builds the provider `name`, or throws a message saying what is missing. */
export async function createProvider(name: string, options: ProviderOptions): Promise<SandboxProvider> {
  return entryOf(name).create(options);
}
