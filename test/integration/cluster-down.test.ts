/**
 * `make cluster-down` (node hack/cluster.ts down) on a cluster whose local-provider operator died without its
 * shutdown: the sandboxes and the CoreDNS it left running on this host stop with the cluster, and only those of its
 * own virtual nodes. The "sandboxes" here are processes that carry a sandbox's command line (what the local provider's
 * discovery looks for), so that the test needs neither root nor network namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { LocalCluster, repoRoot } from '../support/cluster.ts';
import { containerdPaths, crictl, ipamDir, shimPids } from '../support/containerd.ts';
import { seedImages } from '../support/registry.ts';
import { localStateDir } from '../support/local-leftovers.ts';

/** A process that looks like the CoreDNS a local operator runs for node `node`. */
function fakeClusterDns(node: string): { child: ChildProcess; exited: Promise<NodeJS.Signals | null> } {
  const corefile = join(localStateDir(node), 'coredns', 'Corefile');
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)', '--', '-conf', corefile], {
    stdio: 'ignore',
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  return { child, exited };
}

describe('make cluster-down', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-cluster-down-'));
  const cluster = new LocalCluster(dir);
  const node = `down-local-${process.pid}`;
  const stranger = `down-elsewhere-${process.pid}`;
  const started: ReturnType<typeof fakeClusterDns>[] = [];

  beforeAll(async () => {
    await cluster.up();
  });
  afterAll(async () => {
    for (const s of started) s.child.kill('SIGKILL');
    await cluster.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stops the CoreDNS its local virtual nodes’ operators left behind, and nobody else’s', async () => {
    await cluster
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNode({ body: { metadata: { name: node, labels: { 'spillway.dev/provider': 'local' } } } });
    const ours = fakeClusterDns(node);
    const theirs = fakeClusterDns(stranger);
    started.push(ours, theirs);

    const down = spawnSync(process.execPath, [join(repoRoot, 'hack/cluster.ts'), 'down'], {
      env: { ...process.env, SPILLWAY_CLUSTER_DIR: dir },
      encoding: 'utf8',
    });
    expect(down.status, down.stdout + down.stderr).toBe(0);
    expect(down.stdout).toContain(`stopped the CoreDNS left behind by virtual node ${node}`);
    expect(await ours.exited).toBe('SIGTERM');
    // Another cluster's (or nobody's) CoreDNS on the same host is not this cluster's to stop.
    expect(theirs.child.exitCode).toBeNull();
    expect(theirs.child.signalCode).toBeNull();
    expect(await cluster.isRunning()).toBe(false);
  });
});

describe('make cluster-down with pods in its containerd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-down-pods-'));
  const cluster = new LocalCluster(dir);
  const cri = (...args: string[]) => crictl(dir, cluster.binDir, args).then((r) => r.stdout.trim());

  beforeAll(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error('this test needs root (containerd, mounts, network namespaces): run it as root');
    }
    await cluster.up();
  });
  afterAll(async () => {
    await cluster.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('removes every pod, its shim, its mounts, its network namespace and its address lease', async () => {
    // This cluster's own registry: the sandbox image containerd pins (pause) and agnhost.
    await seedImages(cluster.registry, ['pause', 'agnhost']);
    const image = imageRef('agnhost', cluster.registry);
    await cri('pull', image);
    const pod = join(dir, 'pod.json');
    writeFileSync(
      pod,
      JSON.stringify({ metadata: { name: 'p', namespace: 'n', uid: 'u-1', attempt: 0 }, linux: {} }),
    );
    const container = join(dir, 'container.json');
    writeFileSync(
      container,
      JSON.stringify({ metadata: { name: 'web' }, image: { image }, args: ['netexec'] }),
    );
    const podId = await cri('runp', pod);
    await cri('start', await cri('create', podId, container, pod));
    const { info } = JSON.parse(
      await cri('inspect', '-o', 'json', await cri('ps', '-q', '--pod', podId)),
    ) as {
      info: { pid: number };
    };
    const paths = containerdPaths(dir);
    const namespace = statSync(paths.nsPin).ino;
    // Leases are host-wide per bridge (other clusters' pods may hold some): this pod's names its sandbox.
    const leaseDir = join(ipamDir('spillway0'), 'spillway');
    const leases = () =>
      readdirSync(leaseDir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .filter((f) => readFileSync(join(leaseDir, f), 'utf8').startsWith(podId));
    expect(shimPids(dir)).not.toHaveLength(0);
    expect(leases()).toHaveLength(1);

    const down = spawnSync(process.execPath, [join(repoRoot, 'hack/cluster.ts'), 'down'], {
      env: { ...process.env, SPILLWAY_CLUSTER_DIR: dir },
      encoding: 'utf8',
    });
    expect(down.status, down.stdout + down.stderr).toBe(0);
    expect(existsSync(`/proc/${info.pid}`)).toBe(false);
    expect(shimPids(dir)).toEqual([]);
    expect(leases()).toEqual([]);
    // Nothing of it stays mounted on the host, and no process is left in its mount namespace (so the kernel
    // has dropped the namespace and the rootfs and netns mounts in it).
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(dir);
    const inNamespace = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return statSync(`/proc/${p}/ns/mnt`).ino === namespace;
        } catch {
          return false;
        }
      });
    expect(inNamespace).toEqual([]);
    expect(await cluster.isRunning()).toBe(false);
  });
});
