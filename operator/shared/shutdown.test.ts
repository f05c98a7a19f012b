import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { GracefulShutdown } from './shutdown.ts';

function setup(deadlineMs = 1_000) {
  const signals = new EventEmitter();
  const exit = vi.fn<(code: number) => void>();
  const shutdown = new GracefulShutdown({ deadlineMs, exit });
  shutdown.listen(signals);
  return { signals, exit, shutdown };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('GracefulShutdown', () => {
  it('runs closers newest first on SIGTERM, then exits 0', async () => {
    const { signals, exit, shutdown } = setup();
    const order: string[] = [];
    shutdown.onShutdown('informers', () => void order.push('informers'));
    shutdown.onShutdown('workers', async () => {
      await new Promise((r) => setTimeout(r, 5));
      order.push('workers');
    });
    shutdown.onShutdown('metrics', () => void order.push('metrics'));

    signals.emit('SIGTERM');
    await vi.waitFor(() => expect(exit).toHaveBeenCalled());
    expect(order).toEqual(['metrics', 'workers', 'informers']);
    expect(exit).toHaveBeenCalledExactlyOnceWith(0);
  });

  it('also reacts to SIGINT', async () => {
    const { signals, exit } = setup();
    signals.emit('SIGINT');
    await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(0));
  });

  it('keeps going after a failing closer and exits 1', async () => {
    const { exit, shutdown } = setup();
    const ran: string[] = [];
    shutdown.onShutdown('first', () => void ran.push('first'));
    shutdown.onShutdown('broken', () => {
      throw new Error('boom');
    });
    expect(await shutdown.shutdown('test')).toBe(1);
    expect(ran).toEqual(['first']);
    expect(exit).toHaveBeenCalledExactlyOnceWith(1);
  });

  it('exits 1 at the deadline when a closer hangs, without running the ones after it', async () => {
    vi.useFakeTimers();
    const { exit, shutdown } = setup(5_000);
    const later = vi.fn();
    shutdown.onShutdown('later', later);
    shutdown.onShutdown('stuck', () => new Promise<void>(() => {}));
    const done = shutdown.shutdown('test');
    await vi.advanceTimersByTimeAsync(4_999);
    expect(exit).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(await done).toBe(1);
    expect(exit).toHaveBeenCalledExactlyOnceWith(1);
    expect(later).not.toHaveBeenCalled();
  });

  it('runs closers once however often it is asked', async () => {
    const { exit, shutdown } = setup();
    const closer = vi.fn();
    shutdown.onShutdown('x', closer);
    const a = shutdown.shutdown('first');
    const b = shutdown.shutdown('second');
    expect(a).toBe(b);
    await a;
    expect(closer).toHaveBeenCalledTimes(1);
    expect(exit).toHaveBeenCalledTimes(1);
  });

  it('exits 130 at once on a second signal while a closer hangs', async () => {
    const { signals, exit, shutdown } = setup(60_000);
    shutdown.onShutdown('stuck', () => new Promise<void>(() => {}));
    signals.emit('SIGTERM');
    signals.emit('SIGINT');
    expect(exit).toHaveBeenCalledExactlyOnceWith(130);
  });

  it('forgets a closer that was unregistered', async () => {
    const { shutdown } = setup();
    const closer = vi.fn();
    const unregister = shutdown.onShutdown('gone', closer);
    unregister();
    await shutdown.shutdown('test');
    expect(closer).not.toHaveBeenCalled();
  });

  it('stops reacting to signals after unlisten', () => {
    const { signals, exit, shutdown } = setup();
    shutdown.unlisten();
    signals.emit('SIGTERM');
    expect(shutdown.shuttingDown).toBe(false);
    expect(exit).not.toHaveBeenCalled();
  });
});
