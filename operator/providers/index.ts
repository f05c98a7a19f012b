/**
 * The providers this build knows, by name, so the CLI and the chart pick one with `--provider`. Each provider's
 * folder exports its factory (`<name>/factory.ts`: its configuration schema, validation and construction); this
 * file only maps names to factories and reads the provider config file they are given.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { eciProviderFactory } from './eci/factory.ts';
import type { ProviderContext, ProviderFactory } from './factory.ts';
import { fakeProviderFactory } from './fake/factory.ts';
import { localProviderFactory } from './local/factory.ts';
import type { SandboxProvider } from './types.ts';

export type { ProviderContext, ProviderFactory } from './factory.ts';

/** Where one node's provider configuration comes from. */
export interface ProviderOptions {
  /** The virtual node the provider serves (its instances are tagged with it). */
  nodeName: string;
  /** The node's pod CIDR when its configuration sets one (the local provider's address range). */
  podCIDR?: string;
  /** A YAML file with the provider configuration (eci: docs/eci.md; fake: its capacity). */
  configFile?: string;
  /** Where credentials come from when the file has none; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Every provider by name: `--provider` accepts these, and `spillway --help` lists them from here. */
export const PROVIDERS = {
  fake: fakeProviderFactory,
  local: localProviderFactory,
  eci: eciProviderFactory,
} satisfies Record<string, ProviderFactory>;

/** Provider names `--provider` accepts. */
export type ProviderName = keyof typeof PROVIDERS;
/** {@link PROVIDERS}' names, in registry order. */
export const PROVIDER_NAMES = Object.keys(PROVIDERS) as ProviderName[];

/** The factory of provider `name`, or a message naming the known ones. */
export function providerFactory(name: string): ProviderFactory {
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

/** The configuration file's content (a mapping; `{}` when empty), or `undefined` when there is none. */
function readConfigFile(path: string | undefined): Record<string, unknown> | undefined {
  if (!path) return undefined;
  const parsed: unknown = parse(readFileSync(path, 'utf8')) ?? {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${path}: not a YAML mapping`);
  return parsed as Record<string, unknown>;
}

function contextOf(options: ProviderOptions): ProviderContext {
  return {
    nodeName: options.nodeName,
    env: options.env ?? process.env,
    ...(options.podCIDR ? { podCIDR: options.podCIDR } : {}),
    ...(options.configFile ? { configFile: options.configFile } : {}),
  };
}

/** Checks provider `name`'s configuration without starting it; throws a message saying what is wrong or missing. */
export function validateProvider(name: string, options: ProviderOptions): void {
  const factory = providerFactory(name);
  factory.validate(readConfigFile(options.configFile), contextOf(options));
}

/** Builds the provider `name`, or throws a message saying what is missing. */
export async function createProvider(name: string, options: ProviderOptions): Promise<SandboxProvider> {
  const factory = providerFactory(name);
  return factory.create(readConfigFile(options.configFile), contextOf(options));
}

/** The pod CIDR node `name`'s Node gets: its configuration's, else its provider's own range, else none. */
export function nodePodCIDR(name: string, configured: string | undefined): string | undefined {
  return configured ?? providerFactory(name).defaultPodCIDR;
}
