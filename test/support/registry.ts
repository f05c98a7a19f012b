/**
 * The local cluster's OCI registry: distribution v3 (bin/registry, built from the Go module proxy by
 * hack/build-tools.sh) serving one folder on 127.0.0.1, and {@link seedImages}, which fills a registry with the
 * catalog's images (hack/images/catalog.ts) as `make images` builds and pushes them.
 *
 * Images are referred to as `localhost:<port>/...` (hack/images/catalog.ts): containerd and Docker treat a
 * `localhost` registry as plain HTTP, so no certificate is needed. The registry binds 127.0.0.1 only, has no
 * debug server, no notifications and no tracing exporter: it never sends anything off this machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildImages,
  pushImages,
  type BuildableImage,
  type BuiltImageFile,
} from '../../hack/build-images.ts';
import { IMAGES, type ImageName } from '../../hack/images/catalog.ts';
import { registryUrl, type RegistryCredentials } from '../../hack/images/push.ts';
import { mediaTypes } from '../../hack/oci.ts';

/** Basic-auth credentials of a registry that requires them (htpasswd). */
export interface RegistryAuth {
  user: string;
  password: string;
}

export interface RegistryOptions {
  /** Folder of its config, htpasswd file and storage (`<dir>/registry`). */
  dir: string;
  /** Where the registry binary is (bin/registry). */
  binDir: string;
  /** Port on 127.0.0.1. */
  port: number;
  /** When set, every request needs these credentials (htpasswd, bcrypt). */
  auth?: RegistryAuth;
}

/**
 * The htpasswd line of a user, bcrypt at the lowest cost (4): the registry checks it on every request, and
 * these credentials guard test images on loopback, not secrets. Python's `crypt` is the one bcrypt this
 * machine has without another dependency (Debian's python3 ≤ 3.12).
 */
export function htpasswdLine(auth: RegistryAuth): string {
  const hash = execFileSync(
    'python3',
    [
      '-W',
      'ignore',
      '-c',
      'import crypt, sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))',
    ],
    { input: auth.password, encoding: 'utf8' },
  ).trim();
  if (!hash.startsWith('$2'))
    throw new Error(`python3 crypt gave no bcrypt hash (got ${JSON.stringify(hash)})`);
  return `${auth.user}:${hash}\n`;
}

/**
 * Writes the registry's config (and htpasswd file) under `<dir>/registry` and returns the command that
 * serves it: `bin/registry serve <config.yml>`.
 */
export function registryCommand(options: RegistryOptions): string[] {
  const root = join(options.dir, 'registry');
  mkdirSync(join(root, 'storage'), { recursive: true, mode: 0o700 });
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(root, 'storage')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${options.port}`,
    // Signs upload state; a fresh one per config (uploads do not survive a restart, nothing needs them to).
    `  secret: ${randomBytes(16).toString('hex')}`,
    'health:',
    '  storagedriver:',
    '    enabled: false',
  ];
  if (options.auth) {
    const htpasswd = join(root, 'htpasswd');
    writeFileSync(htpasswd, htpasswdLine(options.auth), { mode: 0o600 });
    lines.push('auth:', '  htpasswd:', '    realm: spillway', `    path: ${htpasswd}`);
  }
  const config = join(root, 'config.yml');
  writeFileSync(config, `${lines.join('\n')}\n`);
  return [join(options.binDir, 'registry'), 'serve', config];
}

/** The environment the registry runs with: OpenTelemetry off, so it exports no traces or metrics anywhere. */
export const registryEnv: NodeJS.ProcessEnv = {
  ...process.env,
  OTEL_SDK_DISABLED: 'true',
  OTEL_TRACES_EXPORTER: 'none',
  OTEL_METRICS_EXPORTER: 'none',
  OTEL_LOGS_EXPORTER: 'none',
};

/** True when the registry on `host` (`localhost:PORT`) answers the distribution API (200, or 401 with auth). */
export async function registryAnswers(host: string): Promise<boolean> {
  const res = await fetch(`http://${loopback(host)}/v2/`, { signal: AbortSignal.timeout(2000) });
  return res.status === 200 || res.status === 401;
}

/** A registry a test started (see {@link startRegistry}). */
export interface RunningRegistry {
  /** `localhost:PORT`: the registry part of image references. */
  host: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a registry as a child of this process (tests that need a second one, e.g. with auth) and waits until
 * it answers. The local cluster's own registry is started by LocalCluster from {@link registryCommand}.
 */
export async function startRegistry(options: RegistryOptions): Promise<RunningRegistry> {
  const argv = registryCommand(options);
  const log = openSync(join(options.dir, 'registry', 'registry.log'), 'a');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log, log], env: registryEnv });
  closeSync(log);
  const host = `localhost:${options.port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  for (const deadline = Date.now() + 30_000; ;) {
    if (gone)
      throw new Error(
        `registry exited during start-up; see ${join(options.dir, 'registry', 'registry.log')}`,
      );
    if (await registryAnswers(host).catch(() => false)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`registry on ${host} not answering after 30 s`);
    }
    await sleep(50);
  }
  return {
    host,
    pid: child.pid!,
    stop: async () => {
      if (!gone) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `localhost:PORT` → `127.0.0.1:PORT`: Node may resolve `localhost` to ::1, where the registry does not listen. */
function loopback(host: string): string {
  return host.replace(/^localhost(?=:|$)/, '127.0.0.1');
}

/** What {@link seedImages} did. */
export interface SeedResult {
  /** Images pushed because the registry lacked them (or had another digest under their tag). */
  pushed: BuildableImage[];
  /** Images the registry already served with the digest just built. */
  present: BuildableImage[];
  /** Blobs and bytes uploaded (blobs already in the registry are mounted or skipped, not sent). */
  uploaded: number;
  bytes: number;
}

/**
 * Builds the catalog images `only` names (all by default; hack/build-images.ts, whose layer cache makes an
 * unchanged build take seconds) and pushes to `registry` (`localhost:PORT`) those it does not already serve
 * under their tag with the digest just built, so that seeding a registry that has them sends nothing.
 */
export async function seedImages(
  registry: string,
  only: readonly BuildableImage[] = Object.keys(IMAGES) as ImageName[],
  credentials?: RegistryCredentials,
): Promise<SeedResult> {
  const images = await buildImages({ only });
  const missing: BuiltImageFile[] = [];
  const result: SeedResult = { pushed: [], present: [], uploaded: 0, bytes: 0 };
  for (const image of images) {
    const name = image.name;
    if ((await servedDigest(registry, image.reference, credentials)) === image.layout.manifestDigest)
      result.present.push(name);
    else {
      missing.push(image);
      result.pushed.push(name);
    }
  }
  for (const pushed of await pushImages(missing, registry, credentials)) {
    result.uploaded += pushed.uploaded;
    result.bytes += pushed.bytes;
  }
  return result;
}

/** The manifest digest `registry` serves for `reference` (`<repository>:<tag>`), or undefined if none. */
async function servedDigest(
  registry: string,
  reference: string,
  credentials?: RegistryCredentials,
): Promise<string | undefined> {
  const colon = reference.lastIndexOf(':');
  const url = `${registryUrl(registry)}/v2/${reference.slice(0, colon)}/manifests/${reference.slice(colon + 1)}`;
  const res = await fetch(url, {
    method: 'HEAD',
    headers: {
      accept: mediaTypes.manifest,
      ...(credentials
        ? {
            authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
          }
        : {}),
    },
  });
  return res.ok ? (res.headers.get('docker-content-digest') ?? undefined) : undefined;
}
