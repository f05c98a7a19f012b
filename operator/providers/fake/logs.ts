/**
 * One container instance's log, in memory, read with the kubelet's `/containerLogs` options. The rules
 * mirror the kubelet's: `sinceSeconds`/`sinceTime` filter first, then `tailLines`, then `limitBytes`
 * cuts the byte stream (following included); timestamps are RFC 3339 with nanoseconds, as Go prints them.
 */
import { Readable } from 'node:stream';
import type { LogOptions } from '../types.ts';

/** One line of output and when it was written. */
export interface LogLine {
  at: Date;
  /** The line without its trailing newline. */
  text: string;
}

/** Formats like Go's `time.RFC3339Nano`: nine fractional digits at most, trailing zeros dropped. */
export function rfc3339Nano(at: Date): string {
  const iso = at.toISOString(); // 2024-01-02T03:04:05.678Z
  const [seconds, fraction = ''] = iso.slice(0, -1).split('.');
  const trimmed = fraction.replace(/0+$/, '');
  return `${seconds}${trimmed ? '.' + trimmed : ''}Z`;
}

/** An append-only log that readers can tail and follow until it is closed. */
export class ContainerLog {
  readonly #lines: LogLine[] = [];
  readonly #followers = new Set<(line: LogLine | null) => void>();
  #closed = false;

  /** Lines written so far. */
  get lines(): readonly LogLine[] {
    return this.#lines;
  }

  /** Readers currently following (a leak check for tests). */
  get followerCount(): number {
    return this.#followers.size;
  }

  /** True once the container instance behind the log has stopped: followers end. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Appends text; each `\n`-separated piece is a line (a final newline does not make an empty line). */
  append(text: string, at: Date = new Date()): void {
    if (this.#closed) return;
    const pieces = text.split('\n');
    if (pieces.at(-1) === '') pieces.pop();
    for (const piece of pieces) {
      const line = { at, text: piece };
      this.#lines.push(line);
      for (const follower of this.#followers) follower(line);
    }
  }

  /** Marks the end of this instance's output: followers get their end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const follower of [...this.#followers]) follower(null);
    this.#followers.clear();
  }

  /** Opens a byte stream over the log, honouring every {@link LogOptions} field except `previous`. */
  read(options: LogOptions = {}, now: Date = new Date()): Readable {
    const since =
      options.sinceSeconds !== undefined
        ? now.getTime() - options.sinceSeconds * 1000
        : (options.sinceTime?.getTime() ?? -Infinity);
    let selected = this.#lines.filter((l) => l.at.getTime() >= since);
    if (options.tailLines !== undefined)
      selected = options.tailLines > 0 ? selected.slice(-options.tailLines) : [];

    let budget = options.limitBytes ?? Infinity;
    const format = (l: LogLine) => (options.timestamps ? `${rfc3339Nano(l.at)} ${l.text}\n` : `${l.text}\n`);
    const out = new Readable({ read() {} });
    let follower: ((line: LogLine | null) => void) | undefined;
    const finish = () => {
      if (follower) this.#followers.delete(follower);
      follower = undefined;
      out.push(null);
    };
    /** Pushes one line within the byte budget; false once the budget is spent (the stream has ended). */
    const emit = (line: LogLine): boolean => {
      const bytes = Buffer.from(format(line));
      if (bytes.length >= budget) {
        out.push(bytes.subarray(0, budget));
        finish();
        return false;
      }
      budget -= bytes.length;
      out.push(bytes);
      return true;
    };
    for (const line of selected) if (!emit(line)) return out;
    if (!options.follow || this.#closed) {
      finish();
      return out;
    }
    follower = (line) => (line ? emit(line) : finish());
    this.#followers.add(follower);
    out.on('close', () => follower && this.#followers.delete(follower));
    return out;
  }
}
