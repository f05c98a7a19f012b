/**
 * An OCI distribution v2 client that pushes an image layout (hack/oci.ts `imageLayout`) to a registry: each
 * blob the repository lacks (HEAD, then a monolithic POST + PUT `?digest=`), then the manifest under its tag
 * with its media type. Authentication follows the registry's challenge: Basic with the credentials given, or
 * Bearer with a token fetched from the challenge's realm (Basic credentials sent there when given).
 *
 * `localhost` and 127.0.0.1 registries are spoken to over plain HTTP, as containerd and Docker do; others
 * over HTTPS.
 */
import { mediaTypes, type ImageLayout } from '../oci.ts';

/** Credentials for a registry that requires them (htpasswd basic auth, or a token server that takes them). */
export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface PushTarget {
  /** `host:port` of the registry, e.g. `localhost:5000`. */
  registry: string;
  /** Repository under the registry, e.g. `spillway/busybox`. */
  repository: string;
  tag: string;
  credentials?: RegistryCredentials;
  /**
   * Blobs known to be in other repositories of the same registry (digest → repository): mounted from there
   * instead of uploaded again (a registry keeps blobs per repository; a shared base layer is sent once).
   */
  mountFrom?: ReadonlyMap<string, string>;
}

/** What a push did: the manifest digest the registry now serves under the tag, and the blob traffic. */
export interface PushResult {
  digest: string;
  uploaded: number;
  /** Blobs the registry had in this repository already. */
  skipped: number;
  /** Blobs mounted from another repository (`mountFrom`) instead of uploaded. */
  mounted: number;
  bytes: number;
}

/** The base URL of a registry: plain HTTP for loopback names, HTTPS otherwise. */
export function registryUrl(registry: string): string {
  const host = registry.replace(/^localhost(?=:|$)/, '127.0.0.1'); // the registry may not listen on ::1
  const plain = /^(127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
  return `${plain ? 'http' : 'https'}://${host}`;
}

/** One registry session: requests that answer a 401 challenge once and remember the header that worked. */
class RegistrySession {
  readonly #base: string;
  readonly #target: PushTarget;
  #authorization: string | undefined;

  constructor(target: PushTarget) {
    this.#base = registryUrl(target.registry);
    this.#target = target;
  }

  /** `path` is relative to /v2/<repository>/ unless it is an absolute URL (an upload location). */
  async request(
    method: string,
    path: string,
    init: { body?: Buffer; headers?: Record<string, string> } = {},
  ) {
    const url = /^https?:/.test(path) ? path : `${this.#base}/v2/${this.#target.repository}/${path}`;
    const send = () =>
      fetch(url, {
        method,
        body: init.body,
        headers: { ...init.headers, ...(this.#authorization ? { authorization: this.#authorization } : {}) },
      }).catch((err: unknown) => {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new Error(
          `cannot reach the registry ${this.#target.registry} (${cause?.code ?? cause?.message ?? String(err)}): is it running? (make cluster-up starts the local one)`,
          { cause: err },
        );
      });
    let res = await send();
    if (res.status === 401 && (await this.#answer(res))) res = await send();
    return res;
  }

  /** Sets the authorization a 401 asks for; false when there is nothing to answer it with. */
  async #answer(res: Response): Promise<boolean> {
    await res.body?.cancel();
    const challenge = res.headers.get('www-authenticate') ?? '';
    const creds = this.#target.credentials;
    const basic = creds
      ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
      : undefined;
    if (/^basic\b/i.test(challenge)) {
      if (!basic || this.#authorization === basic) return false;
      this.#authorization = basic;
      return true;
    }
    if (/^bearer\b/i.test(challenge)) {
      const params = Object.fromEntries(
        [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]),
      );
      if (!params.realm) return false;
      const token = new URL(params.realm);
      if (params.service) token.searchParams.set('service', params.service);
      token.searchParams.set('scope', params.scope ?? `repository:${this.#target.repository}:pull,push`);
      const answer = await fetch(token, { headers: basic ? { authorization: basic } : {} });
      if (!answer.ok) return false;
      const body = (await answer.json()) as { token?: string; access_token?: string };
      const value = body.token ?? body.access_token;
      if (!value || this.#authorization === `Bearer ${value}`) return false;
      this.#authorization = `Bearer ${value}`;
      return true;
    }
    return false;
  }
}

/**
 * Pushes `layout` to `<registry>/<repository>:<tag>`, skipping blobs the repository already has. Throws with
 * the registry's answer on any refusal (a 401 names the flags that pass credentials).
 */
export async function pushImage(layout: ImageLayout, target: PushTarget): Promise<PushResult> {
  const session = new RegistrySession(target);
  const ref = `${target.registry}/${target.repository}:${target.tag}`;
  const expect = async (res: Response, what: string, ok: number[]): Promise<Response> => {
    if (ok.includes(res.status)) return res;
    const body = (await res.text()).trim().slice(0, 500);
    const hint =
      res.status === 401
        ? target.credentials
          ? ' (the registry refused these credentials)'
          : ' (the registry requires credentials: pass --user and --password)'
        : '';
    throw new Error(`push ${ref}: ${what}: HTTP ${res.status}${hint} ${body}`);
  };
  const manifest = layout.blobs.find((b) => b.digest === layout.manifestDigest);
  if (!manifest) throw new Error(`push ${ref}: the image layout has no manifest blob`);
  const result: PushResult = { digest: layout.manifestDigest, uploaded: 0, skipped: 0, mounted: 0, bytes: 0 };
  const seen = new Set<string>([layout.manifestDigest]);
  for (const blob of layout.blobs) {
    if (seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    const head = await session.request('HEAD', `blobs/${blob.digest}`);
    if (head.status === 200) {
      result.skipped++;
      continue;
    }
    await expect(head, `check blob ${blob.digest}`, [404]);
    const from = target.mountFrom?.get(blob.digest);
    if (from) {
      const mount = await session.request(
        'POST',
        `blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(from)}`,
      );
      await mount.body?.cancel();
      // 201: mounted. 202: the registry would not (e.g. no access to `from`) and opened an upload instead,
      // which is dropped here for a fresh one below.
      if (mount.status === 201) {
        result.mounted++;
        continue;
      }
    }
    const started = await expect(
      await session.request('POST', 'blobs/uploads/'),
      `start upload of ${blob.digest}`,
      [202],
    );
    await started.body?.cancel();
    const location = started.headers.get('location');
    if (!location) throw new Error(`push ${ref}: the registry gave no upload location for ${blob.digest}`);
    const url = new URL(location, `${registryUrl(target.registry)}/`);
    url.searchParams.set('digest', blob.digest);
    const put = await session.request('PUT', url.href, {
      body: blob.data,
      headers: { 'content-type': 'application/octet-stream' },
    });
    await (await expect(put, `upload ${blob.digest}`, [201])).body?.cancel();
    result.uploaded++;
    result.bytes += blob.data.length;
  }
  const put = await session.request('PUT', `manifests/${target.tag}`, {
    body: manifest.data,
    headers: { 'content-type': mediaTypes.manifest },
  });
  await (await expect(put, 'put the manifest', [201])).body?.cancel();
  const served = put.headers.get('docker-content-digest');
  if (served && served !== layout.manifestDigest)
    throw new Error(
      `push ${ref}: the registry stored the manifest as ${served}, not ${layout.manifestDigest}`,
    );
  return result;
}
