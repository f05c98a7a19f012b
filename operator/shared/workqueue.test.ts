import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from './log.ts';
import { registry } from './metrics.ts';
import {
  ExponentialBackoffLimiter,
  MaxOfLimiter,
  runWorkers,
  TerminalError,
  TokenBucketLimiter,
  WorkQueue,
  type ReconcileResult,
} from './workqueue.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The sample line of `spillway_workqueue_<metric>` for the test queue. */
const text = (metrics: string, metric: string) =>
  metrics.split('\n').find((l) => l.startsWith(`spillway_workqueue_${metric}{name="wq-metrics-test"}`));

/** Resolves pending microtasks without moving the fake clock. */
const settle = () => vi.advanceTimersByTimeAsync(0);

describe('WorkQueue', () => {
  it('processes a key added many times while waiting once', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    q.add('ns/a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('ns/a');
    expect(await q.get()).toBe('ns/b');
    expect(q.length).toBe(0);
  });

  it('never hands out a key being processed; a re-add runs after done', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    const key = await q.get();
    q.add('ns/a');
    q.add('ns/a');
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await settle();
    expect(second).toBeUndefined();
    q.done(key!);
    await settle();
    expect(second).toBe('ns/a');
    q.done('ns/a');
    expect(q.length).toBe(0);
  });

  it('wakes a blocked get when a key arrives', async () => {
    const q = new WorkQueue();
    const next = q.get();
    q.add('ns/a');
    await expect(next).resolves.toBe('ns/a');
  });

  it('adds after a delay, the earliest of several delays winning', async () => {
    const q = new WorkQueue();
    q.addAfter('ns/a', 1_000);
    q.addAfter('ns/a', 300);
    q.addAfter('ns/a', 2_000);
    await vi.advanceTimersByTimeAsync(299);
    expect(q.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.length).toBe(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(q.length).toBe(1);
  });

  it('backs a failing key off exponentially until forgotten', async () => {
    const q = new WorkQueue({ rateLimiter: new ExponentialBackoffLimiter(5, 1_000) });
    q.addRateLimited('ns/a'); // 5 ms
    q.addRateLimited('ns/b'); // another key starts at 5 ms too
    await vi.advanceTimersByTimeAsync(5);
    expect(q.length).toBe(2);
    await q.get();
    await q.get();
    q.done('ns/a');
    q.done('ns/b');
    q.addRateLimited('ns/a'); // 10 ms
    await vi.advanceTimersByTimeAsync(9);
    expect(q.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.length).toBe(1);
    expect(q.numRequeues('ns/a')).toBe(2);
    q.forget('ns/a');
    expect(q.numRequeues('ns/a')).toBe(0);
  });

  it('on shutDown drops waiting keys, wakes blocked workers and waits for keys being processed', async () => {
    const q = new WorkQueue();
    q.add('ns/busy');
    const busy = await q.get();
    q.add('ns/waiting');
    q.addAfter('ns/later', 100);
    const blocked = q.get();
    expect(await blocked).toBe('ns/waiting');
    const idle = q.get();

    let drained = false;
    const shut = q.shutDown().then(() => (drained = true));
    await expect(idle).resolves.toBeUndefined();
    await expect(q.get()).resolves.toBeUndefined();
    q.add('ns/new');
    await vi.advanceTimersByTimeAsync(200);
    expect(q.length).toBe(0);

    q.done(busy!);
    await settle();
    expect(drained).toBe(false);
    q.done('ns/waiting');
    await shut;
    expect(drained).toBe(true);
  });
});

describe('rate limiters', () => {
  it.each([
    [1, 5],
    [2, 10],
    [3, 20],
    [8, 640],
    [9, 1_000],
    [30, 1_000],
  ])('exponential backoff: failure %i waits %i ms (base 5, cap 1000)', (failures, ms) => {
    const limiter = new ExponentialBackoffLimiter(5, 1_000);
    let delay = 0;
    for (let i = 0; i < failures; i++) delay = limiter.when('k');
    expect(delay).toBe(ms);
  });

  it('defaults to a 1000 s cap', () => {
    const limiter = new ExponentialBackoffLimiter();
    for (let i = 0; i < 100; i++) limiter.when('k');
    expect(limiter.when('k')).toBe(1_000_000);
  });

  it('token bucket: a burst is free, then one token per 1/qps', async () => {
    const bucket = new TokenBucketLimiter(10, 3);
    expect([bucket.when('a'), bucket.when('b'), bucket.when('c')]).toEqual([0, 0, 0]);
    expect(bucket.when('d')).toBe(100);
    expect(bucket.when('e')).toBe(200);
    await vi.advanceTimersByTimeAsync(1_000);
    // 10 tokens accrued, minus the 2 reserved, capped at the burst of 3.
    expect([bucket.when('f'), bucket.when('g'), bucket.when('h'), bucket.when('i')]).toEqual([0, 0, 0, 100]);
  });

  it('max-of combines per-key backoff with the overall bucket', () => {
    const limiter = new MaxOfLimiter(
      new ExponentialBackoffLimiter(5, 1_000_000),
      new TokenBucketLimiter(10, 1),
    );
    expect(limiter.when('a')).toBe(5);
    expect(limiter.when('b')).toBe(100);
    expect(limiter.numRequeues('a')).toBe(1);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
  });
});

describe('runWorkers', () => {
  it('retries a failing key with backoff until it succeeds, then forgets it', async () => {
    const q = new WorkQueue({ rateLimiter: new ExponentialBackoffLimiter(5, 1_000) });
    const calls: number[] = [];
    const running = runWorkers(q, 2, (key) => {
      calls.push(Date.now());
      if (calls.length < 3) throw new Error(`conflict on ${key}`);
    });
    const start = Date.now();
    q.add('ns/a');
    await vi.advanceTimersByTimeAsync(100);
    expect(calls.map((t) => t - start)).toEqual([0, 5, 15]);
    expect(q.numRequeues('ns/a')).toBe(0);
    await q.shutDown();
    await running;
  });

  it('does not retry a TerminalError, and logs it with the key', async () => {
    const q = new WorkQueue();
    const reconcile = vi.fn(() => {
      throw new TerminalError('spec.replicas must be ≥ 0');
    });
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
    const running = runWorkers(q, 1, reconcile, { logger });
    q.add('ns/a');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(reconcile).toHaveBeenCalledTimes(1);
    expect(lines).toEqual([
      expect.objectContaining({ level: 'error', key: 'ns/a', err: 'spec.replicas must be ≥ 0' }),
    ]);
    await q.shutDown();
    await running;
  });

  it('honours requeueAfter', async () => {
    const q = new WorkQueue();
    const calls: number[] = [];
    const running = runWorkers(q, 1, (): ReconcileResult => {
      calls.push(Date.now());
      return calls.length === 1 ? { requeueAfter: 30_000 } : {};
    });
    const start = Date.now();
    q.add('ns/a');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls.map((t) => t - start)).toEqual([0, 30_000]);
    await q.shutDown();
    await running;
  });

  it('never reconciles one key on two workers at once, yet sees every change', async () => {
    const q = new WorkQueue();
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    const running = runWorkers(q, 4, async () => {
      inFlight++;
      runs++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 10));
      inFlight--;
    });
    q.add('ns/a');
    await vi.advanceTimersByTimeAsync(1);
    q.add('ns/a'); // a change arrives during the first run
    q.add('ns/a'); // and another: deduplicated with it
    await vi.advanceTimersByTimeAsync(100);
    expect(maxInFlight).toBe(1);
    expect(runs).toBe(2);
    await q.shutDown();
    await running;
  });

  it('runs different keys in parallel up to the concurrency', async () => {
    const q = new WorkQueue();
    let inFlight = 0;
    let maxInFlight = 0;
    const running = runWorkers(q, 3, async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 10));
      inFlight--;
    });
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await vi.advanceTimersByTimeAsync(100);
    expect(maxInFlight).toBe(3);
    await q.shutDown();
    await running;
  });

  it('records depth, adds and retries for a named queue', async () => {
    const q = new WorkQueue({ name: 'wq-metrics-test' });
    const running = runWorkers(q, 1, () => {
      throw new Error('nope');
    });
    q.add('ns/a'); // handed to the worker at once
    q.add('ns/a'); // arrives while it runs: one more run right after, before the 5 ms backoff
    q.add('ns/b');
    q.add('ns/b'); // deduplicated, but still counted as an add
    await vi.advanceTimersByTimeAsync(1);
    expect(text(await registry.metrics(), 'depth')).toBe(
      'spillway_workqueue_depth{name="wq-metrics-test"} 0',
    );
    await q.shutDown();
    await running;
    const metrics = await registry.metrics();
    expect(text(metrics, 'adds_total')).toBe('spillway_workqueue_adds_total{name="wq-metrics-test"} 4');
    expect(text(metrics, 'retries_total')).toBe('spillway_workqueue_retries_total{name="wq-metrics-test"} 3');
    expect(text(metrics, 'work_duration_seconds_count')).toBe(
      'spillway_workqueue_work_duration_seconds_count{name="wq-metrics-test"} 3',
    );
  });
});
