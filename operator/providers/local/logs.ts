/**
 * Reading a container run's log files (CRI format, written by container-shim.sh: `<RFC 3339> <stream> <F|P>
 * <text>`, rotated to `log.1`) with the kubelet's `/containerLogs` options. Filters apply in the kubelet's
 * order: since, then tail, then the byte limit; following polls the file until the run has exited.
 */
import { existsSync, openSync, readSync, closeSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { LogOptions } from '../types.ts';

/** One parsed log line. */
export interface CriLine {
  /** The timestamp exactly as written (RFC 3339 with nanoseconds). */
  time: string;
  at: number;
  text: string;
}

/** Parses CRI log text; lines that do not parse are kept as text with time 0. */
export function parseCri(text: string): CriLine[] {
  const out: CriLine[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const m = /^(\S+) (?:stdout|stderr) [FP] (.*)$/.exec(raw);
    if (!m) {
      out.push({ time: '', at: 0, text: raw });
      continue;
    }
    out.push({ time: m[1]!, at: Date.parse(m[1]!), text: m[2]! });
  }
  return out;
}

/** How a line is printed: with its timestamp when asked (Go's RFC3339Nano drops trailing zeros). */
export function formatLine(line: CriLine, timestamps: boolean | undefined): string {
  if (!timestamps) return `${line.text}\n`;
  const t = line.time.replace(/\.(\d*?)0+Z$/, (_m, d: string) => (d ? `.${d}Z` : 'Z'));
  return `${t} ${line.text}\n`;
}

/** Selects the lines of `lines` that the options ask for (not the byte limit). */
export function selectLines(lines: CriLine[], options: LogOptions, now = Date.now()): CriLine[] {
  const since =
    options.sinceSeconds !== undefined
      ? now - options.sinceSeconds * 1000
      : (options.sinceTime?.getTime() ?? -Infinity);
  let selected = lines.filter((l) => l.at >= since);
  if (options.tailLines !== undefined)
    selected = options.tailLines > 0 ? selected.slice(-options.tailLines) : [];
  return selected;
}

function readFrom(file: string, offset: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = statSync(file).size;
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * A byte stream over the log of the run in `runDir`. With `follow`, it keeps reading (every `pollMs`)
 * until `exit` appears in `runDir` and nothing more is written, the byte limit is reached, or the reader
 * destroys the stream.
 */
export function readRunLog(runDir: string, options: LogOptions = {}, pollMs = 200): Readable {
  const current = join(runDir, 'log');
  const rotated = join(runDir, 'log.1');
  const text =
    (existsSync(rotated) ? readFileSync(rotated, 'utf8') : '') + readFileSync(current, { flag: 'a+' });
  let offset = statSync(current).size;
  let inode = statSync(current).ino;
  let budget = options.limitBytes ?? Infinity;
  let timer: NodeJS.Timeout | undefined;
  const out = new Readable({
    read() {},
    destroy(err, cb) {
      if (timer) clearTimeout(timer);
      cb(err);
    },
  });
  const emit = (line: CriLine): boolean => {
    const bytes = Buffer.from(formatLine(line, options.timestamps));
    if (bytes.length >= budget) {
      out.push(bytes.subarray(0, budget));
      out.push(null);
      return false;
    }
    budget -= bytes.length;
    out.push(bytes);
    return true;
  };
  for (const line of selectLines(parseCri(text), options)) if (!emit(line)) return out;
  if (!options.follow) {
    out.push(null);
    return out;
  }
  let partial = '';
  const tick = () => {
    timer = undefined;
    if (out.destroyed) return;
    const exited = existsSync(join(runDir, 'exit'));
    let chunk = '';
    try {
      const st = statSync(current);
      if (st.ino !== inode) {
        // Rotated: finish the old file (now log.1), then start the new one from its beginning.
        chunk += readFrom(rotated, offset).toString('utf8');
        inode = st.ino;
        offset = 0;
      }
      const fresh = readFrom(current, offset);
      offset += fresh.length;
      chunk += fresh.toString('utf8');
    } catch {
      /* the run's directory went away: the container was deleted */
      out.push(null);
      return;
    }
    const text = partial + chunk;
    const end = text.lastIndexOf('\n');
    partial = end >= 0 ? text.slice(end + 1) : text;
    for (const line of parseCri(end >= 0 ? text.slice(0, end) : '')) if (!emit(line)) return;
    if (exited && chunk === '') {
      out.push(null);
      return;
    }
    timer = setTimeout(tick, pollMs);
  };
  timer = setTimeout(tick, pollMs);
  return out;
}
