/**
 * make images (hack/build-images.ts): the catalog's images and the operator's, built from Debian packages and
 * Go binaries, pushed to a real registry (distribution v3, bin/registry) that requires htpasswd credentials and
 * served back with the entrypoints upstream's images have; the same inputs give the same digests; what the
 * layers hold runs: busybox's applets, nginx's library closure (`nginx -t`, then serving its page in a private
 * network namespace), pause's clean exit on SIGTERM, agnhost. Spark runs SparkPi in spark-image.test.ts; real
 * container runs are the runtime's tests.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages, pushImages, type BuiltImageFile } from '../../hack/build-images.ts';
import { IMAGES } from '../../hack/images/catalog.ts';
import { registryUrl } from '../../hack/images/push.ts';
import { mediaTypes, type RunConfig } from '../../hack/oci.ts';
import { defaultClusterDir, LocalCluster } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';

const repoRoot = join(import.meta.dirname, '../..');
const credentials = { username: 'seeder', password: 'images-test' };
const basic = { authorization: `Basic ${Buffer.from('seeder:images-test').toString('base64')}` };

/** The image's root filesystem: its layers unpacked in order into a fresh folder. */
function unpack(image: BuiltImageFile, into: string): string {
  const manifest = JSON.parse(
    image.layout.blobs.find((b) => b.digest === image.layout.manifestDigest)!.data.toString(),
  ) as { layers: Array<{ digest: string }> };
  mkdirSync(into, { recursive: true });
  for (const layer of manifest.layers) {
    const blob = image.layout.blobs.find((b) => b.digest === layer.digest)!;
    execFileSync('tar', ['-xzf', '-', '-C', into, '--numeric-owner'], { input: blob.data });
  }
  return into;
}

describe('make images', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-images-'));
  let images: BuiltImageFile[];
  let registry: RunningRegistry;
  const byName = (name: string) => images.find((i) => i.name === name)!;

  beforeAll(async () => {
    images = await buildImages();
    registry = await startRegistry({
      dir,
      binDir: join(repoRoot, 'bin'),
      port: await freePort(),
      auth: { user: credentials.username, password: credentials.password },
    });
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pushes every image to a registry that requires credentials, and refuses to push without them', async () => {
    await expect(pushImages(images.slice(0, 1), registry.host)).rejects.toThrow(/pass --user and --password/);
    const first = await pushImages(images, registry.host, credentials);
    expect(first.map((r) => r.digest)).toEqual(images.map((i) => i.layout.manifestDigest));
    // busybox's layer is nginx's and agnhost's base: uploaded once, then mounted into their repositories.
    const [, busybox, nginx, agnhost] = first;
    expect(busybox!.uploaded).toBe(2);
    expect([nginx!.mounted, agnhost!.mounted]).toEqual([1, 1]);
    const again = await pushImages(images, registry.host, credentials);
    expect(again.every((r) => r.uploaded === 0)).toBe(true);
  });

  it('serves each image back with the entrypoint, command and user upstream images have', async () => {
    const configOf = async (reference: string): Promise<RunConfig> => {
      const colon = reference.lastIndexOf(':');
      const base = `${registryUrl(registry.host)}/v2/${reference.slice(0, colon)}`;
      const manifest = await fetch(`${base}/manifests/${reference.slice(colon + 1)}`, {
        headers: { ...basic, accept: mediaTypes.manifest },
      });
      expect(manifest.status).toBe(200);
      expect(manifest.headers.get('content-type')).toBe(mediaTypes.manifest);
      const { config } = (await manifest.json()) as { config: { digest: string } };
      const blob = await fetch(`${base}/blobs/${config.digest}`, { headers: basic });
      return ((await blob.json()) as { config: RunConfig }).config;
    };
    expect(await configOf(IMAGES.pause)).toMatchObject({ Entrypoint: ['/pause'], User: '65535:65535' });
    expect(await configOf(IMAGES.busybox)).toMatchObject({ Cmd: ['sh'] });
    expect(await configOf(IMAGES.nginx)).toMatchObject({
      Cmd: ['nginx', '-g', 'daemon off;'],
      ExposedPorts: { '80/tcp': {} },
      StopSignal: 'SIGQUIT',
    });
    expect(await configOf(IMAGES.agnhost)).toMatchObject({ Entrypoint: ['/agnhost'], Cmd: ['pause'] });
    expect(await configOf(IMAGES.coredns)).toMatchObject({ Entrypoint: ['/coredns'], User: '65532:65532' });
    expect(await configOf(IMAGES.spark)).toMatchObject({
      Entrypoint: ['/opt/entrypoint.sh'],
      User: '185:185',
      WorkingDir: '/opt/spark/work-dir',
    });
    const operator = await configOf(byName('operator').reference);
    expect(operator.Entrypoint).toEqual(['/usr/local/bin/node', '/app/operator/cli.ts']);
  });

  it('gives the same digests from the same inputs, built into an empty folder', async () => {
    const again = await buildImages({
      only: ['pause', 'busybox', 'nginx', 'agnhost', 'coredns'],
      outDir: join(dir, 'rebuild'),
      debs: join(repoRoot, 'dist/images/.cache/debs'),
    });
    expect(again.map((i) => [i.name, i.layout.manifestDigest])).toEqual(
      images.filter((i) => i.name !== 'operator').map((i) => [i.name, i.layout.manifestDigest]),
    );
  });

  it('busybox: /bin/busybox runs from the layer, /bin/sh and the applets link to it', () => {
    const root = unpack(byName('busybox'), join(dir, 'busybox'));
    expect(execFileSync(join(root, 'bin/busybox'), ['echo', 'ok'], { encoding: 'utf8' })).toBe('ok\n');
    for (const applet of ['sh', 'wget', 'nc', 'sleep', 'ls'])
      expect(readlinkSync(join(root, 'bin', applet))).toBe('busybox');
    expect(
      execFileSync('chroot', [root, 'sh', '-c', 'id nobody; ls -ld /tmp'], { encoding: 'utf8' }),
    ).toMatch(/uid=65534\(nobody\)[\s\S]*drwxrwxrwt/);
  });

  it('nginx: its library closure is complete (nginx -t under chroot) and it serves its page as root with nobody workers', () => {
    const root = unpack(byName('nginx'), join(dir, 'nginx'));
    for (const d of ['dev', 'proc']) mkdirSync(join(root, d), { recursive: true });
    // A private mount, PID and network namespace: /dev and /proc as a runtime gives them, loopback only.
    const script = [
      'set -e',
      'ip link set lo up',
      `mount --rbind /dev ${root}/dev`,
      `mount -t proc proc ${root}/proc`,
      // Through a pipe: Node gives a child sockets for stdio, and open("/dev/stderr") fails on a socket
      // (ENXIO), where a container runtime's stdio are FIFOs.
      `chroot ${root} nginx -t 2>&1 | cat`,
      `chroot ${root} nginx -g 'daemon off;' >/dev/null 2>&1 &`,
      `for i in $(seq 100); do chroot ${root} wget -qO- http://127.0.0.1/ 2>/dev/null && break; sleep 0.1; done`,
      `chroot ${root} ps -o user,args | grep 'nginx: '`,
    ].join('\n');
    const out = execFileSync('unshare', ['--mount', '--net', '--pid', '--fork', 'sh', '-c', script], {
      encoding: 'utf8',
    });
    expect(out).toContain('configuration file /etc/nginx/nginx.conf test is successful');
    expect(out).toContain('<title>Welcome to nginx!</title>');
    expect(out).toMatch(/root\s+nginx: master process/);
    expect(out).toMatch(/nobody\s+nginx: worker process/);
  });

  it('pause: exits 0 on SIGTERM', async () => {
    const root = unpack(byName('pause'), join(dir, 'pause'));
    const child = spawn(join(root, 'pause'), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    // It says it is not PID 1 once its signal handlers are in place.
    while (!stderr.includes('not PID 1')) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
  });

  it('agnhost: /agnhost, dig and curl run from the image, beside the user and group the conformance tests look for', () => {
    const root = unpack(byName('agnhost'), join(dir, 'agnhost'));
    expect(execFileSync('chroot', [root, '/agnhost', '--help'], { encoding: 'utf8' })).toContain('netexec');
    expect(readlinkSync(join(root, 'agnhost-2'))).toBe('agnhost');
    expect(execFileSync('chroot', [root, 'id', 'user-defined-in-image'], { encoding: 'utf8' })).toContain(
      '50000(group-defined-in-image)',
    );
    expect(existsSync(join(root, 'uploads'))).toBe(true);
    // The DNS conformance tests' probes run dig in agnhost; others curl. Their libraries come with them.
    expect(spawnSync('chroot', [root, 'dig', '-v'], { encoding: 'utf8' }).stderr).toMatch(/^DiG 9\./);
    expect(execFileSync('chroot', [root, 'curl', '--version'], { encoding: 'utf8' })).toMatch(/^curl \d/);
  });

  it('seeds the local cluster registry: `node hack/build-images.ts --push cluster`', async () => {
    const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
    execFileSync(process.execPath, ['hack/build-images.ts', '--only', 'pause,busybox', '--push', 'cluster'], {
      cwd: repoRoot,
      stdio: 'pipe',
    });
    const [repository, tag] = IMAGES.busybox.split(':');
    const res = await fetch(`${registryUrl(cluster.registry)}/v2/${repository}/manifests/${tag}`, {
      headers: { accept: mediaTypes.manifest },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(byName('busybox').layout.manifestDigest);
  });
});
