/**
 * The pure parts of `make image` (hack/build-image.ts): deterministic tar archives, gzip, and the OCI image
 * JSON (config, manifest, index) plus Docker's `manifest.json`, so that one tarball is both an OCI image layout
 * (`skopeo copy oci-archive:`, `crane push`) and what `docker load` reads.
 *
 * Reproducible by construction: entries sorted by path, one fixed mtime, uid/gid from the entry (0 unless
 * set), no user or group names, normalised modes; gzip with a fixed level and Node's zero header mtime.
 * The same inputs give the same layer digests, the same config and the same manifest digest.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

/** One file, directory or symbolic link of a layer; `path` is relative to the image root, without a leading `/`. */
export interface TarEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** Permission bits, sticky bit included (`0o1777` for /tmp). */
  mode: number;
  uid?: number;
  gid?: number;
  /** A file's content. */
  data?: Buffer;
  /** A symbolic link's target. */
  target?: string;
}

const BLOCK = 512;
const USTAR_NAME = 100;
const USTAR_PREFIX = 155;

/** `sha256:<hex>` of some bytes. */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The entries plus a directory entry (0755, root) for every ancestor that has none. */
export function withParents(entries: TarEntry[]): TarEntry[] {
  const have = new Set(entries.map((e) => trimSlash(e.path)));
  const out = [...entries];
  for (const e of entries) {
    const parts = trimSlash(e.path).split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!have.has(dir)) {
        have.add(dir);
        out.push({ path: dir, type: 'dir', mode: 0o755 });
      }
    }
  }
  return out;
}

/**
 * A POSIX tar archive (ustar; a PAX header for a path or link target too long for ustar) of the entries,
 * sorted by path. Throws on a duplicate path, an absolute path or `..`.
 */
export function tarArchive(entries: TarEntry[], mtime: number): Buffer {
  const sorted = [...entries].sort((a, b) => compare(trimSlash(a.path), trimSlash(b.path)));
  const chunks: Buffer[] = [];
  let previous: string | undefined;
  for (const e of sorted) {
    const path = trimSlash(e.path);
    if (path === previous) throw new Error(`tar: duplicate entry ${path}`);
    if (path === '' || path.startsWith('/') || path.split('/').includes('..')) {
      throw new Error(`tar: ${JSON.stringify(e.path)} is not a relative path inside the archive`);
    }
    previous = path;
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const name = e.type === 'dir' ? `${path}/` : path;
    const target = e.type === 'symlink' ? (e.target ?? '') : '';
    if (e.type === 'symlink' && !target) throw new Error(`tar: symlink ${path} has no target`);
    const split = splitUstarName(name);
    const pax: Record<string, string> = {};
    if (!split) pax.path = name;
    if (Buffer.byteLength(target) > USTAR_NAME) pax.linkpath = target;
    if (Object.keys(pax).length > 0) {
      const body = paxRecords(pax);
      chunks.push(
        header({ name: paxName(name), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime, type: 'x' }),
        body,
        padding(body.length),
      );
    }
    chunks.push(
      header({
        name: split?.name ?? Buffer.from(name).subarray(0, USTAR_NAME),
        prefix: split?.prefix ?? '',
        mode: e.mode,
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        size: data.length,
        mtime,
        type: e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2',
        linkname: pax.linkpath ? '' : target,
      }),
    );
    if (data.length > 0) chunks.push(data, padding(data.length));
  }
  chunks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(chunks);
}

/** gzip at the default level: deterministic for one zlib (Node writes a zero mtime and OS=unix into the header). */
export const gzipLayer: (data: Buffer) => Promise<Buffer> = (data) =>
  promisify(gzip)(data, { level: 6 }) as Promise<Buffer>;

function trimSlash(p: string): string {
  return p.replace(/\/+$/, '');
}

function compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** ustar keeps a path up to 100 bytes in `name`, longer ones split at a `/` into `prefix` (155) and `name`. */
function splitUstarName(name: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(name) <= USTAR_NAME) return { name, prefix: '' };
  for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) > USTAR_PREFIX) return undefined;
    if (rest && Buffer.byteLength(rest) <= USTAR_NAME) return { name: rest, prefix };
  }
  return undefined;
}

function paxName(name: string): Buffer {
  const base = trimSlash(name).split('/').pop()!;
  return Buffer.concat([Buffer.from('PaxHeaders/'), Buffer.from(base).subarray(0, 80)]);
}

/** PAX records: `<length> <key>=<value>\n`, where length counts the whole record including its own digits. */
function paxRecords(records: Record<string, string>): Buffer {
  const parts = Object.entries(records).map(([k, v]) => {
    const rest = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(rest);
    while (String(len).length + Buffer.byteLength(rest) !== len)
      len = String(len).length + Buffer.byteLength(rest);
    return `${len}${rest}`;
  });
  return Buffer.from(parts.join(''));
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

interface Header {
  name: string | Buffer;
  prefix?: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: '0' | '2' | '5' | 'x';
  linkname?: string;
}

function header(h: Header): Buffer {
  const b = Buffer.alloc(BLOCK);
  const str = (offset: number, length: number, value: string | Buffer) => {
    const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value);
    if (bytes.length > length) throw new Error(`tar: ${JSON.stringify(value)} does not fit ${length} bytes`);
    bytes.copy(b, offset);
  };
  const octal = (offset: number, length: number, value: number) => {
    const digits = value.toString(8);
    if (digits.length > length - 1) throw new Error(`tar: ${value} does not fit a ${length}-byte field`);
    str(offset, length, `${digits.padStart(length - 1, '0')}\0`);
  };
  str(0, 100, h.name);
  octal(100, 8, h.mode);
  octal(108, 8, h.uid);
  octal(116, 8, h.gid);
  octal(124, 12, h.size);
  octal(136, 12, h.mtime);
  b.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  str(156, 1, h.type);
  str(157, 100, h.linkname ?? '');
  str(257, 6, 'ustar\0');
  str(263, 2, '00');
  octal(329, 8, 0);
  octal(337, 8, 0);
  str(345, 155, h.prefix ?? '');
  let sum = 0;
  for (const byte of b) sum += byte;
  str(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// OCI image JSON

export const mediaTypes = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

/** A built layer: the gzip blob and the digest of the uncompressed tar (the config's diff_id). */
export interface Layer {
  gz: Buffer;
  diffId: string;
  /** What made it, for `docker history`. */
  createdBy: string;
}

/**
 * What the image runs: the OCI config's `config` object. Written in the order the fields are given, so the
 * caller's object decides the config's bytes (and digest).
 */
export interface RunConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  /** `{"80/tcp": {}}`: documentation of the ports the image serves, as `EXPOSE` writes it. */
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

export interface ImageSpec {
  /** `<repository>:<tag>`, e.g. ghcr.io/spillway-dev/spillway:0.1.0 */
  name: string;
  /** RFC 3339; also each history entry's time. */
  created: string;
  config: RunConfig;
  layers: Layer[];
}

/** The blobs and top-level files of an image: everything the archive holds. */
export interface ImageLayout {
  /** Digest of the image manifest: what a registry reports for the pushed image. */
  manifestDigest: string;
  /** Digest of the config: the image ID `docker images` shows. */
  configDigest: string;
  /** Blobs by digest, in the order they are written. */
  blobs: Array<{ digest: string; data: Buffer }>;
  /** oci-layout, index.json and Docker's manifest.json. */
  files: Array<{ path: string; data: Buffer }>;
}

/** The config, manifest, index and Docker manifest.json of an image for linux/amd64. */
export function imageLayout(spec: ImageSpec): ImageLayout {
  const colon = spec.name.lastIndexOf(':');
  const tag = spec.name.slice(colon + 1);
  if (colon <= spec.name.lastIndexOf('/') || !tag) throw new Error(`image name ${spec.name} has no tag`);
  const config = json({
    created: spec.created,
    architecture: 'amd64',
    os: 'linux',
    config: spec.config,
    rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
    history: spec.layers.map((l) => ({ created: spec.created, created_by: l.createdBy })),
  });
  const configDesc: Descriptor = {
    mediaType: mediaTypes.config,
    digest: sha256(config),
    size: config.length,
  };
  const layerDescs: Descriptor[] = spec.layers.map((l) => ({
    mediaType: mediaTypes.layer,
    digest: sha256(l.gz),
    size: l.gz.length,
  }));
  const manifest = json({
    schemaVersion: 2,
    mediaType: mediaTypes.manifest,
    config: configDesc,
    layers: layerDescs,
  });
  const manifestDigest = sha256(manifest);
  const index = json({
    schemaVersion: 2,
    mediaType: mediaTypes.index,
    manifests: [
      {
        mediaType: mediaTypes.manifest,
        digest: manifestDigest,
        size: manifest.length,
        platform: { architecture: 'amd64', os: 'linux' },
        // What containerd/Docker (io.containerd.image.name) and skopeo/crane (ref.name) name the image by.
        annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
      },
    ],
  });
  const blobPath = (digest: string) => `blobs/sha256/${digest.slice('sha256:'.length)}`;
  // `docker load` without the containerd image store reads this, not index.json; it takes gzip layers too.
  const dockerManifest = json([
    {
      Config: blobPath(configDesc.digest),
      RepoTags: [spec.name],
      Layers: layerDescs.map((d) => blobPath(d.digest)),
    },
  ]);
  const blobs = [
    { digest: manifestDigest, data: manifest },
    { digest: configDesc.digest, data: config },
    ...spec.layers.map((l, i) => ({ digest: layerDescs[i]!.digest, data: l.gz })),
  ];
  return {
    manifestDigest,
    configDigest: configDesc.digest,
    blobs,
    files: [
      { path: 'oci-layout', data: json({ imageLayoutVersion: '1.0.0' }) },
      { path: 'index.json', data: index },
      { path: 'manifest.json', data: dockerManifest },
    ],
  };
}

/** The image layout as tar entries (blobs/sha256/<hex>, index.json, oci-layout, manifest.json). */
export function layoutEntries(layout: ImageLayout): TarEntry[] {
  const seen = new Set<string>();
  const blobs = layout.blobs.filter((b) => !seen.has(b.digest) && seen.add(b.digest));
  return withParents([
    ...layout.files.map((f): TarEntry => ({ path: f.path, type: 'file', mode: 0o644, data: f.data })),
    ...blobs.map((b): TarEntry => ({
      path: `blobs/sha256/${b.digest.slice('sha256:'.length)}`,
      type: 'file',
      mode: 0o644,
      data: b.data,
    })),
  ]);
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
