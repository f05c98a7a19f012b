/**
 * Debian packages as image content: `apt-get download` + `dpkg-deb -x` into a cache folder, and the shared
 * library closure of a dynamically linked binary resolved inside those unpacked packages (never from this
 * host's files), at the paths the dynamic loader looks them up by. Shared by `make image` (hack/build-image.ts)
 * and `make images` (hack/build-images.ts).
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
import { join, posix } from 'node:path';
import type { TarEntry } from '../oci.ts';

/** A command's stdout; on failure an error naming the command and carrying its stderr. */
export function run(cmd: string, args: string[], cwd?: string, env?: NodeJS.ProcessEnv): string {
  try {
    return execFileSync(cmd, args, {
      cwd,
      env: env ?? process.env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}

/** An unpacked Debian package: its name, the version apt gave, and the folder `dpkg-deb -x` filled. */
export interface DebianTree {
  pkg: string;
  version: string;
  root: string;
}

/** Where the dynamic loader of Debian amd64 looks for libraries, in its order. */
export const LIBRARY_DIRS = [
  'lib/x86_64-linux-gnu',
  'usr/lib/x86_64-linux-gnu',
  'lib64',
  'usr/lib64',
  'lib',
  'usr/lib',
];

/**
 * A Debian package (apt's candidate version for amd64), downloaded and unpacked once into `cacheDir`. The
 * version is part of the file name, so a new Debian release of the package is a new download and a new layer.
 */
export function debianPackage(pkg: string, cacheDir: string): DebianTree {
  mkdirSync(cacheDir, { recursive: true });
  const version = candidateVersion(pkg, cacheDir);
  // apt names the file <pkg>_<version, ':' escaped>_<arch>.deb, arch `all` for architecture-independent ones.
  const prefix = `${pkg}_${version.replace(':', '%3a')}_`;
  const downloaded = () =>
    readdirSync(cacheDir).find((f) => f.startsWith(prefix) && /_(amd64|all)\.deb$/.test(f));
  if (!downloaded()) {
    try {
      run('apt-get', ['download', '-qq', `${pkg}:amd64=${version}`], cacheDir);
    } catch (err) {
      throw new Error(`cannot fetch the Debian package ${pkg} ${version} (run \`apt-get update\`?)`, {
        cause: err,
      });
    }
  }
  const file = downloaded();
  if (!file) throw new Error(`apt-get download ${pkg} ${version} left no ${prefix}*.deb in ${cacheDir}`);
  const deb = join(cacheDir, file);
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
export function candidateVersion(pkg: string, cacheDir: string): string {
  return candidateVersions([pkg], cacheDir)[0]!;
}

/** {@link candidateVersion} of several packages, asking `apt-cache` once for those not remembered. */
export function candidateVersions(pkgs: string[], cacheDir: string): string[] {
  const file = join(cacheDir, 'candidates.json');
  const stamp = [
    '/var/lib/apt/lists',
    '/var/lib/dpkg/status',
    '/etc/apt/sources.list.d',
    '/etc/apt/preferences.d',
  ]
    .map((p) => (existsSync(p) ? statSync(p).mtimeMs : 0))
    .join(' ');
  const stored = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, string>;
  const known = stored.stamp === stamp ? stored : { stamp };
  const unknown = pkgs.filter((p) => !known[p]);
  if (unknown.length > 0) {
    const out = run('apt-cache', ['show', '--no-all-versions', ...unknown.map((p) => `${p}:amd64`)]);
    for (const stanza of out.split(/\n\n+/)) {
      const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
      const version = /^Version: (\S+)$/m.exec(stanza)?.[1];
      if (name && version && unknown.includes(name)) known[name] = version;
    }
    const missing = unknown.filter((p) => !known[p]);
    if (missing.length > 0) throw new Error(`apt-cache knows no version of ${missing.join(', ')}`);
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(file, JSON.stringify(known, null, 2));
  }
  return pkgs.map((p) => known[p]!);
}

/**
 * {@link debianPackage} of several packages, downloading the missing ones with one `apt-get download` (each
 * apt run costs a second or so of start-up; a cold build fetches dozens of library packages).
 */
export function debianPackages(pkgs: string[], cacheDir: string): DebianTree[] {
  mkdirSync(cacheDir, { recursive: true });
  const versions = candidateVersions(pkgs, cacheDir);
  const files = readdirSync(cacheDir);
  const missing = pkgs
    .map((pkg, i) => ({ pkg, version: versions[i]! }))
    .filter(({ pkg, version }) => !files.some((f) => f.startsWith(`${pkg}_${version.replace(':', '%3a')}_`)));
  if (missing.length > 0) {
    try {
      run('apt-get', ['download', '-qq', ...missing.map((m) => `${m.pkg}:amd64=${m.version}`)], cacheDir);
    } catch (err) {
      const names = missing.map((m) => `${m.pkg} ${m.version}`).join(', ');
      throw new Error(`cannot fetch the Debian packages ${names} (run \`apt-get update\`?)`, { cause: err });
    }
  }
  return pkgs.map((p) => debianPackage(p, cacheDir));
}

/**
 * The sonames a binary needs and the absolute paths ldd resolves them to, looking first in `libraryPath`
 * (folders of unpacked packages), so the answer does not depend on what this host has installed.
 */
export function neededLibraries(
  binary: string,
  libraryPath: string[] = [],
): Array<{ soname: string; hostPath: string }> {
  let out: string;
  const env = libraryPath.length > 0 ? { ...process.env, LD_LIBRARY_PATH: libraryPath.join(':') } : undefined;
  try {
    out = run('ldd', [binary], undefined, env);
  } catch {
    return []; // "not a dynamic executable": static binaries and the dynamic loader itself
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

/** Whether a path exists, a dangling or absolute symlink included (existsSync would follow it on this host). */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A regular file as a layer entry: 0755 when any execute bit is set, else 0644 (the tree's other bits dropped). */
export function fileEntry(path: string, source: string): TarEntry {
  const st = statSync(source);
  return { path, type: 'file', mode: st.mode & 0o111 ? 0o755 : 0o644, data: readFileSync(source) };
}

/** A file or symlink of a tree as a layer entry at `path` (symlinks kept, their targets added too). */
export function entriesFromTree(root: string, path: string, into: Map<string, TarEntry>): void {
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

/** Every file, directory and symlink under `dir`, placed under `prefix` in the image. */
export function treeEntries(dir: string, prefix: string): TarEntry[] {
  const out: TarEntry[] = [];
  for (const name of readdirSync(dir).sort()) {
    const source = join(dir, name);
    const path = `${prefix}/${name}`;
    const st = lstatSync(source);
    if (st.isSymbolicLink()) out.push({ path, type: 'symlink', mode: 0o777, target: readlinkSync(source) });
    else if (st.isDirectory()) out.push({ path, type: 'dir', mode: 0o755 }, ...treeEntries(source, path));
    else if (st.isFile()) out.push(fileEntry(path, source));
  }
  return out;
}

/**
 * The shared libraries `binaries` need, transitively, as layer entries taken from `trees` at the paths the
 * dynamic loader looks them up by (symlinks kept). Throws naming the soname and the packages searched when a
 * library is in none of them: add its package to the list.
 */
export function libraryClosure(binaries: string[], trees: DebianTree[]): Map<string, TarEntry> {
  const entries = new Map<string, TarEntry>();
  const libraryPath = trees.flatMap((t) => LIBRARY_DIRS.map((d) => join(t.root, d))).filter(existsSync);
  const locate = (soname: string, neededBy: string): { root: string; path: string } => {
    const candidates = soname.startsWith('/') ? [soname.slice(1)] : LIBRARY_DIRS.map((d) => `${d}/${soname}`);
    for (const tree of trees)
      for (const path of candidates) if (lexists(join(tree.root, path))) return { root: tree.root, path };
    throw new Error(
      `${soname} (needed by ${neededBy}) is in none of the Debian packages ${trees.map((t) => t.pkg).join(', ')}`,
    );
  };
  const queue = binaries.flatMap((b) =>
    neededLibraries(b, libraryPath).map((l) => ({ ...l, neededBy: posix.basename(b) })),
  );
  const seen = new Set<string>();
  while (queue.length > 0) {
    const lib = queue.shift()!;
    if (seen.has(lib.soname)) continue;
    seen.add(lib.soname);
    const { root, path } = locate(lib.soname, lib.neededBy);
    entriesFromTree(root, path, entries);
    queue.push(
      ...neededLibraries(join(root, path), libraryPath).map((l) => ({ ...l, neededBy: lib.soname })),
    );
  }
  return entries;
}

/**
 * The copyright file of each package (a binary distribution carries their notices). A package whose doc
 * directory is a symlink to another package's (libstdc++6 → gcc-12-base) has that package fetched for it.
 */
export function copyrightEntries(trees: DebianTree[], cacheDir: string, into: Map<string, TarEntry>): void {
  for (const tree of trees) {
    const doc = `usr/share/doc/${tree.pkg}`;
    let root = tree.root;
    let dir = doc;
    if (!lexists(join(root, doc))) continue;
    if (lstatSync(join(root, doc)).isSymbolicLink()) {
      const base = readlinkSync(join(root, doc));
      into.set(doc, { path: doc, type: 'symlink', mode: 0o777, target: base });
      root = debianPackage(base, cacheDir).root;
      dir = `usr/share/doc/${base}`;
    }
    if (existsSync(join(root, dir, 'copyright')))
      into.set(`${dir}/copyright`, fileEntry(`${dir}/copyright`, join(root, dir, 'copyright')));
  }
}

/**
 * The library packages (named after a soname: `libssl3`, `zlib1g`) a package depends on, transitively through library packages only: where the
 * shared libraries of its binaries come from. Not its other dependencies (debconf, iproute2...), which hold
 * programs and maintainer scripts an image does not run. Remembered in `cacheDir` like candidate versions.
 */
export function libraryDependencies(pkg: string, cacheDir: string): string[] {
  const file = join(cacheDir, 'library-dependencies.json');
  const stamp = String(existsSync('/var/lib/apt/lists') ? statSync('/var/lib/apt/lists').mtimeMs : 0);
  const known = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, unknown>;
  if (known.stamp === stamp && Array.isArray(known[pkg])) return known[pkg] as string[];
  const found = new Set<string>();
  let level = [pkg];
  while (level.length > 0) {
    const out = run('apt-cache', [
      'depends',
      '--no-recommends',
      '--no-suggests',
      ...level.map((p) => `${p}:amd64`),
    ]);
    const next: string[] = [];
    for (const m of out.matchAll(/^\s*\|?(?:Pre)?Depends: ([^\s<>:]+)/gm)) {
      const dep = m[1]!;
      if (dep.includes('lib') && !found.has(dep)) {
        found.add(dep);
        next.push(dep);
      }
    }
    level = next;
  }
  const result = [...found].sort();
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(
    file,
    JSON.stringify({ ...(known.stamp === stamp ? known : { stamp }), [pkg]: result }, null, 2),
  );
  return result;
}

/** The upstream part of a Debian version: `1:1.35.0-4+deb12u1+b1` → `1.35.0`. */
export function upstreamVersion(debianVersion: string): string {
  return debianVersion.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
}

/**
 * Programs from Debian packages with everything they load: each `programs` path of its package, the shared
 * libraries they need from the packages' library dependencies (transitively), and the packages' copyright
 * files. Returns the layer entries and the packages used, for the layer's history line.
 */
export function debianPrograms(
  programs: Array<{ pkg: string; paths: string[] }>,
  cacheDir: string,
): { entries: TarEntry[]; packages: DebianTree[] } {
  const libraryPackages = [...new Set(programs.flatMap((p) => libraryDependencies(p.pkg, cacheDir)))].sort();
  const all = debianPackages([...programs.map((p) => p.pkg), ...libraryPackages], cacheDir);
  const trees = all.slice(0, programs.length);
  const libs = all.slice(programs.length);
  const binaries = programs.flatMap((p, i) => p.paths.map((path) => ({ root: trees[i]!.root, path })));
  const entries = libraryClosure(
    binaries.map((b) => join(b.root, b.path)),
    [...trees, ...libs],
  );
  for (const b of binaries) entries.set(b.path, { ...fileEntry(b.path, join(b.root, b.path)), mode: 0o755 });
  copyrightEntries([...trees, ...libs], cacheDir, entries);
  return { entries: [...entries.values()], packages: [...trees, ...libs] };
}
