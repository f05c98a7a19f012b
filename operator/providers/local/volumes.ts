/**
 * The files of a local sandbox's materialised volumes (configMap, secret, downwardAPI, projected) in
 * `<sandbox>/volumes/<name>/`, which sandbox-init.sh bind-mounts into the containers. The directory is
 * bind-mounted, not each file, so a file renamed into it on the host shows up inside the sandbox at once.
 *
 * Every file is written to a temporary file in its own directory and renamed over the old one: a reader in
 * the sandbox sees the old content or the new one, never a torn write (a kubelet swaps a `..data` symlink for
 * the same reason). A container that mounts one file of a volume through `subPath` keeps the file it started
 * with, as on a kubelet: its bind mount holds the old inode.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import type { V1Volume } from '@kubernetes/client-node';
import type { MaterialisedVolume } from '../types.ts';

/** True for the volume kinds whose files come from the pod controller (emptyDir and others are the sandbox's own). */
export function isMaterialised(volume: V1Volume): boolean {
  return Boolean(volume.configMap || volume.secret || volume.downwardAPI || volume.projected);
}

/**
 * Writes `volume`'s files under `root` (created with mode 0777 if missing), each atomically, and removes the
 * files under `root` that `volume` no longer lists (a key deleted from a ConfigMap). A path that would
 * escape `root` is never written. Returns the relative paths written.
 */
export function writeVolume(root: string, volume: MaterialisedVolume | undefined): string[] {
  mkdirSync(root, { recursive: true, mode: 0o777 });
  const written = new Set<string>();
  for (const f of volume?.files ?? []) {
    const path = normalize(join(root, f.path));
    if (!path.startsWith(root + '/')) continue;
    mkdirSync(dirname(path), { recursive: true });
    const tmp = join(dirname(path), `..${randomBytes(6).toString('hex')}.tmp`);
    try {
      writeFileSync(tmp, f.content);
      chmodSync(tmp, f.mode ?? 0o644); // exact, whatever the umask
      renameSync(tmp, path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    written.add(relative(root, path));
  }
  removeStale(root, root, written);
  return [...written];
}

/**
 * Removes files under `dir` not in `keep` (paths relative to `root`). Directories stay, even empty: one may
 * be the source of a container's `subPath` bind mount.
 */
function removeStale(root: string, dir: string, keep: Set<string>): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      removeStale(root, path, keep);
    } else if (!keep.has(relative(root, path))) {
      rmSync(path, { force: true });
    }
  }
}
