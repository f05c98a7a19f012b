/**
 * make images: the images the local cluster runs (hack/images/catalog.ts), built without a container engine
 * from what this machine's registries serve: Debian packages (`apt-get download`), Go binaries built from the
 * module proxy (bin/agnhost, bin/coredns by hack/build-tools.sh; pause from hack/images/pause), Spark's jars from
 * Maven Central (`mvn`, hack/images/spark/pom.xml), and the operator's own image (`make image`, hack/build-image.ts). Each lands in dist/images/<name>-<tag>.oci.tar
 * (an OCI layout, like `make image`'s) and, with --push, in a registry.
 *
 *   node hack/build-images.ts [--only busybox,nginx] [--push localhost:5000|cluster] [--user u --password p]
 *
 * `--push cluster` pushes to the local cluster's registry (`make cluster-up`, SPILLWAY_CLUSTER_DIR).
 *
 * Layers are deterministic (hack/oci.ts) and cached under dist/images/.cache by the digest of their tar, so
 * unchanged inputs rebuild in seconds and give the same digests; a new Debian package version, a rebuilt
 * binary or an edited pause source changes just the layers holding them.
 */
import { join, posix } from 'node:path';
import { parseArgs } from 'node:util';
import { appVersion, buildImage, ROOT } from './build-image.ts';
import { busybox } from './images/base.ts';
import { agnhost, coredns, metricsServer, pause } from './images/binaries.ts';
import { DEFAULT_REGISTRY, IMAGES, type ImageName } from './images/catalog.ts';
import { fakeEci } from './images/fake-eci.ts';
import { jenkinsAgent } from './images/jenkins-agent.ts';
import { nginx } from './images/nginx.ts';
import { spark } from './images/spark.ts';
import { pushImage, type PushResult, type RegistryCredentials } from './images/push.ts';
import type { BuildContext, Recipe } from './images/recipe.ts';
import { LayerCache, mb, writeLayoutTarball } from './images/store.ts';
import { imageLayout, type ImageLayout } from './oci.ts';

const OUT_DIR = join(ROOT, 'dist/images');
const CACHE = join(OUT_DIR, '.cache');

const RECIPES: Record<ImageName, Recipe> = {
  pause,
  busybox,
  nginx,
  agnhost,
  coredns,
  'metrics-server': metricsServer,
  spark,
  'fake-eci': fakeEci,
  'jenkins-agent': jenkinsAgent,
};

/** The operator's image in the registry: `spillway/spillway:<appVersion>`. */
export const OPERATOR_REPOSITORY = 'spillway/spillway';

/** Every image `make images` builds: the catalog's, then the operator's. */
export const ALL_IMAGES = [...(Object.keys(IMAGES) as ImageName[]), 'operator'] as const;
export type BuildableImage = (typeof ALL_IMAGES)[number];

/** One built image: where its tarball is, and the layout to push. */
export interface BuiltImageFile {
  name: BuildableImage;
  /** `<repository>:<tag>` in a registry, e.g. `spillway/busybox:1.35.0`. */
  reference: string;
  path: string;
  layout: ImageLayout;
  /** Compressed size of its layers. */
  size: number;
}

function log(line: string): void {
  console.log(`build-images: ${line}`);
}

/** Creation time of every catalog image: fixed, so the config (and manifest) digest depends on content only. */
const CREATED = '2026-01-01T00:00:00Z';

/** Where and what {@link buildImages} builds. */
export interface BuildOptions {
  /** The images to build; all by default. */
  only?: readonly BuildableImage[];
  /** Where the tarballs go (default dist/images); its `.cache` holds the layers and the pause binary. */
  outDir?: string;
  /** Downloaded Debian packages (default dist/images/.cache/debs): shared by builds into other folders. */
  debs?: string;
}

/**
 * Builds the named images (all by default) into dist/images/ and returns them; images whose inputs did not
 * change come from the cache and keep their digests.
 */
export async function buildImages(options: BuildOptions = {}): Promise<BuiltImageFile[]> {
  const { only = ALL_IMAGES, outDir = OUT_DIR } = options;
  const cacheDir = join(outDir, '.cache');
  const layers = new LayerCache(join(cacheDir, 'layers'));
  const ctx: BuildContext = { root: ROOT, debs: options.debs ?? join(CACHE, 'debs'), cacheDir, layers, log };
  const built: BuiltImageFile[] = [];
  for (const name of only) {
    const t0 = performance.now();
    if (name === 'operator') {
      const operator = await buildImage();
      const size = operator.layout.blobs.slice(2).reduce((s, b) => s + b.data.length, 0);
      built.push({
        name,
        reference: `${OPERATOR_REPOSITORY}:${appVersion()}`,
        path: operator.path,
        layout: operator.layout,
        size,
      });
      continue;
    }
    const image = await RECIPES[name](ctx);
    const layout = imageLayout({
      name: `${DEFAULT_REGISTRY}/${IMAGES[name]}`,
      created: CREATED,
      config: image.config,
      layers: image.layers,
    });
    const [repository, tag] = IMAGES[name].split(':');
    const path = join(outDir, `${posix.basename(repository!)}-${tag}.oci.tar`);
    const wrote = writeLayoutTarball(layout, path, cacheDir);
    const size = image.layers.reduce((s, l) => s + l.gz.length, 0);
    const raw = image.layers.reduce((s, l) => s + l.raw, 0);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    log(
      `${IMAGES[name]} ${wrote ? 'written' : 'up to date'} (${seconds} s): ${mb(size)} (${mb(raw)} unpacked)`,
    );
    log(`  from ${image.inputs}`);
    log(`  digest ${layout.manifestDigest} → ${posix.relative(ROOT, path)}`);
    built.push({ name, reference: IMAGES[name], path, layout, size });
  }
  // Only a full build knows every layer still in use; a partial one would drop the others' blobs.
  if (only.length === ALL_IMAGES.length) layers.prune();
  return built;
}

/** Pushes built images to `registry` under their references; blobs the registry has are not sent again. */
export async function pushImages(
  images: BuiltImageFile[],
  registry: string,
  credentials?: RegistryCredentials,
): Promise<PushResult[]> {
  const results: PushResult[] = [];
  const pushed = new Map<string, string>(); // digest → a repository that has it now
  for (const image of images) {
    const colon = image.reference.lastIndexOf(':');
    const repository = image.reference.slice(0, colon);
    const result = await pushImage(image.layout, {
      registry,
      repository,
      tag: image.reference.slice(colon + 1),
      credentials,
      mountFrom: pushed,
    });
    for (const blob of image.layout.blobs) if (!pushed.has(blob.digest)) pushed.set(blob.digest, repository);
    log(
      `pushed ${registry}/${image.reference}@${result.digest} (${result.uploaded} blobs, ${mb(result.bytes)} sent; ${result.mounted} mounted, ${result.skipped} already there)`,
    );
    results.push(result);
  }
  return results;
}

/** The `--only` list, checked against the image names (a typo is an error naming the valid ones). */
export function parseOnly(value: string | undefined): BuildableImage[] {
  if (!value) return [...ALL_IMAGES];
  const names = value
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(ALL_IMAGES as readonly string[]).includes(n));
  if (unknown.length > 0)
    throw new Error(`--only: unknown image ${unknown.join(', ')}; images are ${ALL_IMAGES.join(', ')}`);
  return ALL_IMAGES.filter((n) => names.includes(n));
}

/** `--push cluster`: the registry of the local cluster (SPILLWAY_CLUSTER_DIR, default .cluster), which must be up. */
async function localClusterRegistry(): Promise<string> {
  const { LocalCluster } = await import('../test/support/cluster.ts');
  const cluster = new LocalCluster();
  if (!(await cluster.isRunning()))
    throw new Error('--push cluster: the local cluster is not running; start it with `make cluster-up`');
  return cluster.registry;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      push: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string' },
    },
  });
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error('builds linux/amd64 on linux/amd64 only');
  if (Boolean(values.user) !== Boolean(values.password)) throw new Error('--user and --password go together');
  const t0 = performance.now();
  const images = await buildImages({ only: parseOnly(values.only) });
  const total = images.reduce((s, i) => s + i.size, 0);
  log(
    `${images.length} images built in ${((performance.now() - t0) / 1000).toFixed(1)} s (${mb(total)} of layers)`,
  );
  if (values.push) {
    const t1 = performance.now();
    const registry = values.push === 'cluster' ? await localClusterRegistry() : values.push;
    const credentials = values.user ? { username: values.user, password: values.password! } : undefined;
    await pushImages(images, registry, credentials);
    log(`pushed to ${registry} in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`build-images: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
