/**
 * The files of a pod's materialised volumes (configMap, secret, downwardAPI, projected) in
 * `<podDir>/volumes/<name>/`, written as the kubelet's atomic writer does: every version is a fresh directory
 * `..<timestamp>`, `..data` is a symlink to the current one, swapped with a rename, and each top-level entry of
 * the volume is a symlink through `..data`. A reader in a container sees the old set of files or the new one,
 * never a mix, and the bind mount of the volume directory shows the new version at once. A container that mounts
 * one file through `subPath` keeps the version it started with, as on a kubelet: its mount holds the file.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  unlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { V1Volume } from '@kubernetes/client-node';
import type { MaterialisedVolume } from '../types.ts';

const DATA = '..data';

/** True for the volume kinds whose files come from the pod controller (emptyDir and others are the pod's own). */
export function isMaterialised(volume: V1Volume): boolean {
  return Boolean(volume.configMap || volume.secret || volume.downwardAPI || volume.projected);
}

/**
 * Writes a new version of `volume` under `root` and makes it the current one; removes the previous version.
 * A path that would escape the version directory is never written. Returns the relative paths written.
 */
export function writeVolume(root: string, volume: MaterialisedVolume | undefined): string[] {
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const version = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${randomBytes(4).toString('hex')}`;
  const dir = join(root, version);
  mkdirSync(dir, { mode: 0o755 });
  const written: string[] = [];
  const top = new Set<string>();
  for (const f of volume?.files ?? []) {
    const path = normalize(join(dir, f.path));
    if (!path.startsWith(dir + '/')) continue;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, f.content);
    chmodSync(path, f.mode ?? 0o644); // exact, whatever the umask
    written.push(f.path);
    top.add(path.slice(dir.length + 1).split('/')[0]!);
  }
  let previous: string | undefined;
  try {
    previous = readlinkSync(join(root, DATA));
  } catch {
    previous = undefined;
  }
  // The swap: a new symlink beside, renamed over `..data` (rename is atomic).
  const tmp = join(root, `..data_tmp.${randomBytes(4).toString('hex')}`);
  symlinkSync(version, tmp);
  renameSync(tmp, join(root, DATA));
  for (const name of top) {
    const link = join(root, name);
    if (!isSymlink(link)) {
      rmSync(link, { recursive: true, force: true });
      symlinkSync(join(DATA, name), link);
    }
  }
  // Entries no longer in the volume, then the previous version.
  for (const name of readdirSync(root)) {
    if (name.startsWith('..') || top.has(name)) continue;
    // unlink, not rmSync: Node 24's rmSync leaves a dangling symlink in place (nodejs/node#61020), and a key
    // removed from the volume is exactly that once `..data` has moved on.
    if (isSymlink(join(root, name))) unlinkSync(join(root, name));
    else rmSync(join(root, name), { recursive: true, force: true });
  }
  if (previous && previous !== version) rmSync(join(root, previous), { recursive: true, force: true });
  return written;
}

/** Creates an emptyDir volume's directory (writable by any user the container runs as). */
export function makeEmptyDir(root: string): void {
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o777);
}

/** True when `root` holds a materialised volume (a `..data` link). */
export function hasVolumeData(root: string): boolean {
  return existsSync(join(root, DATA));
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
