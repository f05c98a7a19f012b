/**
 * An operator that dies at one step: `node local-crash-child.ts <options.json>` starts a local provider, creates
 * the pods and SIGKILLs itself right after `step` completes (the `nth` time it does), as `kill -9` of the operator
 * would at that moment. Exits 3 when the step never came. Used by test/e2e/local-provider-crash.test.ts.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import { LocalProvider, type LocalProviderOptions } from '../../operator/providers/local/provider.ts';

/** What the parent passes in the JSON file. */
export interface CrashChildInput {
  options: LocalProviderOptions;
  /** A step's name, or `*` for any step of any pod. */
  step: string;
  /** Which time the step completes that the operator dies at (default: the first). */
  nth?: number;
  /** Created all at once (a burst). */
  pods: V1Pod[];
}

const input = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as CrashChildInput;
let seen = 0;
const provider = await LocalProvider.start({
  ...input.options,
  step: (name) => {
    if ((input.step === '*' || name === input.step) && ++seen === (input.nth ?? 1))
      process.kill(process.pid, 'SIGKILL');
  },
});
await Promise.all(input.pods.map((pod) => provider.create(pod)));
await sleep(30_000);
process.exit(3);
