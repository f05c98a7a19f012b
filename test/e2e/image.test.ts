/**
 * e2e: the operator's container image (`make image`, hack/build-image.ts), proven without a container engine.
 * The tarball is checked as a registry client would (index.json → manifest → config and layers, every digest
 * and size against its blob; Docker's manifest.json over the same blobs), its layers are unpacked into a root
 * filesystem, and that root runs the way a kubelet runs the chart's pods, as far as this machine allows: a
 * read-only root, UID/GID 65532, the image's Env, Entrypoint and WorkingDir, its own PID and mount namespaces
 * with /proc and a minimal /dev, the host's network (the apiserver listens on 127.0.0.1). There,
 * `spillway run --provider fake` registers a Ready virtual node, serves /metrics, admits and runs a burst pod,
 * and exits cleanly on SIGTERM as PID 1.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { appVersion, imageTarball, REPOSITORY } from '../../hack/build-image.ts';
import { imageRef } from '../../hack/images/catalog.ts';
import { sha256 } from '../../hack/oci.ts';
import { GROUP, PLURAL, VERSION } from '../../api/elasticworkload.ts';
import { renderChart } from '../support/chart.ts';
import { repoRoot, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../support/objects.ts';
import { freePort } from '../support/ports.ts';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    User: string;
    Env: string[];
    Entrypoint: string[];
    WorkingDir: string;
    Labels: Record<string, string>;
  };
  rootfs: { diff_ids: string[] };
}

const NONROOT = 65532;

/**
 * Runs `argv` in `rootfs` as a container runtime would: new mount and PID namespaces, the root bind-mounted
 * read-only (the chart's readOnlyRootFilesystem), /proc and a tmpfs /dev with the standard devices, then
 * chroot + chdir(WorkingDir) + setgid/setuid(65532) and the image's Env. Host network. If this test process
 * dies, the kernel kills the tree (--pdeathsig on the outside, --kill-child inside).
 */
function runInImage(rootfs: string, config: ImageConfig, argv: string[], env: Record<string, string> = {}) {
  const setup = [
    'set -e',
    'R=$1; W=$2; shift 2',
    'mount --make-rprivate /',
    'mount --bind "$R" "$R"',
    'mount -o remount,ro,bind "$R"',
    'mount -t proc -o nosuid,nodev,noexec proc "$R/proc"',
    'mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$R/dev"',
    'for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done',
    `exec unshare --root="$R" --wd="$W" --setgid=${NONROOT} --setuid=${NONROOT} -- "$@"`,
  ].join('\n');
  const imageEnv = Object.fromEntries(
    config.config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
  );
  const child = spawn(
    'setpriv',
    [
      '--pdeathsig=SIGKILL',
      '--',
      'unshare',
      '--mount',
      '--pid',
      '--fork',
      '--kill-child',
      '--',
      'sh',
      '-c',
      setup,
      'container',
      rootfs,
      config.config.WorkingDir,
      ...argv,
    ],
    // Only what the image and a kubelet set: nothing of this test's environment leaks in.
    { env: { ...imageEnv, HOME: '/home/nonroot', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const append = (d: Buffer) => (output = (output + d.toString()).slice(-200_000));
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  let running = true;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running = false;
      resolve(code);
    }),
  );
  return {
    output: () => output,
    exited,
    running: () => running,
    /** SIGTERM to the process that is PID 1 inside (a pod's termination), then its exit code. */
    async stop(): Promise<number | null> {
      if (child.exitCode === null && child.signalCode === null) {
        const pid1 = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
          .trim()
          .split(' ')[0];
        if (pid1) process.kill(Number(pid1), 'SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

async function runToEnd(
  rootfs: string,
  config: ImageConfig,
  argv: string[],
): Promise<{ code: number | null; output: string }> {
  const p = runInImage(rootfs, config, argv);
  const code = await p.exited;
  return { code, output: p.output() };
}

describe('the container image (make image)', () => {
  const version = appVersion();
  let dir: string;
  let archive: string;
  let rootfs: string;
  let config: ImageConfig;
  let manifest: { config: Descriptor; layers: Descriptor[] };
  const blob = (digest: string) =>
    readFileSync(join(archive, 'blobs/sha256', digest.replace(/^sha256:/, '')));

  beforeAll(() => {
    // Builds it, or finds it up to date (every slow step is cached by its inputs).
    const build = spawnSync(process.execPath, [join(repoRoot, 'hack/build-image.ts')], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 220_000,
    });
    process.stdout.write(build.stdout);
    if (build.status !== 0) throw new Error(`hack/build-image.ts failed:\n${build.stdout}\n${build.stderr}`);
    dir = mkdtempSync(join(tmpdir(), 'spillway-image-'));
    archive = join(dir, 'archive');
    rootfs = join(dir, 'rootfs');
    mkdirSync(archive);
    mkdirSync(rootfs);
    execFileSync('tar', ['-xf', imageTarball(version), '-C', archive]);
    const index = JSON.parse(readFileSync(join(archive, 'index.json'), 'utf8')) as {
      manifests: Descriptor[];
    };
    manifest = JSON.parse(blob(index.manifests[0]!.digest).toString());
    config = JSON.parse(blob(manifest.config.digest).toString()) as ImageConfig;
    for (const layer of manifest.layers) {
      const path = join(archive, 'blobs/sha256', layer.digest.slice(7));
      execFileSync('tar', ['-xzf', path, '-C', rootfs, '--numeric-owner']);
    }
    // The mount points a runtime creates before it makes the root read-only (runInImage mounts them).
    mkdirSync(join(rootfs, 'proc'));
    mkdirSync(join(rootfs, 'dev'));
  }, 240_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is an OCI image layout whose every descriptor matches its blob, and Docker manifest.json names the same blobs', () => {
    expect(JSON.parse(readFileSync(join(archive, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(readFileSync(join(archive, 'index.json'), 'utf8')) as {
      manifests: Array<Descriptor & { platform: object; annotations: Record<string, string> }>;
    };
    expect(index.manifests).toHaveLength(1);
    const top = index.manifests[0]!;
    expect(top).toMatchObject({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      platform: { architecture: 'amd64', os: 'linux' },
      annotations: { 'org.opencontainers.image.ref.name': version },
    });
    for (const d of [top, manifest.config, ...manifest.layers]) {
      expect(sha256(blob(d.digest)), d.digest).toBe(d.digest);
      expect(blob(d.digest).length, d.digest).toBe(d.size);
    }
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(
      Array(3).fill('application/vnd.oci.image.layer.v1.tar+gzip'),
    );
    // diff_ids: the digests of the uncompressed layers, what a runtime verifies after unpacking.
    expect(config.rootfs.diff_ids).toEqual(manifest.layers.map((l) => sha256(gunzipSync(blob(l.digest)))));
    // Nothing in the archive that no descriptor names.
    expect(readdirSync(join(archive, 'blobs/sha256')).sort()).toEqual(
      [top, manifest.config, ...manifest.layers].map((d) => d.digest.slice(7)).sort(),
    );
    const docker = JSON.parse(readFileSync(join(archive, 'manifest.json'), 'utf8')) as Array<{
      Config: string;
      RepoTags: string[];
      Layers: string[];
    }>;
    expect(docker).toEqual([
      {
        Config: `blobs/sha256/${manifest.config.digest.slice(7)}`,
        RepoTags: [`${REPOSITORY}:${version}`],
        Layers: manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      },
    ]);
  });

  it("runs as the chart expects: the chart's image, only args from the chart, 65532 in /app, labelled with this commit", async () => {
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux' });
    expect(config.config).toMatchObject({
      User: '65532:65532',
      WorkingDir: '/app',
      Entrypoint: ['/usr/local/bin/node', '/app/operator/cli.ts'],
      Labels: {
        'org.opencontainers.image.source': 'https://github.com/spillway-dev/spillway',
        'org.opencontainers.image.version': version,
        'org.opencontainers.image.revision': execFileSync('git', ['rev-parse', 'HEAD'], {
          cwd: repoRoot,
          encoding: 'utf8',
        }).trim(),
      },
    });
    expect(config.config.Env).toContain('NODE_ENV=production');
    const cluster = await testCluster();
    // What the chart runs from this image (with one virtual node): only args, so the entrypoint is the CLI.
    const objects = await renderChart(
      cluster.kubeconfigPath,
      'spillway',
      'spillway-system',
      '--set',
      'virtualNodes[0].name=fake',
      '--set',
      'virtualNodes[0].provider=fake',
    );
    const pods = objects
      .filter((o) => o.kind === 'Deployment')
      .map((o) => (o as unknown as V1Deployment).spec!.template.spec!);
    const containers = pods.flatMap((p) => p.containers.filter((c) => c.image?.startsWith(`${REPOSITORY}:`)));
    expect(containers.map((c) => c.args?.[0]).sort()).toEqual(['controller', 'virtual-node']);
    for (const c of containers) {
      expect(c.image).toBe(`${REPOSITORY}:${version}`);
      expect(c.command, `${c.name}: the chart relies on the image's entrypoint`).toBeUndefined();
      // What runInImage reproduces.
      expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
    }
    for (const p of pods)
      expect(p.securityContext).toMatchObject({ runAsUser: NONROOT, runAsGroup: NONROOT });
  });

  it('holds node, exactly its shared libraries, nonroot, /tmp, and the app without tests or dev dependencies', () => {
    const list = (d: string) => readdirSync(join(rootfs, d)).sort();
    expect(list('.')).toEqual(['app', 'dev', 'etc', 'home', 'lib', 'lib64', 'proc', 'tmp', 'usr']);
    // Exactly what `ldd node` names, wherever the packages (or, without apt, the host) keep them.
    const libraries = execFileSync('find', ['lib', 'lib64', 'usr/lib', '-name', '*.so*'], {
      cwd: rootfs,
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .map((p) => p.slice(p.lastIndexOf('/') + 1).replace(/^(libstdc\+\+\.so\.6)\.0\.\d+$/, '$1'));
    expect([...new Set(libraries)].sort()).toEqual([
      'ld-linux-x86-64.so.2',
      'libc.so.6',
      'libdl.so.2',
      'libgcc_s.so.1',
      'libm.so.6',
      'libpthread.so.0',
      'libstdc++.so.6',
    ]);
    expect(readFileSync(join(rootfs, 'etc/passwd'), 'utf8')).toContain(`nonroot:x:${NONROOT}:${NONROOT}:`);
    expect(readFileSync(join(rootfs, 'etc/group'), 'utf8')).toContain(`nonroot:x:${NONROOT}:`);
    expect(execFileSync('stat', ['-c', '%a %u', join(rootfs, 'tmp')], { encoding: 'utf8' }).trim()).toBe(
      '1777 0',
    );
    expect(existsSync(join(rootfs, 'etc/ssl')), 'Node carries its own CA roots').toBe(false);
    const app = execFileSync(
      'find',
      [join(rootfs, 'app'), '-path', '*/node_modules', '-prune', '-o', '-type', 'f', '-print'],
      {
        encoding: 'utf8',
      },
    );
    expect(app).toContain('/app/operator/cli.ts');
    expect(app).toContain('/app/webhooks/run.ts');
    expect(app, 'the local provider speaks CRI from this proto').toContain('/app/bin/cri/api.proto');
    expect(app).not.toMatch(/\.(test|fixtures)\.ts$/m);
    const modules = list('app/node_modules');
    for (const dev of ['vitest', 'typescript', 'eslint', 'prettier', '@types'])
      expect(modules).not.toContain(dev);
    expect(modules).toContain('@kubernetes');
  });

  it('prints its version under chroot as 65532, and as a runtime runs it: ro root, WorkingDir, PATH, every provider loads', async () => {
    const chroot = spawnSync(
      'chroot',
      [`--userspec=${NONROOT}:${NONROOT}`, rootfs, '/usr/local/bin/node', '/app/operator/cli.ts', 'version'],
      // Only a PATH to find chroot; nothing else of this test's environment.
      { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
    );
    expect(chroot.stderr).toBe('');
    expect(chroot.stdout).toBe(`spillway ${version}\n`);

    // The entrypoint with an arg, and `node operator/cli.ts` relative to WorkingDir through PATH.
    expect(await runToEnd(rootfs, config, [...config.config.Entrypoint, 'version'])).toEqual({
      code: 0,
      output: `spillway ${version}\n`,
    });
    expect(await runToEnd(rootfs, config, ['node', 'operator/cli.ts', 'version'])).toEqual({
      code: 0,
      output: `spillway ${version}\n`,
    });
    // The providers load lazily (only with --provider eci|local): import them to prove their dependencies are in.
    const imports = await runToEnd(rootfs, config, [
      'node',
      '--input-type=module',
      '-e',
      [
        "await import('/app/operator/providers/eci/provider.ts');",
        "await import('/app/operator/providers/local/provider.ts');",
        "await import('/app/operator/providers/local/cluster-network.ts');",
        // The CRI client loads its services from the proto the image carries.
        "(await import('/app/operator/providers/local/cri/client.ts')).criServiceDefinitions();",
        "const { userInfo } = await import('node:os');",
        "const { writeFileSync } = await import('node:fs');",
        "let tmp = 'writable'; try { writeFileSync('/tmp/x', ''); } catch (e) { tmp = e.code; }",
        'console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), user: userInfo().username, cwd: process.cwd(), pid: process.pid, tmp }));',
      ].join('\n'),
    ]);
    expect(imports.code, imports.output).toBe(0);
    expect(JSON.parse(imports.output)).toEqual({
      uid: NONROOT,
      gid: NONROOT,
      groups: [NONROOT],
      user: 'nonroot',
      cwd: '/app',
      pid: 1,
      tmp: 'EROFS', // the read-only root, /tmp included: the chart mounts no emptyDir
    });
  });

  describe('spillway run --provider fake inside the image, against the local control plane', () => {
    let cluster: TestCluster;
    let core: CoreV1Api;
    let ns: { name: string; remove: () => Promise<void> };
    const nodeName = `image-e2e-${process.pid}`;

    beforeAll(async () => {
      cluster = await testCluster();
      core = cluster.kc.makeApiClient(CoreV1Api);
      ns = await createTestNamespace(cluster.kc, 'e2e-image');
    });
    afterAll(async () => {
      await ns?.remove();
      await core?.deleteNode({ name: nodeName }).catch(() => undefined);
    });

    it('registers a Ready virtual node, serves /metrics, bursts a pod onto it, and stops cleanly on SIGTERM', async () => {
      // The kubeconfig as a pod would get a mounted file: readable by 65532 only.
      mkdirSync(join(rootfs, 'etc/spillway'), { recursive: true });
      copyFileSync(cluster.kubeconfigPath, join(rootfs, 'etc/spillway/kubeconfig'));
      chownSync(join(rootfs, 'etc/spillway/kubeconfig'), NONROOT, NONROOT);
      const [webhookPort, metricsPort, kubeletPort] = [await freePort(), await freePort(), await freePort()];
      const op = runInImage(
        rootfs,
        config,
        [
          ...config.config.Entrypoint,
          'run',
          '--provider=fake',
          '--kubeconfig=/etc/spillway/kubeconfig',
          `--node-name=${nodeName}`,
          `--webhook-port=${webhookPort}`,
          `--metrics-port=${metricsPort}`,
          `--kubelet-port=${kubeletPort}`,
        ],
        { LOG_LEVEL: 'info' },
      );
      let code: number | null;
      try {
        await waitFor(`virtual node ${nodeName} Ready`, 60_000, async () => {
          if (!op.running()) throw new Error('the operator exited');
          const node = await core.readNode({ name: nodeName }).catch(() => undefined);
          return node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
        });
        const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        expect(metrics.status).toBe(200);
        expect(await metrics.text()).toMatch(/^process_start_time_seconds \d+/m);

        // The webhooks and the controller in the image too: an ElasticWorkload's burst replica runs on the node.
        // Its source replica runs on a real node: an image the cluster's registry has, so that it gets Ready and
        // the fold-back on delete (which never drops below the ready count) can finish.
        await createDeployment(
          cluster.kc,
          ns.name,
          deployment('web', 1, { image: imageRef('pause', inject('registry')) }),
        );
        await createElasticWorkload(cluster.kc, ns.name, 'web', {
          sourceTarget: { kind: 'Deployment', name: 'web', max: 1 },
          replicas: 2,
          elasticUnit: [{ name: 'burst', labels: { 'spillway.dev/burst': 'always' } }],
        });
        await waitFor(`the burst pod Running on ${nodeName}`, 60_000, async () => {
          const pods = await core.listNamespacedPod({
            namespace: ns.name,
            labelSelector: 'spillway.dev/unit=burst',
          });
          return pods.items.some((p) => p.spec?.nodeName === nodeName && p.status?.phase === 'Running');
        });
        // The controller's and the virtual node's own series, counted while they worked.
        const after = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        expect(after).toMatch(/^spillway_workqueue_adds_total\{[^}]*\} [1-9]/m);
        // Deleted while the operator runs, so that its fold-back finalizer lets go (else the namespace hangs).
        const ew = { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns.name, name: 'web' };
        const custom = cluster.kc.makeApiClient(CustomObjectsApi);
        await custom.deleteNamespacedCustomObject(ew);
        await waitFor('the ElasticWorkload folded back and gone', 60_000, async () =>
          custom.getNamespacedCustomObject(ew).then(
            () => false,
            () => true,
          ),
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- operator output ---\n${op.output().slice(-6000)}`, {
          cause: err,
        });
      } finally {
        code = await op.stop();
      }
      expect(code, op.output().slice(-3000)).toBe(0);
      // Nothing it tried to write failed on the read-only root.
      expect(op.output()).not.toMatch(/EROFS|read-only file system/i);
      const hooks = await cluster.kc
        .makeApiClient(AdmissionregistrationV1Api)
        .listMutatingWebhookConfiguration();
      expect(hooks.items.some((w) => w.metadata?.name === 'spillway')).toBe(false);
    });
  });
});
