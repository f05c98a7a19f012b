/**
 * `kubectl logs` over the log files a CRI runtime writes (containerd's `LogPath` of a container): one record per
 * line, `<RFC 3339 nano timestamp> <stdout|stderr> <P|F>[:<more tags>] <content>`, where `P` is a piece of a
 * longer line that the next record continues and `F` ends it. The files sit where the kubelet puts them,
 * `<pod log dir>/<container>/<attempt>.log` ({@link containerLogPath}), so that `previous` is the file of the
 * attempt before the newest one.
 *
 * The output is what the kubelet's `/containerLogs` serves (k8s.io/cri-client `pkg/logs`): the content only, the
 * stream name dropped and the pieces of a line joined; with `timestamps` each line starts with its first record's
 * time in the fixed nine-digit form; `sinceSeconds`/`sinceTime` drop records older than that; `limitBytes` cuts the
 * output there, mid-line if need be. One deliberate difference: `tailLines` counts lines as the user sees them
 * (pieces joined), where the kubelet counts records, so that `--tail=1` never prints the last piece of a line.
 *
 * Rotation: containerd never rotates these files; a kubelet does (it renames `<attempt>.log` and asks the runtime
 * to `ReopenContainerLog`). A follower reads the renamed file to its end and then continues in the new file, so a
 * rotation by whoever takes the kubelet's part later loses nothing.
 */
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { NotFoundError, type LogOptions, type SandboxKey } from '../../types.ts';

/** One record of a CRI log file. */
export interface CriLogRecord {
  /** The timestamp as written (RFC 3339, up to nine fraction digits, any offset). */
  time: string;
  /** The same, in milliseconds since the epoch (for the `since` filters). */
  at: number;
  stream: 'stdout' | 'stderr';
  /** `P`: the line continues in the next record; `F`: the line ends here. */
  partial: boolean;
  content: Buffer;
}

/**
 * Parses one record (without its newline); undefined when the line is not a CRI record (the kubelet skips
 * those too).
 */
export function parseCriLogRecord(line: Buffer): CriLogRecord | undefined {
  const s1 = line.indexOf(0x20);
  const s2 = s1 < 0 ? -1 : line.indexOf(0x20, s1 + 1);
  const s3 = s2 < 0 ? -1 : line.indexOf(0x20, s2 + 1);
  if (s3 < 0) return undefined;
  const time = line.subarray(0, s1).toString('latin1');
  const at = Date.parse(time);
  const stream = line.subarray(s1 + 1, s2).toString('latin1');
  if (Number.isNaN(at) || (stream !== 'stdout' && stream !== 'stderr')) return undefined;
  const tag = line
    .subarray(s2 + 1, s3)
    .toString('latin1')
    .split(':')[0];
  return { time, at, stream, partial: tag === 'P', content: line.subarray(s3 + 1) };
}

/**
 * The timestamp as the kubelet prints it with `timestamps`: Go's `2006-01-02T15:04:05.000000000Z07:00`, nine
 * fraction digits always, in the offset it was written with.
 */
export function formatLogTimestamp(time: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(time);
  if (!m) return time;
  const fraction = (m[2] ?? '').slice(0, 9).padEnd(9, '0');
  return `${m[1]}.${fraction}${m[3]!.toUpperCase()}`;
}

/** Where the log of one attempt of a container lives: the kubelet's `<pod log dir>/<container>/<attempt>.log`. */
export function containerLogPath(podLogDir: string, container: string, attempt: number): string {
  return join(podLogDir, container, `${attempt}.log`);
}

/**
 * The log file `kubectl logs` reads for `container`: the newest attempt's, or with `previous` the one before it.
 * @throws NotFoundError no such file (no attempt yet, or no previous one)
 */
export async function containerLogFile(
  podLogDir: string,
  container: string,
  previous = false,
  key?: SandboxKey,
): Promise<string> {
  const names = await readdir(join(podLogDir, container)).catch(() => [] as string[]);
  const attempts = names
    .map((n) => /^(\d+)\.log$/.exec(n)?.[1])
    .filter((a): a is string => a !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  const attempt = attempts[previous ? 1 : 0];
  if (attempt === undefined) {
    const what = previous ? 'previous terminated instance' : 'log yet';
    throw new NotFoundError(`container "${container}" has no ${what} (in ${podLogDir})`, { key });
  }
  return containerLogPath(podLogDir, container, attempt);
}

/** How a follower learns that the container stopped writing. */
export interface LogFollow {
  /** Whether the container still runs; asked whenever the reader has caught up with the file. */
  running: () => boolean | Promise<boolean>;
  /** Aborted when the container is known to have stopped (or the caller gives up): read to the end and finish. */
  signal?: AbortSignal;
  /** How often to look for new lines once caught up (default 250 ms). */
  pollMs?: number;
}

/**
 * Opens the CRI log file at `path` and returns the byte stream `kubectl logs` shows for `options`. With
 * `options.follow` (and `follow` given), the stream goes on with new lines until the container is no longer
 * running or `follow.signal` aborts (then it ends after the last line written), or until `limitBytes`; destroying
 * the stream stops following and closes the file.
 * @throws NotFoundError the file does not exist (before any byte)
 */
export async function readContainerLog(
  path: string,
  options: LogOptions = {},
  follow?: LogFollow,
  context: { key?: SandboxKey; now?: number } = {},
): Promise<Readable> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new NotFoundError(`no log file at ${path}`, { key: context.key, cause: err });
    throw err;
  }
  const now = context.now ?? Date.now();
  const since =
    options.sinceSeconds !== undefined
      ? now - options.sinceSeconds * 1000
      : (options.sinceTime?.getTime() ?? -Infinity);
  // Destroying the stream aborts `stop`, which wakes a follower that waits for new lines so that it returns.
  const stop = new AbortController();
  const chunks = logBytes(file, path, options, since, options.follow ? follow : undefined, stop.signal);
  return new Readable({
    read() {
      chunks.next().then(
        (r) => this.push(r.done ? null : r.value),
        (err: Error) => this.destroy(err),
      );
    },
    destroy(err, callback) {
      stop.abort();
      chunks.return(undefined).then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
}

/** The output, chunk by chunk; closes the file however it ends. */
async function* logBytes(
  first: FileHandle,
  path: string,
  options: LogOptions,
  since: number,
  follow: LogFollow | undefined,
  stop: AbortSignal,
): AsyncGenerator<Buffer> {
  const reader = new LineReader(first);
  const output = new LogOutput(options, since);
  try {
    if (options.tailLines !== undefined) {
      // Read to the end, keeping the last N lines; print those, then follow from there.
      // Without following, an unterminated last record counts (the kubelet prints it too).
      const lines = new LastLines(Math.max(0, options.tailLines));
      const all = follow ? reader.next.bind(reader) : reader.drain.bind(reader);
      for (let batch = await all(); batch.length > 0; batch = await all()) {
        for (const line of batch) lines.add(line);
      }
      const chunk = output.format(lines.records());
      if (chunk.length > 0) yield chunk;
    }
    for (;;) {
      if (output.done || stop.aborted) return;
      const batch = await reader.next();
      if (batch.length > 0) {
        const chunk = output.format(batch.map(parseCriLogRecord));
        if (chunk.length > 0) yield chunk;
        continue;
      }
      if (!follow) {
        const chunk = output.format((await reader.drain()).map(parseCriLogRecord));
        if (chunk.length > 0) yield chunk;
        return;
      }
      const rest = await reader.reopenIfReplaced(path);
      if (rest) {
        const chunk = output.format(rest.map(parseCriLogRecord));
        if (chunk.length > 0) yield chunk;
        continue;
      }
      const stopped = follow.signal?.aborted || !(await follow.running());
      if (stopped) {
        // The last lines may have landed between the read above and the container's exit.
        const rest = await reader.drain();
        const chunk = output.format(rest.map(parseCriLogRecord));
        if (chunk.length > 0) yield chunk;
        return;
      }
      const wake = follow.signal ? AbortSignal.any([follow.signal, stop]) : stop;
      await sleep(follow.pollMs ?? 250, undefined, { signal: wake }).catch(() => undefined);
    }
  } finally {
    await reader.close();
  }
}

/** Turns records into output bytes: content only, timestamps at line starts, `since` and the byte limit. */
class LogOutput {
  #options: LogOptions;
  #since: number;
  #budget: number;
  #atLineStart = true;
  done = false;

  constructor(options: LogOptions, since: number) {
    this.#options = options;
    this.#since = since;
    this.#budget = options.limitBytes ?? Infinity;
  }

  format(records: (CriLogRecord | undefined)[]): Buffer {
    const parts: Buffer[] = [];
    for (const record of records) {
      if (!record || this.done) continue;
      const lineStart = this.#atLineStart;
      this.#atLineStart = !record.partial;
      if (record.at < this.#since) continue;
      const piece = [
        ...(this.#options.timestamps && lineStart
          ? [Buffer.from(`${formatLogTimestamp(record.time)} `)]
          : []),
        record.content,
        ...(record.partial ? [] : [Buffer.from('\n')]),
      ];
      for (const p of piece) {
        const cut = p.subarray(0, Math.min(p.length, this.#budget));
        parts.push(cut);
        this.#budget -= cut.length;
        if (this.#budget <= 0) this.done = true;
      }
    }
    return Buffer.concat(parts);
  }
}

/** The records of the last `n` lines (pieces joined into one line; an unfinished last line counts as one). */
class LastLines {
  #n: number;
  #lines: CriLogRecord[][] = [];
  #open = false;

  constructor(n: number) {
    this.#n = n;
  }

  add(raw: Buffer): void {
    const record = parseCriLogRecord(raw);
    if (!record || this.#n === 0) return;
    if (this.#open) this.#lines.at(-1)!.push(record);
    else this.#lines.push([record]);
    this.#open = record.partial;
    if (this.#lines.length > this.#n) this.#lines.shift();
  }

  records(): CriLogRecord[] {
    return this.#lines.flat();
  }
}

/**
 * Reads whole lines from a growing file: a line still being written stays buffered until its newline arrives,
 * and a file replaced at its path (rotation) is finished before the new one is opened.
 */
class LineReader {
  #file: FileHandle;
  #position = 0;
  #pending: Buffer = Buffer.alloc(0);
  #buffer = Buffer.alloc(64 * 1024);

  constructor(file: FileHandle) {
    this.#file = file;
  }

  /** The next complete lines (without newlines); empty when nothing new has been written. */
  async next(): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    while (lines.length === 0) {
      const { bytesRead } = await this.#file.read(this.#buffer, 0, this.#buffer.length, this.#position);
      if (bytesRead === 0) return lines;
      this.#position += bytesRead;
      let data = Buffer.concat([this.#pending, this.#buffer.subarray(0, bytesRead)]);
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
        lines.push(data.subarray(0, nl));
        data = data.subarray(nl + 1);
      }
      this.#pending = Buffer.from(data);
    }
    return lines;
  }

  /** Every line left, the unterminated last one included (the writer is gone). */
  async drain(): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    for (let batch = await this.next(); batch.length > 0; batch = await this.next()) lines.push(...batch);
    if (this.#pending.length > 0) lines.push(this.#pending);
    this.#pending = Buffer.alloc(0);
    return lines;
  }

  /**
   * When `path` is now another file than the one being read (rotated), the rest of the old one (its last lines)
   * and a switch to the new one; undefined while it is the same file.
   */
  async reopenIfReplaced(path: string): Promise<Buffer[] | undefined> {
    let next: FileHandle;
    try {
      next = await open(path, 'r');
    } catch {
      return undefined; // renamed away and not yet reopened: keep waiting on the old file
    }
    const [a, b] = await Promise.all([this.#file.stat(), next.stat()]);
    if (a.ino === b.ino && a.dev === b.dev) {
      await next.close();
      return undefined;
    }
    const rest = await this.drain();
    await this.#file.close();
    this.#file = next;
    this.#position = 0;
    return rest;
  }

  async close(): Promise<void> {
    await this.#file.close().catch(() => undefined);
  }
}
