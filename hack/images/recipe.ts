/**
 * What one image of `make images` is: a recipe turning inputs (Debian packages, binaries under bin/, our Go
 * source) into layers and the run config, given the caches it may use. hack/build-images.ts runs the recipes,
 * writes each image's layout tarball and pushes it.
 */
import type { RunConfig } from '../oci.ts';
import type { LayerCache, SizedLayer } from './store.ts';

/** What every recipe gets: the repository root, the folders it may cache in, and the shared layer cache. */
export interface BuildContext {
  root: string;
  /** Downloaded and unpacked Debian packages (hack/images/debian.ts). */
  debs: string;
  /** Folder for other cached outputs (e.g. the pause binary keyed by its source). */
  cacheDir: string;
  layers: LayerCache;
  log(line: string): void;
}

/** A built image before it becomes an OCI layout: layers bottom first, and what it runs. */
export interface BuiltImage {
  layers: SizedLayer[];
  config: RunConfig;
  /** One line naming the inputs (package versions, binary digests), for the build log. */
  inputs: string;
}

export type Recipe = (ctx: BuildContext) => Promise<BuiltImage>;

/** The PATH of every image, as upstream Debian/busybox images set it. */
export const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
