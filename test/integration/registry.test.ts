/**
 * The local cluster's OCI registry (test/support/registry.ts): an image built with hack/oci.ts is pushed through
 * the distribution API (hack/images/push.ts, the client `make images` uses) and served back by digest; a registry with htpasswd auth refuses anonymous and wrong
 * credentials and serves the right ones.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef, IMAGES, type ImageName } from '../../hack/images/catalog.ts';
import {
  gzipLayer,
  imageLayout,
  mediaTypes,
  sha256,
  tarArchive,
  withParents,
  type ImageLayout,
} from '../../hack/oci.ts';
import { pushImage } from '../../hack/images/push.ts';
import { defaultBinDir, defaultClusterDir, LocalCluster } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';

/** A one-file image `name` (`<repository>:<tag>`): /hello.txt saying `text`. */
async function helloImage(name: string, text: string): Promise<ImageLayout> {
  const tar = tarArchive(
    withParents([{ path: 'hello.txt', type: 'file', mode: 0o644, data: Buffer.from(text) }]),
    0,
  );
  return imageLayout({
    name,
    created: '2026-01-01T00:00:00Z',
    config: { User: '', Env: [], Entrypoint: ['/hello'], WorkingDir: '/', Labels: {} },
    layers: [{ gz: await gzipLayer(tar), diffId: sha256(tar), createdBy: 'registry.test.ts' }],
  });
}

const base = (registry: string) => `http://${registry.replace(/^localhost/, '127.0.0.1')}/v2`;
const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});

describe('the local cluster registry', () => {
  const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);

  it('serves an image pushed to it, by tag and by digest', async () => {
    const registry = cluster.registry;
    expect(registry).toMatch(/^localhost:\d+$/);
    const tag = `t${process.pid}`;
    const layout = await helloImage(`spillway-test/hello:${tag}`, 'hello from the registry test');
    const { digest } = await pushImage(layout, { registry, repository: 'spillway-test/hello', tag });

    const byTag = await fetch(`${base(registry)}/spillway-test/hello/manifests/${tag}`, {
      headers: { accept: mediaTypes.manifest },
    });
    expect(byTag.status).toBe(200);
    expect(byTag.headers.get('docker-content-digest')).toBe(digest);
    const manifest = (await byTag.json()) as { layers: { digest: string }[] };
    const layer = await fetch(`${base(registry)}/spillway-test/hello/blobs/${manifest.layers[0]!.digest}`);
    expect(sha256(Buffer.from(await layer.arrayBuffer()))).toBe(manifest.layers[0]!.digest);

    const byDigest = await fetch(`${base(registry)}/spillway-test/hello/manifests/${digest}`, {
      headers: { accept: mediaTypes.manifest },
    });
    expect(byDigest.status).toBe(200);
    // Deletes are enabled: a test can clean up what it pushed.
    const deleted = await fetch(`${base(registry)}/spillway-test/hello/manifests/${digest}`, {
      method: 'DELETE',
    });
    expect(deleted.status).toBe(202);
  });

  it('holds every catalog image once the test setup has run, under the registry it provides', async () => {
    const registry = inject('registry');
    expect(registry).toBe(cluster.registry);
    expect(process.env.SPILLWAY_REGISTRY).toBe(registry);
    for (const name of Object.keys(IMAGES) as ImageName[]) {
      const ref = imageRef(name, registry);
      const [repository, tag] = ref.slice(registry.length + 1).split(':');
      const res = await fetch(`${base(registry)}/${repository}/manifests/${tag}`, {
        method: 'HEAD',
        headers: { accept: mediaTypes.manifest },
      });
      expect(res.status, ref).toBe(200);
    }
  });
});

describe('a registry that requires credentials (htpasswd)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-registry-auth-'));
  const auth = { user: 'burst', password: 'correct horse battery staple' };
  let registry: RunningRegistry;

  beforeAll(async () => {
    registry = await startRegistry({ dir, binDir: defaultBinDir, port: await freePort(), auth });
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses anonymous and wrong credentials, and serves the right ones', async () => {
    expect((await fetch(`${base(registry.host)}/`)).status).toBe(401);
    expect((await fetch(`${base(registry.host)}/`, { headers: basic(auth.user, 'wrong') })).status).toBe(401);
    expect((await fetch(`${base(registry.host)}/`, { headers: basic('nobody', auth.password) })).status).toBe(
      401,
    );
    expect(
      (await fetch(`${base(registry.host)}/`, { headers: basic(auth.user, auth.password) })).status,
    ).toBe(200);
  });

  it('takes a push only with credentials, and serves it only with them', async () => {
    const layout = await helloImage('private/hello:1', 'secret hello');
    const target = { registry: registry.host, repository: 'private/hello', tag: '1' };
    await expect(pushImage(layout, target)).rejects.toThrow(/HTTP 401/);
    await expect(
      pushImage(layout, { ...target, credentials: { username: auth.user, password: 'wrong' } }),
    ).rejects.toThrow(/HTTP 401 \(the registry refused these credentials\)/);
    const { digest } = await pushImage(layout, {
      ...target,
      credentials: { username: auth.user, password: auth.password },
    });

    const url = `${base(registry.host)}/private/hello/manifests/1`;
    const accept = { accept: mediaTypes.manifest };
    expect((await fetch(url, { headers: accept })).status).toBe(401);
    const pulled = await fetch(url, { headers: { ...accept, ...basic(auth.user, auth.password) } });
    expect(pulled.status).toBe(200);
    expect(pulled.headers.get('docker-content-digest')).toBe(digest);
  });
});
