import { describe, expect, it } from 'vitest';
import { waitFor } from './wait.ts';

describe('waitFor', () => {
  it('resolves once the check holds, treating a throwing check as not yet', async () => {
    let calls = 0;
    await waitFor(
      'the third call',
      5_000,
      async () => {
        calls += 1;
        if (calls === 1) throw new Error('not listening yet');
        return calls >= 3;
      },
      1,
    );
    expect(calls).toBe(3);
  });

  it('names what it waited for and the last error when it times out', async () => {
    await expect(
      waitFor(
        'CoreDNS to answer',
        20,
        async () => {
          throw new Error('ECONNREFUSED');
        },
        5,
      ),
    ).rejects.toThrow('timed out after 20 ms waiting for CoreDNS to answer: Error: ECONNREFUSED');
  });
});
