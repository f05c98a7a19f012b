/**
 * The push client (hack/images/push.ts) against a fake registry that keeps blobs and manifests in memory and
 * answers the distribution API's challenges (Basic, or Bearer with a token endpoint), and the CLI's checks.
 * The real registry, the real images and their contents are tested in test/integration/images.test.ts.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseOnly } from './build-images.ts';
import { accountEntries } from './images/base.ts';
import { upstreamVersion } from './images/debian.ts';
import { pushImage, registryUrl } from './images/push.ts';
import { imageLayout, mediaTypes, sha256, type ImageLayout } from './oci.ts';

/** A two-layer image whose layers are plain bytes (the registry does not look inside them). */
function image(first = 'layer one', second = 'layer two'): ImageLayout {
  const layer = (text: string) => ({ gz: Buffer.from(text), diffId: sha256(text), createdBy: text });
  return imageLayout({
    name: 'spillway/test:1',
    created: '2026-01-01T00:00:00Z',
    config: { Entrypoint: ['/hello'] },
    layers: [layer(first), layer(second)],
  });
}

interface Request {
  method: string;
  path: string;
  authorization?: string;
  contentType?: string;
}

/** A fake registry: in-memory blobs and manifests, every request recorded, auth per `mode`. */
class FakeRegistry {
  /** By `<repository>@<digest>`: a registry keeps blobs per repository. */
  readonly blobs = new Map<string, Buffer>();
  /** By `<repository>:<tag>`. */
  readonly manifests = new Map<string, { body: Buffer; contentType: string }>();
  readonly requests: Request[] = [];
  readonly #server: Server;
  #uploads = 0;

  readonly mode: 'open' | 'basic' | 'bearer';

  constructor(mode: 'open' | 'basic' | 'bearer') {
    this.mode = mode;
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.#serve(req, Buffer.concat(chunks), res));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `localhost:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #serve(req: IncomingMessage, body: Buffer, res: import('node:http').ServerResponse): void {
    const url = new URL(req.url!, 'http://registry');
    const authorization = req.headers.authorization;
    this.requests.push({
      method: req.method!,
      path: url.pathname,
      authorization,
      contentType: req.headers['content-type'],
    });
    if (url.pathname === '/token') {
      const ok = authorization === `Basic ${Buffer.from('alice:secret').toString('base64')}`;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(ok ? JSON.stringify({ token: 'granted' }) : '{}');
      return;
    }
    const allowed =
      this.mode === 'open' ||
      (this.mode === 'basic' &&
        authorization === `Basic ${Buffer.from('alice:secret').toString('base64')}`) ||
      (this.mode === 'bearer' && authorization === 'Bearer granted');
    if (!allowed) {
      const port = (this.#server.address() as AddressInfo).port;
      res.writeHead(401, {
        'www-authenticate':
          this.mode === 'basic'
            ? 'Basic realm="fake"'
            : `Bearer realm="http://127.0.0.1:${port}/token",service="fake",scope="repository:spillway/test:pull,push"`,
      });
      res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]+)$/.exec(url.pathname);
    const uploads = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(url.pathname);
    const upload = /^\/v2\/(.+)\/blobs\/uploads\/u\d+$/.exec(url.pathname);
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'HEAD' && blob) {
      res.writeHead(this.blobs.has(`${blob[1]}@${blob[2]}`) ? 200 : 404).end();
    } else if (req.method === 'POST' && uploads) {
      const [mount, from] = [url.searchParams.get('mount'), url.searchParams.get('from')];
      if (mount && this.blobs.has(`${from}@${mount}`)) {
        this.blobs.set(`${uploads[1]}@${mount}`, this.blobs.get(`${from}@${mount}`)!);
        res.writeHead(201).end();
        return;
      }
      res.writeHead(202, { location: `/v2/${uploads[1]}/blobs/uploads/u${++this.#uploads}?_state=x` }).end();
    } else if (req.method === 'PUT' && upload) {
      const digest = url.searchParams.get('digest')!;
      if (sha256(body) !== digest || url.searchParams.get('_state') !== 'x') {
        res.writeHead(400).end('{"errors":[{"code":"DIGEST_INVALID"}]}');
        return;
      }
      this.blobs.set(`${upload[1]}@${digest}`, body);
      res.writeHead(201).end();
    } else if (req.method === 'PUT' && manifest) {
      this.manifests.set(`${manifest[1]}:${manifest[2]}`, {
        body,
        contentType: req.headers['content-type']!,
      });
      res.writeHead(201, { 'docker-content-digest': sha256(body) }).end();
    } else {
      res.writeHead(404).end();
    }
  }
}

describe('pushImage', () => {
  const registries: FakeRegistry[] = [];
  afterEach(async () => Promise.all(registries.splice(0).map((r) => r.close())));
  const start = async (mode: FakeRegistry['mode']) => {
    const fake = new FakeRegistry(mode);
    registries.push(fake);
    return { fake, registry: await fake.listen() };
  };

  it('uploads the config and every layer, then the manifest under its tag with the OCI media type', async () => {
    const { fake, registry } = await start('open');
    const layout = image();
    const result = await pushImage(layout, { registry, repository: 'spillway/test', tag: '1' });
    expect(result).toMatchObject({ digest: layout.manifestDigest, uploaded: 3, skipped: 0 });
    for (const blob of layout.blobs.slice(1))
      expect(fake.blobs.get(`spillway/test@${blob.digest}`)).toEqual(blob.data);
    const stored = fake.manifests.get('spillway/test:1')!;
    expect(stored.contentType).toBe(mediaTypes.manifest);
    expect(sha256(stored.body)).toBe(layout.manifestDigest);
  });

  it('sends only the blobs the registry lacks: a second image sharing a layer uploads the rest', async () => {
    const { fake, registry } = await start('open');
    await pushImage(image(), { registry, repository: 'spillway/test', tag: '1' });
    const again = await pushImage(image(), { registry, repository: 'spillway/test', tag: '1' });
    expect(again).toMatchObject({ uploaded: 0, skipped: 3, bytes: 0 });
    const other = await pushImage(image('layer one', 'a new layer'), {
      registry,
      repository: 'spillway/test',
      tag: '2',
    });
    // The config changes with the diff_ids, and the second layer is new: two uploads, one skip.
    expect(other).toMatchObject({ uploaded: 2, skipped: 1 });
    expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(5);
  });

  it('mounts a blob another repository has instead of uploading it again', async () => {
    const { fake, registry } = await start('open');
    const layout = image();
    await pushImage(layout, { registry, repository: 'spillway/test', tag: '1' });
    const layer = layout.blobs.at(-1)!.digest;
    const other = await pushImage(layout, {
      registry,
      repository: 'spillway/other',
      tag: '1',
      mountFrom: new Map([[layer, 'spillway/test']]),
    });
    expect(other).toMatchObject({ uploaded: 2, mounted: 1, skipped: 0 });
    expect(fake.blobs.get(`spillway/other@${layer}`)).toEqual(layout.blobs.at(-1)!.data);
  });

  it('answers a Basic challenge with the credentials given', async () => {
    const { fake, registry } = await start('basic');
    const result = await pushImage(image(), {
      registry,
      repository: 'spillway/test',
      tag: '1',
      credentials: { username: 'alice', password: 'secret' },
    });
    expect(result.uploaded).toBe(3);
    expect(fake.manifests.has('spillway/test:1')).toBe(true);
  });

  it('fetches a Bearer token from the challenge realm with the credentials, and uses it', async () => {
    const { fake, registry } = await start('bearer');
    await pushImage(image(), {
      registry,
      repository: 'spillway/test',
      tag: '1',
      credentials: { username: 'alice', password: 'secret' },
    });
    expect(fake.manifests.has('spillway/test:1')).toBe(true);
    expect(fake.requests.filter((r) => r.path === '/token')).toHaveLength(1);
    expect(fake.requests.at(-1)!.authorization).toBe('Bearer granted');
  });

  it('says to pass --user and --password when the registry requires credentials', async () => {
    const { registry } = await start('basic');
    await expect(pushImage(image(), { registry, repository: 'spillway/test', tag: '1' })).rejects.toThrow(
      /HTTP 401 \(the registry requires credentials: pass --user and --password\)/,
    );
  });

  it('says the credentials were refused when they are wrong', async () => {
    const { fake, registry } = await start('basic');
    await expect(
      pushImage(image(), {
        registry,
        repository: 'spillway/test',
        tag: '1',
        credentials: { username: 'alice', password: 'wrong' },
      }),
    ).rejects.toThrow(/refused these credentials/);
    expect(fake.manifests.size).toBe(0);
  });
});

describe('registryUrl', () => {
  it.each([
    ['localhost:5000', 'http://127.0.0.1:5000'],
    ['127.0.0.1:5001', 'http://127.0.0.1:5001'],
    ['registry.example:443', 'https://registry.example:443'],
  ])('%s → %s', (registry, url) => expect(registryUrl(registry)).toBe(url));
});

describe('the CLI and recipe helpers', () => {
  it('builds every image without --only, and the named ones in catalog order with it', () => {
    expect(parseOnly(undefined)).toEqual([
      'pause',
      'busybox',
      'nginx',
      'agnhost',
      'coredns',
      'metrics-server',
      'spark',
      'fake-eci',
      'jenkins-agent',
      'operator',
    ]);
    expect(parseOnly('nginx,busybox')).toEqual(['busybox', 'nginx']);
  });

  it('names the valid images when --only has a typo', () => {
    expect(() => parseOnly('busybox,ngnix')).toThrow(
      '--only: unknown image ngnix; images are pause, busybox, nginx, agnhost, coredns, metrics-server, spark, fake-eci, jenkins-agent, operator',
    );
  });

  it.each([
    ['1:1.35.0-4+deb12u1+b1', '1.35.0'],
    ['1.22.1-9+deb12u11', '1.22.1'],
    ['20250419~deb12u2', '20250419~deb12u2'],
  ])('the upstream version of Debian %s is %s', (debian, upstream) =>
    expect(upstreamVersion(debian)).toBe(upstream),
  );

  it('writes /etc/passwd and /etc/group lines a libc and busybox read', () => {
    const [passwd, group] = accountEntries(
      [{ name: 'root', uid: 0, gid: 0, home: '/root' }],
      [{ name: 'staff', gid: 50, members: ['root', 'nobody'] }],
    );
    expect(passwd!.data!.toString()).toBe('root:x:0:0:root:/root:/bin/sh\n');
    expect(group!.data!.toString()).toBe('staff:x:50:root,nobody\n');
  });
});
