/**
 * How a provider is built from its configuration: each provider's folder exports a {@link ProviderFactory}
 * (`fake/factory.ts`, `local/factory.ts`, `eci/factory.ts`) that parses and validates its own configuration and
 * returns a {@link SandboxProvider}; `index.ts` is the registry of them by name.
 */
import { z } from 'zod';
import type { SandboxProvider } from './types.ts';

/** What every factory is given besides its own configuration. */
export interface ProviderContext {
  /** The virtual node the provider serves (its instances are tagged with it). */
  nodeName: string;
  /** The node's pod CIDR when its configuration sets one (the node file's `podCIDR`). */
  podCIDR?: string;
  /** The file the configuration came from, for messages; absent when there was none. */
  configFile?: string;
  /** Where credentials come from when the configuration has none. */
  env: NodeJS.ProcessEnv;
}

/** A provider this build knows: what `--help` says about it, how its configuration is checked, how it starts. */
export interface ProviderFactory {
  /** One line for `spillway --help`. */
  summary: string;
  /** The Node's `spec.podCIDR` when the node's configuration sets none (the provider's own address range). */
  defaultPodCIDR?: string;
  /**
   * Checks the configuration (the provider config file's mapping, `undefined` without one) and the host without
   * starting anything or calling any API, so that the command refuses a bad configuration before it touches the
   * cluster; throws one message listing every problem.
   */
  validate(input: unknown, ctx: ProviderContext): void;
  /** Builds the provider; throws what {@link validate} throws for the same input. */
  create(input: unknown, ctx: ProviderContext): Promise<SandboxProvider>;
}

/** The problems of a failed zod parse, one `prefix.path: message` line each, under `title`. */
export function configProblems(title: string, prefix: string, error: z.ZodError): Error {
  const lines = error.issues.map(
    (i) => `${prefix}.${i.path.map(String).join('.') || '(root)'}: ${i.message}`,
  );
  return new Error(`${title}:\n  ${lines.join('\n  ')}`);
}
