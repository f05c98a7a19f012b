/**
 * Container logs through DescribeContainerLog. ECI returns a log as one string and cannot follow, so `follow`
 * polls with `StartTime` set to the newest line seen, asking for timestamps to drop the lines it already sent
 * (lines with equal timestamps are counted, not compared by content).
 */
import { Readable } from 'node:stream';
import type { LogOptions } from '../types.ts';
import type { EciApi } from './client.ts';
import type { CallContext } from './api-errors.ts';

/** ECI's cap on LimitBytes per call. */
const MAX_LIMIT_BYTES = 1024 * 1024;

/** Splits `2024-05-01T10:00:00.123456789Z text` into its timestamp and text. */
function splitStamp(line: string): { stamp: string; text: string } {
  const sp = line.indexOf(' ');
  return sp < 0 ? { stamp: line, text: '' } : { stamp: line.slice(0, sp), text: line.slice(sp + 1) };
}

/** What the follower needs to know about the container between polls. */
export interface LogTarget {
  id: string;
  container: string;
  /** True once the container will write no more (terminated and not restarting, or the instance gone). */
  done: () => boolean;
}

/**
 * Returns the log as a stream. The first call happens before the stream is returned, so a missing instance or
 * container rejects (NotFoundError) before any byte is sent.
 */
export async function containerLogs(
  api: EciApi,
  target: LogTarget,
  options: LogOptions,
  pollIntervalMs: number,
  ctx: Omit<CallContext, 'action'>,
): Promise<Readable> {
  const startTime = options.sinceSeconds === undefined ? options.sinceTime?.toISOString() : undefined;
  // A follower needs timestamps to tell new lines from old ones, whether or not the reader wants them.
  const follow = options.follow && !options.previous;
  const first = await api.describeContainerLog(
    {
      id: target.id,
      container: target.container,
      ...(options.tailLines !== undefined && { tail: options.tailLines }),
      ...(options.sinceSeconds !== undefined && { sinceSeconds: options.sinceSeconds }),
      ...(startTime && { startTime }),
      limitBytes: Math.min(options.limitBytes ?? MAX_LIMIT_BYTES, MAX_LIMIT_BYTES),
      timestamps: follow || options.timestamps,
      previous: options.previous,
    },
    ctx,
  );
  const render = (lines: string[]) =>
    lines.map((l) => `${options.timestamps ? l : splitStamp(l).text}\n`).join('');
  const linesOf = (content: string) =>
    content.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  if (!follow) return Readable.from([first]);

  let budget = options.limitBytes ?? Infinity;
  let lastStamp = '';
  let seenAtLast = 0;
  const remember = (lines: string[]) => {
    for (const l of lines) {
      const { stamp } = splitStamp(l);
      if (stamp === lastStamp) seenAtLast++;
      else {
        lastStamp = stamp;
        seenAtLast = 1;
      }
    }
  };
  /** Lines not sent yet: newer than the last timestamp, or beyond the count already sent at it. */
  const fresh = (lines: string[]) => {
    let skip = seenAtLast;
    return lines.filter((l) => {
      const { stamp } = splitStamp(l);
      if (stamp < lastStamp) return false;
      if (stamp === lastStamp && skip > 0) {
        skip--;
        return false;
      }
      return true;
    });
  };
  let timer: NodeJS.Timeout | undefined;
  const stream = new Readable({
    read() {},
    destroy(err, cb) {
      clearTimeout(timer);
      cb(err);
    },
  });
  const emit = (lines: string[]): boolean => {
    remember(lines);
    let out = Buffer.from(render(lines));
    if (out.length >= budget) out = out.subarray(0, budget);
    budget -= out.length;
    if (out.length > 0) stream.push(out);
    if (budget <= 0) {
      stream.push(null);
      return false;
    }
    return true;
  };
  if (!emit(linesOf(first))) return stream;
  const poll = async () => {
    if (stream.destroyed) return;
    // Decide before fetching: a container that stopped before this fetch has written everything it will.
    const finished = target.done();
    try {
      const since = lastStamp ? new Date(Date.parse(lastStamp)).toISOString() : startTime;
      const content = await api.describeContainerLog(
        {
          id: target.id,
          container: target.container,
          timestamps: true,
          limitBytes: MAX_LIMIT_BYTES,
          ...(since && { startTime: since }),
        },
        ctx,
      );
      if (!emit(fresh(linesOf(content)))) return;
    } catch (err) {
      stream.destroy(err as Error);
      return;
    }
    if (finished) stream.push(null);
    else timer = setTimeout(() => void poll(), pollIntervalMs);
  };
  timer = setTimeout(() => void poll(), pollIntervalMs);
  return stream;
}
