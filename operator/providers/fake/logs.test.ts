import { once } from 'node:events';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { ContainerLog, rfc3339Nano } from './logs.ts';
import type { LogOptions } from '../types.ts';

const t0 = new Date('2026-01-02T03:04:00Z');
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

/** A log with one line per second: "line 0" at t0 … "line 4" at t0+4s. */
function fiveLines(): ContainerLog {
  const log = new ContainerLog();
  for (let i = 0; i < 5; i++) log.append(`line ${i}\n`, at(i));
  log.close();
  return log;
}

describe('ContainerLog.read, as kubectl logs flags ask', () => {
  it.each<[string, LogOptions, string]>([
    ['everything', {}, 'line 0\nline 1\nline 2\nline 3\nline 4\n'],
    ['--tail=2', { tailLines: 2 }, 'line 3\nline 4\n'],
    ['--tail=0', { tailLines: 0 }, ''],
    ['--since=2s (at t0+4s)', { sinceSeconds: 2 }, 'line 2\nline 3\nline 4\n'],
    ['--since-time', { sinceTime: at(3) }, 'line 3\nline 4\n'],
    ['--since=3s --tail=1', { sinceSeconds: 3, tailLines: 1 }, 'line 4\n'],
    ['--limit-bytes=10', { limitBytes: 10 }, 'line 0\nlin'],
    ['--limit-bytes on a line boundary', { limitBytes: 7 }, 'line 0\n'],
    ['--timestamps --tail=1', { timestamps: true, tailLines: 1 }, '2026-01-02T03:04:04Z line 4\n'],
  ])('%s', async (_flags, options, expected) => {
    expect(await text(fiveLines().read(options, at(4)))).toBe(expected);
  });

  it('follows new lines until the container stops', async () => {
    const log = new ContainerLog();
    log.append('before\n');
    const followed = text(log.read({ follow: true }));
    log.append('during 1\nduring 2');
    log.close();
    log.append('after the container stopped\n');
    expect(await followed).toBe('before\nduring 1\nduring 2\n');
  });

  it('stops following at the byte limit even while the container runs', async () => {
    const log = new ContainerLog();
    const followed = text(log.read({ follow: true, limitBytes: 8 }));
    log.append('0123456789\n');
    expect(await followed).toBe('01234567');
  });

  it('stops feeding a follower whose reader went away', async () => {
    const log = new ContainerLog();
    const stream = log.read({ follow: true });
    expect(log.followerCount).toBe(1);
    stream.destroy();
    await once(stream, 'close');
    expect(log.followerCount).toBe(0);
  });
});

describe('rfc3339Nano', () => {
  it.each([
    ['2026-01-02T03:04:05.000Z', '2026-01-02T03:04:05Z'],
    ['2026-01-02T03:04:05.120Z', '2026-01-02T03:04:05.12Z'],
    ['2026-01-02T03:04:05.007Z', '2026-01-02T03:04:05.007Z'],
  ])('prints %s like Go prints it: %s', (iso, expected) => {
    expect(rfc3339Nano(new Date(iso))).toBe(expected);
  });
});
