import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { every, PeriodicLoops } from './periodic.ts';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('every', () => {
  it('runs the work once per interval, first after one interval, until stopped', async () => {
    const work = vi.fn(async () => {});
    const stop = every(1000, work, () => {});
    await vi.advanceTimersByTimeAsync(999);
    expect(work).toHaveBeenCalledTimes(0);
    await vi.advanceTimersByTimeAsync(2001);
    expect(work).toHaveBeenCalledTimes(3);
    stop();
    stop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(work).toHaveBeenCalledTimes(3);
  });

  it('reports a rejected or throwing round and runs the next one', async () => {
    const errors: unknown[] = [];
    let round = 0;
    const stop = every(
      100,
      () => {
        round++;
        if (round === 1) return Promise.reject(new Error('rejected'));
        if (round === 2) throw new Error('thrown');
        return Promise.resolve();
      },
      (err) => errors.push((err as Error).message),
    );
    await vi.advanceTimersByTimeAsync(300);
    stop();
    expect(round).toBe(3);
    expect(errors).toEqual(['rejected', 'thrown']);
  });
});

describe('PeriodicLoops', () => {
  it('names the failing loop and stops every loop at once', async () => {
    const failures: string[] = [];
    const loops = new PeriodicLoops((what, err) => failures.push(`${what}: ${(err as Error).message}`));
    const lease = vi.fn(async () => {});
    loops.every(100, 'lease renewal', lease);
    loops.every(250, 'ping', async () => Promise.reject(new Error('unreachable')));
    await vi.advanceTimersByTimeAsync(500);
    expect(lease).toHaveBeenCalledTimes(5);
    expect(failures).toEqual(['ping: unreachable', 'ping: unreachable']);
    loops.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(lease).toHaveBeenCalledTimes(5);
    expect(failures).toHaveLength(2);
  });
});
