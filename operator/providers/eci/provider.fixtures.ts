/** Test fixtures for the ECI provider: a fresh fake ECI endpoint per test, and providers pointed at it. */
import { afterEach, beforeEach } from 'vitest';
import { fakeEciConfig } from '../../../test/support/fake-eci/provider-config.ts';
import { FakeEci } from '../../../test/support/fake-eci/server.ts';
import { createLogger } from '../../shared/log.ts';
import type { EciConfigInput } from './config.ts';
import { EciProvider } from './provider.ts';

/**
 * Registers a fake ECI endpoint started before and closed after each test of the calling file. `provider()`
 * builds a silent provider on it (closed after the test too); `fake` is the current endpoint.
 */
export function useFakeEci(): {
  readonly fake: FakeEci;
  provider: (overrides?: Partial<EciConfigInput>) => EciProvider;
} {
  let fake: FakeEci | undefined;
  const providers: EciProvider[] = [];
  const silent = createLogger({ level: 'silent' });
  beforeEach(async () => {
    fake = await FakeEci.start();
  });
  afterEach(async () => {
    await Promise.all(providers.splice(0).map((p) => p.close()));
    await fake?.close();
  });
  const current = () => {
    if (!fake) throw new Error('useFakeEci(): no test is running');
    return fake;
  };
  return {
    get fake() {
      return current();
    },
    provider: (overrides = {}) => {
      const p = new EciProvider({ config: fakeEciConfig(current(), overrides), logger: silent });
      providers.push(p);
      return p;
    },
  };
}
