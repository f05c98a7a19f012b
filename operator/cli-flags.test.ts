import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { GracefulShutdown } from './shared/shutdown.ts';
import { firstTermOnly, parseFlags, portProblems, virtualNodeEntries } from './cli-flags.ts';

describe('signals', () => {
  it('a repeated SIGTERM (make forwarding the process group one) still lets every closer run', async () => {
    const signals = new EventEmitter();
    const exits: number[] = [];
    const shutdown = new GracefulShutdown({ exit: (code) => exits.push(code) });
    let closed = false;
    shutdown.onShutdown('webhooks', async () => {
      await new Promise((r) => setTimeout(r, 20));
      closed = true;
    });
    shutdown.listen(firstTermOnly(signals));
    signals.emit('SIGTERM');
    signals.emit('SIGTERM');
    expect(await shutdown.shutdown('test')).toBe(0);
    expect(closed).toBe(true);
    expect(exits).toEqual([0]);
  });

  it('Ctrl-C twice still exits at once', () => {
    const signals = new EventEmitter();
    const exits: number[] = [];
    const shutdown = new GracefulShutdown({ exit: (code) => exits.push(code) });
    shutdown.onShutdown('stuck', () => new Promise(() => {}));
    shutdown.listen(firstTermOnly(signals));
    signals.emit('SIGTERM');
    signals.emit('SIGINT');
    expect(exits).toEqual([130]);
    shutdown.unlisten();
    expect(signals.listenerCount('SIGTERM')).toBe(0);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });
});

describe('flags', () => {
  it('refuses a port that is not one', () => {
    expect(portProblems(parseFlags(['run', '--kubelet-port', 'x']).values)).toBe(
      '--kubelet-port must be a port number, not "x"',
    );
    expect(portProblems(parseFlags(['run', '--metrics-port', '0']).values)).toBeUndefined();
  });

  it('gives a local node the host capacity, under --capacity', () => {
    const [entry] = virtualNodeEntries(
      parseFlags(['run', '--provider', 'local', '--capacity', 'pods=40']).values,
    );
    expect(entry!.config.capacity).toMatchObject({ cpu: String(availableParallelism()), pods: '40' });
    expect(entry!.config.capacity?.memory).toMatch(/^\d+Ki$/);
    expect(entry!.config.capacity?.['ephemeral-storage']).toMatch(/^\d+Ki$/);
  });

  it('leaves a fake node the provider capacity unless --capacity sets some', () => {
    expect(virtualNodeEntries(parseFlags(['run']).values)[0]!.config.capacity).toBeUndefined();
    expect(virtualNodeEntries(parseFlags(['run', '--capacity', 'cpu=3']).values)[0]!.config.capacity).toEqual(
      {
        cpu: '3',
      },
    );
  });
});
