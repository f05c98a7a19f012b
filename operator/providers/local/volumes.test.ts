import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeVolume } from './volumes.ts';

const file = (path: string, content: string) => ({ path, content: Buffer.from(content) });

describe('writeVolume (configMap, secret, downwardAPI, projected)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const volumeDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'spillway-volume-'));
    dirs.push(d);
    return d;
  };

  it('refreshes in place: a changed key reads its new value, a removed key is gone, no version is left behind', () => {
    const root = volumeDir();
    writeVolume(root, { files: [file('greeting', 'hello'), file('farewell', 'bye')] });
    expect(readFileSync(join(root, 'farewell'), 'utf8')).toBe('bye');

    writeVolume(root, { files: [file('greeting', 'bonjour')] });
    expect(readFileSync(join(root, 'greeting'), 'utf8')).toBe('bonjour');
    // The key's link would dangle once ..data moved on: it must be removed, not left pointing nowhere.
    expect(existsSync(join(root, 'farewell'))).toBe(false);
    expect(() => lstatSync(join(root, 'farewell'))).toThrow(/ENOENT/);
    expect(readdirSync(root).filter((n) => n.startsWith('..') && n !== '..data')).toHaveLength(1);
  });
});
