import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { isNotFound } from '../../types.ts';
import {
  containerLogFile,
  containerLogPath,
  formatLogTimestamp,
  parseCriLogRecord,
  readContainerLog,
} from './logs.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-cri-logs-'));
  dirs.push(dir);
  return dir;
}

/** A log file with these records, as containerd writes them. */
function logFile(records: string[]): string {
  const path = join(tempDir(), '0.log');
  writeFileSync(path, records.join(''));
  return path;
}

const rec = (time: string, text: string, tag = 'F', stream = 'stdout') =>
  `${time} ${stream} ${tag} ${text}\n`;

async function text(stream: Readable): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += String(chunk);
  return out;
}

/** Reads from `stream` until the output so far contains `want`, leaving the stream open. */
function readUntil(stream: Readable, want: string): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += String(chunk);
      if (!out.includes(want)) return;
      stream.off('data', onData).off('end', onEnd).pause();
      resolve(out);
    };
    const onEnd = () => resolve(out);
    stream.on('data', onData).once('end', onEnd).resume();
  });
}

const T1 = '2026-01-01T00:00:01.5Z';
const T2 = '2026-01-01T00:00:02.000000001Z';
const T3 = '2026-01-01T00:00:03Z';

describe('parseCriLogRecord', () => {
  it('reads time, stream, tag and content (spaces in the content kept)', () => {
    const r = parseCriLogRecord(Buffer.from(`${T2} stderr P a b  c`))!;
    expect(r).toMatchObject({ time: T2, stream: 'stderr', partial: true });
    expect(r.content.toString()).toBe('a b  c');
    expect(r.at).toBe(Date.parse('2026-01-01T00:00:02Z'));
  });
  it('accepts extra tags after the partial flag', () => {
    expect(parseCriLogRecord(Buffer.from(`${T1} stdout F:x hi`))?.partial).toBe(false);
  });
  it.each(['garbage', `${T1} stdin F x`, `nottime stdout F x`, `${T1} stdout`])('rejects %j', (line) => {
    expect(parseCriLogRecord(Buffer.from(line))).toBeUndefined();
  });
});

describe('formatLogTimestamp', () => {
  it.each([
    [T1, '2026-01-01T00:00:01.500000000Z'],
    [T2, '2026-01-01T00:00:02.000000001Z'],
    [T3, '2026-01-01T00:00:03.000000000Z'],
    ['2026-01-01T01:00:00.25+01:00', '2026-01-01T01:00:00.250000000+01:00'],
  ])('%s → %s', (input, want) => expect(formatLogTimestamp(input)).toBe(want));
});

describe('readContainerLog', () => {
  it('prints the content of both streams, stream names dropped and partial lines joined', async () => {
    const path = logFile([
      rec(T1, 'one'),
      rec(T2, 'two-', 'P', 'stderr'),
      rec(T2, 'and-', 'P', 'stderr'),
      rec(T2, 'more', 'F', 'stderr'),
      rec(T3, ''),
    ]);
    expect(await text(await readContainerLog(path))).toBe('one\ntwo-and-more\n\n');
  });

  it('prefixes each line (not each piece) with its timestamp', async () => {
    const path = logFile([rec(T1, 'a', 'P'), rec(T2, 'b'), rec(T3, 'c')]);
    expect(await text(await readContainerLog(path, { timestamps: true }))).toBe(
      '2026-01-01T00:00:01.500000000Z ab\n2026-01-01T00:00:03.000000000Z c\n',
    );
  });

  it('tails the last lines, counting a line split into pieces once', async () => {
    const path = logFile([rec(T1, 'one'), rec(T2, 'tw', 'P'), rec(T2, 'o'), rec(T3, 'three')]);
    expect(await text(await readContainerLog(path, { tailLines: 2 }))).toBe('two\nthree\n');
    expect(await text(await readContainerLog(path, { tailLines: 10 }))).toBe('one\ntwo\nthree\n');
    expect(await text(await readContainerLog(path, { tailLines: 0 }))).toBe('');
  });

  it('keeps lines at or after sinceTime, and sinceSeconds counts back from now', async () => {
    const path = logFile([rec(T1, 'one'), rec(T2, 'two'), rec(T3, 'three')]);
    expect(await text(await readContainerLog(path, { sinceTime: new Date('2026-01-01T00:00:02Z') }))).toBe(
      'two\nthree\n',
    );
    const now = Date.parse('2026-01-01T00:00:04Z');
    expect(await text(await readContainerLog(path, { sinceSeconds: 1 }, undefined, { now }))).toBe('three\n');
  });

  it('stops at limitBytes, mid-line, timestamps counted', async () => {
    const path = logFile([rec(T1, 'hello'), rec(T2, 'world')]);
    expect(await text(await readContainerLog(path, { limitBytes: 8 }))).toBe('hello\nwo');
    expect(await text(await readContainerLog(path, { limitBytes: 12, timestamps: true }))).toBe(
      '2026-01-01T0',
    );
  });

  it('prints an unterminated last record when not following', async () => {
    const path = logFile([rec(T1, 'one'), `${T2} stdout F tw`]);
    expect(await text(await readContainerLog(path))).toBe('one\ntw\n');
  });

  it('rejects with NotFoundError before any byte when the file does not exist', async () => {
    const err = await readContainerLog(join(tempDir(), 'nope.log')).catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
  });

  it('follows appended lines (a line written in two pieces arrives whole) until the container stops', async () => {
    const path = logFile([rec(T1, 'one'), rec(T1, 'two')]);
    let running = true;
    const stream = await readContainerLog(
      path,
      { follow: true, tailLines: 1 },
      { running: () => running, pollMs: 5 },
    );
    expect(await readUntil(stream, 'two\n')).toBe('two\n');
    appendFileSync(path, `${T2} stdout F thr`);
    appendFileSync(path, 'ee\n');
    appendFileSync(path, rec(T3, 'four'));
    expect(await readUntil(stream, 'four\n')).toBe('three\nfour\n');
    appendFileSync(path, rec(T3, 'last words'));
    running = false;
    expect(await text(stream)).toBe('last words\n');
  });

  it('ends a follow when the signal aborts, after the lines already written', async () => {
    const path = logFile([rec(T1, 'one')]);
    const stopped = new AbortController();
    const stream = await readContainerLog(
      path,
      { follow: true },
      { running: () => true, signal: stopped.signal, pollMs: 5 },
    );
    expect(await readUntil(stream, 'one\n')).toBe('one\n');
    appendFileSync(path, rec(T2, 'two'));
    stopped.abort();
    expect(await text(stream)).toBe('two\n');
  });

  it('ends a follow at limitBytes', async () => {
    const path = logFile([rec(T1, 'abc')]);
    const stream = await readContainerLog(
      path,
      { follow: true, limitBytes: 6 },
      { running: () => true, pollMs: 5 },
    );
    expect(await readUntil(stream, 'abc\n')).toBe('abc\n');
    appendFileSync(path, rec(T2, 'defgh'));
    expect(await text(stream)).toBe('de');
  });

  it('follows into the new file when the log is rotated, reading the old one to its end', async () => {
    const path = logFile([rec(T1, 'before')]);
    let running = true;
    const stream = await readContainerLog(path, { follow: true }, { running: () => running, pollMs: 5 });
    expect(await readUntil(stream, 'before\n')).toBe('before\n');
    appendFileSync(path, rec(T2, 'tail of old'));
    renameSync(path, `${path}.20260101-000002`);
    writeFileSync(path, rec(T3, 'in new'));
    expect(await readUntil(stream, 'in new\n')).toBe('tail of old\nin new\n');
    running = false;
    expect(await text(stream)).toBe('');
  });

  it('stops following when the reader destroys the stream', async () => {
    const path = logFile([rec(T1, 'one')]);
    const stream = await readContainerLog(path, { follow: true }, { running: () => true, pollMs: 5 });
    expect(await readUntil(stream, 'one\n')).toBe('one\n');
    stream.destroy();
    await new Promise((resolve) => stream.once('close', resolve));
    expect(stream.destroyed).toBe(true);
  });
});

describe('containerLogFile', () => {
  const podDir = tempDir();
  mkdirSync(join(podDir, 'app'));
  for (const attempt of [0, 1, 3]) writeFileSync(containerLogPath(podDir, 'app', attempt), '');
  writeFileSync(join(podDir, 'app', '3.log.20260101-000000'), '');

  it('is the newest attempt, or with previous the one before it', async () => {
    expect(await containerLogFile(podDir, 'app')).toBe(join(podDir, 'app', '3.log'));
    expect(await containerLogFile(podDir, 'app', true)).toBe(join(podDir, 'app', '1.log'));
  });

  it('is NotFound without a previous attempt or without any', async () => {
    mkdirSync(join(podDir, 'once'));
    writeFileSync(containerLogPath(podDir, 'once', 0), '');
    expect(isNotFound(await containerLogFile(podDir, 'once', true).catch((e: unknown) => e))).toBe(true);
    const err = await containerLogFile(podDir, 'missing').catch((e: unknown) => e);
    expect(isNotFound(err)).toBe(true);
    expect((err as Error).message).toContain('container "missing" has no log yet');
  });
});
