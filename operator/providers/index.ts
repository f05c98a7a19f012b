/**
 * The providers this build knows, by name, so the CLI and the chart pick one with `--provider`.
 */
import { FakeProvider } from './fake/fake-provider.ts';
import type { SandboxProvider } from './types.ts';

/** Provider names `--provider` accepts. */
export const PROVIDER_NAMES = ['fake'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/** Options common to every provider; each provider reads its own part. */
export interface ProviderOptions {
  /** The virtual node the provider serves (its instances are tagged with it). */
  nodeName: string;
  /** Fake provider: simulated start latency. */
  fakeStartLatencyMs?: number;
}

/** Builds the provider `name`, or throws a message listing the ones available. */
export async function createProvider(name: string, options: ProviderOptions): Promise<SandboxProvider> {
  switch (name) {
    case 'fake':
      return new FakeProvider({ startLatencyMs: options.fakeStartLatencyMs ?? 0 });
    default:
      throw new Error(`unknown provider "${name}": use one of ${PROVIDER_NAMES.join(', ')}`);
  }
}
