/**
 * `make cluster-down` (node hack/cluster.ts down) on a cluster whose local-provider operator died without its
 * shutdown: the sandboxes and the CoreDNS it left running on this host stop with the cluster, and only those of its
 * own virtual nodes. The "sandboxes" here are processes that carry a sandbox's command line (what the local provider's
 * discovery looks for), so that the test needs neither root nor network namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_INIT_PATH } from '../../operator/providers/local/runtime.ts';
import { LocalCluster, repoRoot } from '../support/cluster.ts';
import { localStateDir } from '../support/local-leftovers.ts';

/** A process that looks like PID 1 of sandbox `uid` of node `node` to the local provider's discovery. */
function fakeSandbox(
  node: string,
  uid: string,
): { child: ChildProcess; exited: Promise<NodeJS.Signals | null> } {
  const dir = join(localStateDir(node), 'sandboxes', uid);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)', SANDBOX_INIT_PATH, dir], {
    stdio: 'ignore',
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  return { child, exited };
}

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
  const sandboxes: ReturnType<typeof fakeSandbox>[] = [];

  beforeAll(async () => {
    await cluster.up();
  });
  afterAll(async () => {
    for (const s of sandboxes) s.child.kill('SIGKILL');
    await cluster.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stops the sandboxes its local virtual nodes left behind, and nobody else’s', async () => {
    await cluster
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNode({ body: { metadata: { name: node, labels: { 'spillway.dev/provider': 'local' } } } });
    const ours = [fakeSandbox(node, 'uid-a'), fakeSandbox(node, 'uid-b')];
    const dns = fakeClusterDns(node);
    const theirs = fakeSandbox(stranger, 'uid-c');
    sandboxes.push(...ours, dns, theirs);

    const down = spawnSync(process.execPath, [join(repoRoot, 'hack/cluster.ts'), 'down'], {
      env: { ...process.env, SPILLWAY_CLUSTER_DIR: dir },
      encoding: 'utf8',
    });
    expect(down.status, down.stdout + down.stderr).toBe(0);
    expect(down.stdout).toContain(
      `stopped 2 sandbox(es) and its CoreDNS left behind by virtual node ${node}`,
    );
    expect(await Promise.all(ours.map((s) => s.exited))).toEqual(['SIGKILL', 'SIGKILL']);
    expect(await dns.exited).toBe('SIGTERM');
    // Another cluster's (or nobody's) sandbox on the same host is not this cluster's to stop.
    expect(theirs.child.exitCode).toBeNull();
    expect(theirs.child.signalCode).toBeNull();
    expect(await cluster.isRunning()).toBe(false);
  });
});
