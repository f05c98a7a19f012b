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
import { EciApi } from '../../operator/providers/eci/client.ts';
import { parseEciConfig } from '../../operator/providers/eci/config.ts';
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
    expect(await configOf(IMAGES['fake-eci'])).toMatchObject({
      Entrypoint: ['/usr/local/bin/node', '/app/test/support/fake-eci/main.ts'],
      User: '65532:65532',
    });
    expect(await configOf(IMAGES['jenkins-agent'])).toMatchObject({
      Entrypoint: ['/usr/local/bin/jenkins-agent'],
      User: '1000:1000',
    });
    expect(await configOf(IMAGES.spark)).toMatchObject({
      Entrypoint: ['/opt/entrypoint.sh'],
      User: '185:185',
      WorkingDir: '/opt/spark/work-dir',
    });
    const operator = await configOf(byName('operator').reference);
    expect(operator.Entrypoint).toEqual(['/usr/local/bin/node', '/app/operator/cli.ts']);
  });

  it('gives the same digests from the same inputs, built into an empty folder', async () => {
    // Spark's rebuild would download its jars into the new folder's Maven cache again: its cold build is measured
    // by hand (the same digest), not here.
    const names = [
      'pause',
      'busybox',
      'nginx',
      'agnhost',
      'coredns',
      'metrics-server',
      'fake-eci',
      'jenkins-agent',
    ] as const;
    const again = await buildImages({
      only: names,
      outDir: join(dir, 'rebuild'),
      debs: join(repoRoot, 'dist/images/.cache/debs'),
    });
    expect(again.map((i) => [i.name, i.layout.manifestDigest])).toEqual(
      names.map((name) => [name, byName(name).layout.manifestDigest]),
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

  it('fake-eci: serves the ECI API on the port it is given, checking signatures with the AccessKey pair it is given', async () => {
    const root = unpack(byName('fake-eci'), join(dir, 'fake-eci'));
    const port = await freePort();
    const keys = { accessKeyId: 'LTAI-images-test', accessKeySecret: 'images-test-secret' };
    // The image's Entrypoint as its user, with the variables the chart's fakeEci Deployment sets.
    const child = spawn(
      '/usr/sbin/chroot',
      ['--userspec=65532:65532', root, '/usr/local/bin/node', '/app/test/support/fake-eci/main.ts'],
      {
        env: {
          FAKE_ECI_HOST: '127.0.0.1',
          FAKE_ECI_PORT: String(port),
          FAKE_ECI_REGION_ID: 'cn-hangzhou',
          FAKE_ECI_ACCESS_KEY_ID: keys.accessKeyId,
          FAKE_ECI_ACCESS_KEY_SECRET: keys.accessKeySecret,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    let exited = false;
    const exit = new Promise((resolve) => child.once('exit', resolve)).finally(() => (exited = true));
    try {
      while (!stdout.includes('serving') && !exited) await new Promise((r) => setTimeout(r, 20));
      expect(stdout).toContain(`fake-eci: serving region cn-hangzhou on 127.0.0.1:${port}`);
      const api = (secret: string) =>
        new EciApi(
          parseEciConfig({
            regionId: 'cn-hangzhou',
            endpoint: `127.0.0.1:${port}`,
            protocol: 'http',
            credentials: { type: 'access_key', accessKeyId: keys.accessKeyId, accessKeySecret: secret },
            clusterId: 'images-test',
            nodeName: 'vn-eci',
            vSwitchIds: ['vsw-a'],
            securityGroupId: 'sg-a',
            retry: { maxAttempts: 1, baseDelayMs: 5, maxDelayMs: 5 },
          }),
        );
      await api(keys.accessKeySecret).ping();
      expect(
        await api(keys.accessKeySecret).describeByTags([{ key: 'spillway.dev/node', value: 'vn' }]),
      ).toEqual([]);
      await expect(api('wrong-secret').ping()).rejects.toThrow(
        /SignatureDoesNotMatch|IncompleteSignature|signature/i,
      );
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exit).toBe(0);
  });

  it('jenkins-agent: the agent stand-in finds its controller from JENKINS_URL, connects and runs what it is sent', () => {
    const root = unpack(byName('jenkins-agent'), join(dir, 'jenkins-agent'));
    for (const d of ['dev', 'proc']) mkdirSync(join(root, d), { recursive: true });
    const env =
      'env -i JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 PATH=/usr/lib/jvm/java-17-openjdk-amd64/bin:/bin';
    const asJenkins = `/usr/sbin/chroot --userspec=1000:1000 ${root} /usr/local/bin/jenkins-agent`;
    // Controller and agent from the image, as user jenkins, in a private network with loopback only.
    const script = [
      'set -e',
      'ip link set lo up',
      `mount --rbind /dev ${root}/dev`,
      `mount -t proc proc ${root}/proc`,
      `${env} CONTROLLER_BIND_ADDRESS=127.0.0.1 ${asJenkins} controller > ${root}/tmp/controller.log 2>&1 &`,
      `${env} JENKINS_URL=http://127.0.0.1:8080/ JENKINS_AGENT_NAME=spot-agent-1 JENKINS_SECRET=s3cret ${asJenkins} 2>&1`,
      `cat ${root}/tmp/controller.log`,
    ].join('\n');
    const out = execFileSync('unshare', ['--mount', '--net', '--pid', '--fork', 'sh', '-c', script], {
      encoding: 'utf8',
    });
    expect(out).toContain(
      'agent (spillway stand-in, not Jenkins): connected to 127.0.0.1:50000 as spot-agent-1',
    );
    expect(out).toContain('agent (spillway stand-in, not Jenkins): got: RUN build-1');
    expect(out).toMatch(/controller \(spillway stand-in, not Jenkins\): agent spot-agent-1 connected from/);
    expect(out).toContain(
      'controller (spillway stand-in, not Jenkins): agent spot-agent-1 answered DONE build-1',
    );
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
