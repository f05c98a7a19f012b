import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readRunLog } from './logs.ts';

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += String(chunk);
  return out;
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function run(lines: string[], rotated: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-logs-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'log'), lines.join(''));
  if (rotated.length) writeFileSync(join(dir, 'log.1'), rotated.join(''));
  writeFileSync(join(dir, 'exit'), '0 0');
  return dir;
}

const line = (t: string, s: string) => `${t} stdout F ${s}\n`;

describe('readRunLog', () => {
  const dir = run(
    [line('2024-01-01T00:00:02.500000000Z', 'two'), line('2024-01-01T00:00:03.000000000Z', 'three')],
    [line('2024-01-01T00:00:01.000000000Z', 'one')],
  );

  it('reads the rotated file first, then the current one', async () => {
    expect(await text(readRunLog(dir))).toBe('one\ntwo\nthree\n');
  });

  it('applies tailLines, timestamps (trailing zeros dropped) and limitBytes', async () => {
    expect(await text(readRunLog(dir, { tailLines: 1, timestamps: true }))).toBe(
      '2024-01-01T00:00:03Z three\n',
    );
    expect(await text(readRunLog(dir, { limitBytes: 6 }))).toBe('one\ntw');
    expect(await text(readRunLog(dir, { sinceTime: new Date('2024-01-01T00:00:02Z') }))).toBe('two\nthree\n');
  });

  it('ends a follow once the run has exited and nothing more is written', async () => {
    expect(await text(readRunLog(dir, { follow: true }, 10))).toBe('one\ntwo\nthree\n');
  });
});
