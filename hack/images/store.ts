/**
 * The on-disk side of building images, shared by `make image` and `make images`: gzip layers cached by the
 * digest of their uncompressed tar (gzip is the slow step; the tar of unchanged inputs is the same bytes, so
 * its digest finds the blob), and the OCI layout tarball rewritten only when the manifest digest changes.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  gzipLayer,
  layoutEntries,
  sha256,
  tarArchive,
  type ImageLayout,
  type Layer,
  type TarEntry,
} from '../oci.ts';

/** Every file in every layer has this mtime (2026-01-01T00:00:00Z), so content alone decides a digest. */
export const LAYER_MTIME = Date.UTC(2026, 0, 1) / 1000;

/** A built layer and the size of its uncompressed tar. */
export type SizedLayer = Layer & { raw: number };

/**
 * A layer cache in a folder: `layer()` returns the gzip blob of some entries, compressing only tars it has not
 * seen; `prune()` removes the blobs no `layer()` call asked for since the cache was opened.
 */
export class LayerCache {
  readonly #dir: string;
  readonly #used = new Set<string>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** The uncompressed tar, its diff_id and the gzip blob (from the cache when this tar was compressed before). */
  async layer(entries: TarEntry[], createdBy: string): Promise<SizedLayer> {
    const tar = tarArchive(entries, LAYER_MTIME);
    const diffId = sha256(tar);
    const file = `${diffId.slice(7)}.gz`;
    const cached = join(this.#dir, file);
    this.#used.add(file);
    let gz: Buffer;
    if (existsSync(cached)) {
      gz = readFileSync(cached);
    } else {
      gz = await gzipLayer(tar);
      mkdirSync(this.#dir, { recursive: true });
      writeFileSync(`${cached}.${process.pid}.tmp`, gz);
      renameSync(`${cached}.${process.pid}.tmp`, cached);
    }
    return { gz, diffId, createdBy, raw: tar.length };
  }

  /** Removes the blobs of layers nobody asked for: the inputs that made them have changed. */
  prune(): void {
    if (!existsSync(this.#dir)) return;
    for (const f of readdirSync(this.#dir)) if (!this.#used.has(f)) rmSync(join(this.#dir, f));
  }
}

/**
 * Writes the image layout as one tar at `out`, unless the file there already holds this manifest digest
 * (recorded in a stamp file in `cacheDir`). Returns whether it wrote.
 */
export function writeLayoutTarball(layout: ImageLayout, out: string, cacheDir: string): boolean {
  const stamp = join(cacheDir, `${basename(out)}.digest`);
  const upToDate =
    existsSync(out) &&
    existsSync(stamp) &&
    readFileSync(stamp, 'utf8') === `${layout.manifestDigest} ${statSync(out).size}`;
  if (upToDate) return false;
  const tar = tarArchive(layoutEntries(layout), LAYER_MTIME);
  mkdirSync(dirname(out), { recursive: true });
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(`${out}.${process.pid}.tmp`, tar);
  renameSync(`${out}.${process.pid}.tmp`, out);
  writeFileSync(stamp, `${layout.manifestDigest} ${tar.length}`);
  return true;
}

/** A small text file entry. */
export function textEntry(path: string, content: string, mode = 0o644): TarEntry {
  return { path, type: 'file', mode, data: Buffer.from(content) };
}

/** Megabytes, for logs. */
export const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
