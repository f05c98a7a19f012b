import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from './rate-limit.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** Starts `n` takes and returns the order in which they were granted. */
function takeMany(bucket: TokenBucket, n: number): number[] {
  const granted: number[] = [];
  for (let i = 0; i < n; i++) void bucket.take().then(() => granted.push(i));
  return granted;
}

describe('TokenBucket', () => {
  it('grants the burst at once, then the rest at the sustained rate, in arrival order', async () => {
    const bucket = new TokenBucket(10, 3, () => Date.now());
    const granted = takeMany(bucket, 6);
    await vi.advanceTimersByTimeAsync(0);
    expect(granted).toEqual([0, 1, 2]);
    await vi.advanceTimersByTimeAsync(100);
    expect(granted).toEqual([0, 1, 2, 3]);
    await vi.advanceTimersByTimeAsync(200);
    expect(granted).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('after a throttling answer, nobody gets a token until the pause is over', async () => {
    const bucket = new TokenBucket(100, 100, () => Date.now());
    bucket.pause(1000);
    const granted = takeMany(bucket, 2);
    await vi.advanceTimersByTimeAsync(999);
    expect(granted).toEqual([]);
    await vi.advanceTimersByTimeAsync(30);
    expect(granted).toEqual([0, 1]);
  });
});
