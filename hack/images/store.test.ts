/**
 * The layer cache and the layout tarball writer shared by `make image` and `make images`: a rebuild with the
 * same inputs reuses the compressed blob and leaves the tarball alone; changed inputs give a new layer and
 * the old blob is pruned.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { imageLayout, sha256, type TarEntry } from '../oci.ts';
import { LayerCache, writeLayoutTarball } from './store.ts';

const file = (path: string, content: string): TarEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  data: Buffer.from(content),
});

describe('LayerCache', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'spillway-store-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('gives the same blob for the same entries, from the cache the second time', async () => {
    const dir = tmp();
    const first = await new LayerCache(dir).layer([file('a.txt', 'one')], 'a');
    const cached = join(dir, `${first.diffId.slice(7)}.gz`);
    utimesSync(cached, 0, 0); // a rewrite would move the mtime off the epoch
    const second = await new LayerCache(dir).layer([file('a.txt', 'one')], 'a');
    expect(sha256(second.gz)).toBe(sha256(first.gz));
    expect(statSync(cached).mtimeMs).toBe(0);
  });

  it('gives a new layer when an input changes, and prune drops the blobs nobody asked for', async () => {
    const dir = tmp();
    const old = await new LayerCache(dir).layer([file('a.txt', 'one')], 'a');
    const cache = new LayerCache(dir);
    const changed = await cache.layer([file('a.txt', 'two')], 'a');
    expect(changed.diffId).not.toBe(old.diffId);
    cache.prune();
    expect(readdirSync(dir)).toEqual([`${changed.diffId.slice(7)}.gz`]);
  });
});

describe('writeLayoutTarball', () => {
  it('writes the tarball once, and again only when the manifest digest changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-store-'));
    try {
      const cache = new LayerCache(join(dir, 'layers'));
      const layout = async (text: string) =>
        imageLayout({
          name: 'spillway/test:1',
          created: '2026-01-01T00:00:00Z',
          config: { Cmd: ['sh'] },
          layers: [await cache.layer([file('a.txt', text)], 'a')],
        });
      const out = join(dir, 'test-1.oci.tar');
      expect(writeLayoutTarball(await layout('one'), out, dir)).toBe(true);
      expect(writeLayoutTarball(await layout('one'), out, dir)).toBe(false);
      expect(writeLayoutTarball(await layout('two'), out, dir)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
