/**
 * The local cluster's container runtime (test/support/containerd.ts), driven through CRI with crictl as a kubelet
 * would: a pod sandbox and containers from images in the cluster's registry run with a pod address from the node
 * CIDR, their output lands in CRI log files, exit codes are reported, seccomp RuntimeDefault applies, and a
 * `kill -9` of containerd leaves the pods running and CRI answering again after a restart. Pulls from a
 * registry that requires credentials fail without them and succeed with them (CRI PullImage with AuthConfig).
 *
 * Needs root (containerd, mounts, network namespaces). The images are the catalog's pause and agnhost, which the
 * global setup pushed to the cluster's registry (test/support/global-setup.ts).
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { ipToInt, parseCIDR } from '../../operator/providers/local/network.ts';
import { defaultClusterDir, LocalCluster, localNodeCIDR, waitFor } from '../support/cluster.ts';
import { allowRegistry, containerdPaths, crictl } from '../support/containerd.ts';
import { freePort } from '../support/ports.ts';
import { seedImages, startRegistry, type RunningRegistry } from '../support/registry.ts';

const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
const cri = (...args: string[]) => crictl(cluster.dir, cluster.binDir, args).then((r) => r.stdout.trim());
/** `crictl inspect|inspectp <id>` as JSON (crictl reads flags only before the arguments). */
const inspect = async <T>(command: 'inspect' | 'inspectp', id: string): Promise<T> =>
  JSON.parse(await cri(command, '-o', 'json', id)) as T;

interface PodStatus {
  status: { id: string; state: string; network: { ip: string } };
}
interface ContainerStatus {
  status: { state: string; exitCode: number; logPath: string };
  info: { pid: number };
}

describe('containerd of the local cluster, through CRI', () => {
  const logDir = mkdtempSync(join(tmpdir(), 'spillway-runtime-logs-'));
  const work = mkdtempSync(join(tmpdir(), 'spillway-runtime-'));
  let image: string;
  let podId: string;
  const podConfig = join(work, 'pod.json');

  /**
   * A container config file for crictl: `args` after the image's entrypoint, seccomp RuntimeDefault, and
   * `mounts` (container path → host path).
   */
  function containerConfig(name: string, args: string[], mounts: Record<string, string> = {}): string {
    const file = join(work, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        metadata: { name },
        image: { image },
        args,
        log_path: `${name}.log`,
        mounts: Object.entries(mounts).map(([container_path, host_path]) => ({ container_path, host_path })),
        linux: { security_context: { seccomp: { profile_type: 0 } } },
      }),
    );
    return file;
  }

  beforeAll(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error(
        'the runtime tests need root (containerd, mounts, network namespaces): run them as root',
      );
    }
    // The global setup seeded the registry: containerd's sandbox image (pause) is there, and agnhost.
    image = imageRef('agnhost', inject('registry'));
    await cri('pull', image);
    writeFileSync(
      podConfig,
      JSON.stringify({
        metadata: { name: 'runtime-test', namespace: 'spillway-test', uid: randomUUID(), attempt: 0 },
        log_directory: logDir,
        linux: {},
      }),
    );
    podId = await cri('runp', podConfig);
  });

  afterAll(async () => {
    if (podId) await cri('rmp', '--force', podId).catch(() => {});
    rmSync(logDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('runs a pod sandbox with an address from the node CIDR, from the registry’s pause image', async () => {
    const pod = await inspect<PodStatus>('inspectp', podId);
    expect(pod.status.state).toBe('SANDBOX_READY');
    const { base, bits } = parseCIDR(localNodeCIDR);
    expect(ipToInt(pod.status.network.ip) >>> (32 - bits)).toBe(base >>> (32 - bits));
    const images = await cri('images', '-q', imageRef('pause', inject('registry')));
    expect(images).toMatch(/^sha256:/);
  });

  it('runs a container: its output in its CRI log file, seccomp RuntimeDefault on, reachable on its pod address', async () => {
    const id = await cri('create', podId, containerConfig('web', ['netexec', '--http-port=8080']), podConfig);
    await cri('start', id);
    const c = await inspect<ContainerStatus>('inspect', id);
    expect(c.status.state).toBe('CONTAINER_RUNNING');
    // 2 = SECCOMP_MODE_FILTER: the runtime's default profile is loaded.
    expect(readFileSync(`/proc/${c.info.pid}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
    const { status } = await inspect<PodStatus>('inspectp', podId);
    await waitFor('netexec answering on the pod address', 30_000, async () => {
      const res = await fetch(`http://${status.network.ip}:8080/hostname`, {
        signal: AbortSignal.timeout(2000),
      });
      return res.ok;
    });
    await waitFor('netexec’s start-up lines in its CRI log file', 30_000, async () =>
      readFileSync(join(logDir, 'web.log'), 'utf8').includes('Started HTTP server on port 8080'),
    );
  });

  it('execs in a running container through CRI’s streaming server on loopback', async () => {
    const [web] = (await cri('ps', '-q', '--name', '^web$', '--pod', podId)).split('\n');
    // crictl exec without --sync goes through the URL CRI's Exec returns: the streaming server.
    expect(await cri('exec', web!, '/agnhost', 'entrypoint-tester', 'through-the-stream')).toContain(
      'through-the-stream',
    );
    expect(cluster.criStreamingAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect((await fetch(`http://${cluster.criStreamingAddress}/`)).status).toBe(404);
  });

  it('reports a container’s exit code and keeps what it printed', async () => {
    const id = await cri('create', podId, containerConfig('refused', ['connect', '127.0.0.1:1']), podConfig);
    await cri('start', id);
    await waitFor('the container to exit', 30_000, async () => {
      return (await inspect<ContainerStatus>('inspect', id)).status.state === 'CONTAINER_EXITED';
    });
    expect((await inspect<ContainerStatus>('inspect', id)).status.exitCode).toBe(1);
    // CRI log format: `<time> <stream> <tag> <line>`.
    expect(readFileSync(join(logDir, 'refused.log'), 'utf8')).toMatch(/ stderr F REFUSED$/m);
  });

  it('shows a container what the host wrote into a volume folder made after containerd started', async () => {
    // As the local provider's volumes (operator/providers/local/volumes.ts): plain folders on the host's disk.
    const volume = mkdtempSync(join(work, 'volume-'));
    writeFileSync(join(volume, 'greeting'), 'written on the host');
    const id = await cri(
      'create',
      podId,
      containerConfig('reader', ['mounttest', '--file-content=/data/greeting'], { '/data': volume }),
      podConfig,
    );
    await cri('start', id);
    await waitFor('the reader to exit', 30_000, async () => {
      return (await inspect<ContainerStatus>('inspect', id)).status.state === 'CONTAINER_EXITED';
    });
    expect(readFileSync(join(logDir, 'reader.log'), 'utf8')).toContain(
      'content of file "/data/greeting": written on the host',
    );
  });

  it('runs pods under a named runtime handler and refuses one it does not have', async () => {
    const file = join(work, 'handler-pod.json');
    writeFileSync(
      file,
      JSON.stringify({
        metadata: { name: 'handler-test', namespace: 'spillway-test', uid: randomUUID(), attempt: 0 },
        log_directory: logDir,
        linux: {},
      }),
    );
    const id = await cri('runp', '--runtime', 'runc', file);
    expect((await inspect<PodStatus>('inspectp', id)).status.state).toBe('SANDBOX_READY');
    await cri('rmp', '--force', id);
    await expect(cri('runp', '--runtime', 'gvisor-not-here', file)).rejects.toThrow(/gvisor-not-here/);
  });

  it('keeps pods running through a kill -9 of containerd, and reports for them after its restart', async () => {
    const [web] = (await cri('ps', '-q', '--name', '^web$', '--pod', podId)).split('\n');
    const before = await inspect<ContainerStatus>('inspect', web!);
    const doomed = await cri('create', podId, containerConfig('doomed', ['pause']), podConfig);
    await cri('start', doomed);
    const doomedPid = (await inspect<ContainerStatus>('inspect', doomed)).info.pid;
    const pid = Number(readFileSync(join(cluster.dir, 'pids', 'containerd.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'containerd gone',
      10_000,
      async () => !existsSync(`/proc/${pid}/cmdline`) || isZombie(pid),
    );
    // The container did not notice: same process, still serving.
    expect(existsSync(`/proc/${before.info.pid}`)).toBe(true);
    // A container that dies while containerd is away.
    process.kill(doomedPid, 'SIGKILL');

    await cluster.start('containerd');
    const after = await inspect<ContainerStatus>('inspect', web!);
    expect(after.status.state).toBe('CONTAINER_RUNNING');
    expect(after.info.pid).toBe(before.info.pid);
    expect((await inspect<PodStatus>('inspectp', podId)).status.state).toBe('SANDBOX_READY');
    await waitFor('the container killed meanwhile to show as exited', 30_000, async () => {
      return (await inspect<ContainerStatus>('inspect', doomed)).status.state === 'CONTAINER_EXITED';
    });
    // containerd v2.4 loses that exit status: on restart it reaps a shim whose container has no process left as
    // leaked, and CRI reports the container exited with 255, reason Unknown (internal/cri/server/restart.go). A
    // kubelet sees the same; the provider treats it as a failed container (restart policy applies).
    const { status: doomedStatus } = await inspect<ContainerStatus & { status: { reason: string } }>(
      'inspect',
      doomed,
    );
    expect([doomedStatus.exitCode, doomedStatus.reason]).toEqual([255, 'Unknown']);
    // And it still runs new containers in the pod it found again.
    const id = await cri(
      'create',
      podId,
      containerConfig('again', ['entrypoint-tester', 'after-restart']),
      podConfig,
    );
    await cri('start', id);
    await waitFor('the new container to exit', 30_000, async () => {
      return (await inspect<ContainerStatus>('inspect', id)).status.state === 'CONTAINER_EXITED';
    });
    expect(readFileSync(join(logDir, 'again.log'), 'utf8')).toContain('after-restart');
  });
});

describe('pulls from a registry that requires credentials', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-runtime-auth-'));
  const auth = { user: 'puller', password: 'pull-secret' };
  let registry: RunningRegistry;
  let ref: string;

  beforeAll(async () => {
    registry = await startRegistry({ dir, binDir: cluster.binDir, port: await freePort(), auth });
    allowRegistry(cluster.dir, registry.host);
    // The catalog's agnhost, pushed with the credentials (hack/images/push.ts answers the 401 challenge).
    await seedImages(registry.host, ['agnhost'], { username: auth.user, password: auth.password });
    ref = imageRef('agnhost', registry.host);
  });
  afterAll(async () => {
    // Only this name: `crictl rmi` would remove every name of the image, the cluster registry's agnhost too.
    if (ref) untag(ref);
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails without credentials and succeeds with them', async () => {
    // And nothing is ever pulled from outside: a registry not on the list resolves to a closed loopback port.
    await expect(cri('pull', 'docker.io/library/busybox:latest')).rejects.toThrow(
      /127\.0\.0\.1:9: connect: connection refused/,
    );
    await expect(cri('pull', ref)).rejects.toThrow(/authorization failed: no basic auth credentials/);
    await expect(cri('pull', '--creds', `${auth.user}:wrong`, ref)).rejects.toThrow(/401 Unauthorized/);
    expect(await cri('pull', '--creds', `${auth.user}:${auth.password}`, ref)).toMatch(
      /Image is up to date for sha256:/,
    );
    expect(await cri('images', '-q', ref)).toMatch(/^sha256:/);
  });
});

/** Removes one name of an image from containerd's CRI namespace, leaving the image's other names. */
function untag(ref: string): void {
  execFileSync(
    join(cluster.binDir, 'ctr'),
    ['--address', containerdPaths(cluster.dir).socket, '--namespace', 'k8s.io', 'images', 'rm', ref],
    { stdio: 'ignore' },
  );
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}
