/**
 * The fake provider's configuration and factory: a provider config file may set what the fake node advertises
 * (the chart's `virtualNodes[].capacity`); nothing else is read.
 */
import { z } from 'zod';
import { configProblems, type ProviderContext, type ProviderFactory } from '../factory.ts';
import type { SandboxProvider } from '../types.ts';
import { FakeProvider } from './fake-provider.ts';

/** A quantity as YAML gives it: `64` and `'64'` are the same. */
const quantity = z.union([z.string(), z.number()]).transform(String);

/** The fake provider's configuration; other keys (the chart's, for other providers) are ignored. */
export const FakeConfigSchema = z.looseObject({
  capacity: z.record(z.string(), quantity).optional(),
});

/** The parsed configuration of a fake provider. */
export type FakeConfig = z.infer<typeof FakeConfigSchema>;

/** Parses a fake provider's configuration (`undefined`: none); throws every problem at once. */
export function parseFakeConfig(input: unknown, ctx: ProviderContext): FakeConfig {
  const result = FakeConfigSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  throw configProblems(
    `invalid fake provider configuration${ctx.configFile ? ` in ${ctx.configFile}` : ''}`,
    'fake',
    result.error,
  );
}

/** Builds a fake provider from its configuration. */
export async function createFakeProvider(input: unknown, ctx: ProviderContext): Promise<SandboxProvider> {
  const { capacity } = parseFakeConfig(input, ctx);
  return new FakeProvider({ startLatencyMs: 0, ...(capacity ? { capacity } : {}) });
}

/** The fake provider's registry entry. */
export const fakeProviderFactory: ProviderFactory = {
  summary: 'in memory, for demos and tests (a provider config may set its capacity)',
  validate: (input, ctx) => void parseFakeConfig(input, ctx),
  create: createFakeProvider,
};
