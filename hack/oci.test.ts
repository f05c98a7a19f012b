import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import {
  gzipLayer,
  imageLayout,
  layoutEntries,
  mediaTypes,
  sha256,
  tarArchive,
  withParents,
  type ImageSpec,
  type TarEntry,
} from './oci.ts';

const MTIME = Date.UTC(2026, 0, 1) / 1000;
const file = (path: string, content: string, mode = 0o644): TarEntry => ({
  path,
  type: 'file',
  mode,
  data: Buffer.from(content),
});

/** GNU tar's verbose listing: what `docker load` and every unpacker see. */
function gnuList(tar: Buffer): string[] {
  return execFileSync('tar', ['-tv', '--numeric-owner', '--full-time', '-f', '-'], {
    input: tar,
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .map((l) => l.replace(/\s+/g, ' '));
}

describe('tarArchive', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('writes sorted entries with one mtime, numeric owners and the given modes', () => {
    const tar = tarArchive(
      withParents([
        file('usr/local/bin/node', '#!', 0o755),
        { path: 'tmp', type: 'dir', mode: 0o1777 },
        { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: 65532, gid: 65532 },
        { path: 'lib64/ld.so', type: 'symlink', mode: 0o777, target: '/lib/ld.so' },
        file('etc/passwd', 'root:x:0:0::/root:/sbin/nologin\n'),
      ]),
      MTIME,
    );
    expect(tar.length % 512).toBe(0);
    expect(gnuList(tar)).toEqual([
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 etc/',
      '-rw-r--r-- 0/0 32 2026-01-01 00:00:00 etc/passwd',
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 home/',
      'drwx------ 65532/65532 0 2026-01-01 00:00:00 home/nonroot/',
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 lib64/',
      'lrwxrwxrwx 0/0 0 2026-01-01 00:00:00 lib64/ld.so -> /lib/ld.so',
      'drwxrwxrwt 0/0 0 2026-01-01 00:00:00 tmp/',
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 usr/',
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 usr/local/',
      'drwxr-xr-x 0/0 0 2026-01-01 00:00:00 usr/local/bin/',
      '-rwxr-xr-x 0/0 2 2026-01-01 00:00:00 usr/local/bin/node',
    ]);
  });

  it('gives the same bytes whatever order the entries come in', () => {
    const entries = withParents([file('a/b', '1'), file('a-c', '2'), file('a/d/e', '3')]);
    expect(tarArchive([...entries].reverse(), MTIME).equals(tarArchive(entries, MTIME))).toBe(true);
  });

  it.each([
    ['a 100-byte name', 'x'.repeat(100)],
    ['a ustar prefix', `${'p'.repeat(150)}/${'n'.repeat(99)}`],
    ['a PAX path (no split fits)', `${'d'.repeat(40)}/${'f'.repeat(120)}`],
    ['a PAX path (too long for ustar)', `${'deep/'.repeat(60)}file.js`],
    ['a non-ASCII name', 'app/node_modules/zod/locales/übersetzung-名前.js'],
  ])('round-trips %s through GNU tar', (_, path) => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-test-'));
    dirs.push(dir);
    const target = `../${'t'.repeat(120)}`;
    const tar = tarArchive(
      withParents([file(path, 'content'), { path: `${path}.link`, type: 'symlink', mode: 0o777, target }]),
      MTIME,
    );
    execFileSync('tar', ['-x', '-f', '-', '-C', dir], { input: tar });
    expect(readFileSync(join(dir, path), 'utf8')).toBe('content');
    expect(statSync(join(dir, path)).mtimeMs).toBe(MTIME * 1000);
    expect(readlinkSync(join(dir, `${path}.link`))).toBe(target);
  });

  it.each([
    ['a duplicate path', [file('a', '1'), file('a', '2')], /duplicate entry a/],
    ['an absolute path', [file('/etc/passwd', '')], /not a relative path/],
    ['a path out of the archive', [file('app/../../x', '')], /not a relative path/],
  ])('refuses %s', (_, entries, message) => {
    expect(() => tarArchive(entries, MTIME)).toThrow(message);
  });
});

describe('gzipLayer', () => {
  it('is deterministic and round-trips', async () => {
    const data = Buffer.from('spillway '.repeat(10_000));
    const [a, b] = await Promise.all([gzipLayer(data), gzipLayer(data)]);
    expect(a.equals(b)).toBe(true);
    expect(a.readUInt32LE(4)).toBe(0); // no timestamp in the header
    expect(gunzipSync(a).equals(data)).toBe(true);
  });
});

describe('imageLayout', () => {
  const spec = async (): Promise<ImageSpec> => {
    const tars = [
      tarArchive(withParents([file('etc/passwd', 'x')]), MTIME),
      tarArchive([file('app', 'y')], MTIME),
    ];
    return {
      name: 'ghcr.io/spillway-dev/spillway:0.1.0',
      created: '2026-01-01T00:00:00Z',
      config: { User: '65532:65532', Env: [], Entrypoint: ['/x'], WorkingDir: '/app', Labels: {} },
      layers: await Promise.all(
        tars.map(async (t, i) => ({ gz: await gzipLayer(t), diffId: sha256(t), createdBy: `layer ${i}` })),
      ),
    };
  };
  const blob = (layout: ReturnType<typeof imageLayout>, digest: string) =>
    JSON.parse(layout.blobs.find((b) => b.digest === digest)!.data.toString());
  const topFile = (layout: ReturnType<typeof imageLayout>, path: string) =>
    JSON.parse(layout.files.find((f) => f.path === path)!.data.toString());

  it('links index → manifest → config and layers by digest and size', async () => {
    const s = await spec();
    const layout = imageLayout(s);
    for (const b of layout.blobs) expect(sha256(b.data)).toBe(b.digest);
    const index = topFile(layout, 'index.json');
    expect(index.manifests).toEqual([
      expect.objectContaining({
        mediaType: mediaTypes.manifest,
        digest: layout.manifestDigest,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: {
          'io.containerd.image.name': 'ghcr.io/spillway-dev/spillway:0.1.0',
          'org.opencontainers.image.ref.name': '0.1.0',
        },
      }),
    ]);
    const manifest = blob(layout, layout.manifestDigest);
    expect(manifest.config).toMatchObject({ mediaType: mediaTypes.config, digest: layout.configDigest });
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual(
      s.layers.map((l) => sha256(l.gz)),
    );
    const config = blob(layout, layout.configDigest);
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: s.layers.map((l) => l.diffId) });
    expect(config.history.map((h: { created_by: string }) => h.created_by)).toEqual(['layer 0', 'layer 1']);
    expect(topFile(layout, 'oci-layout')).toEqual({ imageLayoutVersion: '1.0.0' });
  });

  it("gives Docker's manifest.json the same config and layers", async () => {
    const layout = imageLayout(await spec());
    const manifest = blob(layout, layout.manifestDigest);
    const path = (d: string) => `blobs/sha256/${d.slice(7)}`;
    expect(topFile(layout, 'manifest.json')).toEqual([
      {
        Config: path(layout.configDigest),
        RepoTags: ['ghcr.io/spillway-dev/spillway:0.1.0'],
        Layers: manifest.layers.map((l: { digest: string }) => path(l.digest)),
      },
    ]);
  });

  it('is the same for the same inputs and differs when a layer does', async () => {
    const a = imageLayout(await spec());
    expect(imageLayout(await spec()).manifestDigest).toBe(a.manifestDigest);
    const changed = await spec();
    changed.layers[1] = { ...changed.layers[1]!, diffId: sha256('other') };
    expect(imageLayout(changed).manifestDigest).not.toBe(a.manifestDigest);
  });

  it('writes each blob once into the archive', async () => {
    const s = await spec();
    s.layers[1] = s.layers[0]!; // two identical layers share one blob
    const paths = layoutEntries(imageLayout(s)).map((e) => e.path);
    expect(paths.filter((p) => p.startsWith('blobs/sha256/')).length).toBe(3); // manifest, config, one layer
    expect(new Set(paths).size).toBe(paths.length);
  });

  it('refuses a name without a tag', async () => {
    const s = await spec();
    for (const name of ['localhost:5000/spillway', 'spillway', 'spillway:'])
      expect(() => imageLayout({ ...s, name })).toThrow(/no tag/);
  });
});
