/**
 * The local cluster's OCI registry: distribution v3 (bin/registry, built from the Go module proxy by
 * hack/build-tools.sh) serving one folder on 127.0.0.1, and a small push client for images built with hack/oci.ts.
 *
 * Images are referred to as `localhost:<port>/...` (hack/images/catalog.ts): containerd and Docker treat a
 * `localhost` registry as plain HTTP, so no certificate is needed. The registry binds 127.0.0.1 only, has no
 * debug server, no notifications and no tracing exporter: it never sends anything off this machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  gzipLayer,
  imageLayout,
  sha256,
  tarArchive,
  withParents,
  type ImageLayout,
  type Layer,
} from '../../hack/oci.ts';

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

function authHeader(auth?: RegistryAuth): Record<string, string> {
  return auth
    ? { authorization: `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}` }
    : {};
}

/**
 * Pushes an image built with hack/oci.ts (`imageLayout`) to `registry` (`localhost:PORT`) as
 * `<repository>:<tag>` through the OCI distribution API: each blob the registry lacks (HEAD, then POST + PUT
 * `?digest=`), then the manifest. Returns the manifest digest.
 */
export async function pushLayout(
  registry: string,
  repository: string,
  tag: string,
  layout: ImageLayout,
  auth?: RegistryAuth,
): Promise<string> {
  const base = `http://${loopback(registry)}/v2/${repository}`;
  const headers = authHeader(auth);
  const check = async (res: Response, what: string) => {
    if (!res.ok)
      throw new Error(
        `push ${registry}/${repository}:${tag}: ${what}: HTTP ${res.status} ${await res.text()}`,
      );
    return res;
  };
  const manifest = layout.blobs.find((b) => b.digest === layout.manifestDigest);
  if (!manifest) throw new Error('image layout has no manifest blob');
  const seen = new Set<string>();
  for (const blob of layout.blobs) {
    if (blob.digest === layout.manifestDigest || seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    const head = await fetch(`${base}/blobs/${blob.digest}`, { method: 'HEAD', headers });
    if (head.ok) continue;
    const started = await check(
      await fetch(`${base}/blobs/uploads/`, { method: 'POST', headers }),
      `start upload of ${blob.digest}`,
    );
    const location = new URL(started.headers.get('location') ?? '', `${base}/`);
    location.searchParams.set('digest', blob.digest);
    await check(
      await fetch(location, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/octet-stream' },
        body: blob.data,
      }),
      `upload ${blob.digest}`,
    );
  }
  const mediaType = (JSON.parse(manifest.data.toString()) as { mediaType: string }).mediaType;
  await check(
    await fetch(`${base}/manifests/${tag}`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': mediaType },
      body: manifest.data,
    }),
    'put manifest',
  );
  return layout.manifestDigest;
}

const agnhostLayers = new Map<string, Promise<Layer>>();

/**
 * Pushes `<binDir>/agnhost` (Kubernetes' static test binary) as the one-layer image `<repository>:<tag>` running
 * `/agnhost <entrypoint...>`, for tests that need a runnable image without `make images` (`['pause']` makes a
 * pod sandbox image). The layer is built once per process. Returns the image reference.
 */
export async function pushAgnhostImage(
  registry: string,
  binDir: string,
  repository: string,
  tag: string,
  entrypoint: string[],
  auth?: RegistryAuth,
): Promise<string> {
  let layer = agnhostLayers.get(binDir);
  if (!layer) {
    layer = (async () => {
      const tar = tarArchive(
        withParents([
          { path: 'agnhost', type: 'file', mode: 0o755, data: readFileSync(join(binDir, 'agnhost')) },
          { path: 'tmp', type: 'dir', mode: 0o1777 },
        ]),
        0,
      );
      return { gz: await gzipLayer(tar), diffId: sha256(tar), createdBy: 'COPY bin/agnhost /agnhost' };
    })();
    agnhostLayers.set(binDir, layer);
  }
  const layout = imageLayout({
    name: `${repository}:${tag}`,
    created: '2026-01-01T00:00:00Z',
    config: {
      User: '',
      Env: ['PATH=/'],
      Entrypoint: ['/agnhost', ...entrypoint],
      WorkingDir: '/',
      Labels: {},
    },
    layers: [await layer],
  });
  await pushLayout(registry, repository, tag, layout, auth);
  return `${registry}/${repository}:${tag}`;
}

/** True when `registry` has `<repository>:<tag>` (e.g. the pause image `make images` pushed). */
export async function hasImage(
  registry: string,
  repository: string,
  tag: string,
  auth?: RegistryAuth,
): Promise<boolean> {
  const res = await fetch(`http://${loopback(registry)}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: {
      accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json',
      ...authHeader(auth),
    },
  });
  return res.ok;
}

/** Makes sure `registry` serves the sandbox (pause) image containerd pins: agnhost's `pause` unless one is there. */
export async function ensurePauseImage(registry: string, binDir: string, pauseName: string): Promise<void> {
  const [repository, tag] = pauseName.split(':') as [string, string];
  if (!(await hasImage(registry, repository, tag)))
    await pushAgnhostImage(registry, binDir, repository, tag, ['pause']);
}
