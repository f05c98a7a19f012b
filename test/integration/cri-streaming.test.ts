/**
 * The local provider's CRI streaming, logs and stats modules (operator/providers/local/cri/{streaming,logs,stats}.ts)
 * against the local cluster's real containerd: a busybox pod sandbox from the cluster's registry, exec, attach and
 * port-forward through the URLs CRI hands out (containerd's streaming server on 127.0.0.1), the container's CRI log
 * file read as `kubectl logs` does, and the sandbox's usage from ListPodSandboxStats.
 *
 * Needs root (containerd) and `make images` pushed to the cluster's registry (busybox, pause).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { CriClient } from '../../operator/providers/local/cri/client.ts';
import type { ContainerConfig, PodSandboxConfig } from '../../operator/providers/local/cri/types.ts';
import { readContainerLog } from '../../operator/providers/local/cri/logs.ts';
import { UsageSampler } from '../../operator/providers/local/cri/stats.ts';
import {
  attachOverSpdy,
  execOverSpdy,
  portForwardOverSpdy,
} from '../../operator/providers/local/cri/streaming.ts';
import { defaultClusterDir, LocalCluster, waitFor } from '../support/cluster.ts';

const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);

/** A writable that keeps what it got. */
function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString() });
}

/** Reads from `stream` until the output so far contains `want`, leaving the stream open. */
function readUntil(stream: Readable, want: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += String(chunk);
      if (!out.includes(want)) return;
      stream.off('data', onData).off('end', onEnd).off('error', reject).pause();
      resolve(out);
    };
    const onEnd = () => resolve(out);
    stream.on('data', onData).once('end', onEnd).once('error', reject).resume();
  });
}

describe('CRI streaming, logs and stats against containerd', () => {
  const logDir = mkdtempSync(join(tmpdir(), 'spillway-cri-streaming-'));
  let cri: CriClient;
  let image: string;
  let sandboxId: string;
  let sandboxConfig: PodSandboxConfig;
  /** The `sleep 3600` container the exec tests run in. */
  let main: string;
  const uid = randomUUID();

  /** Creates and starts a busybox container running `script` with sh; returns its id. */
  async function container(
    name: string,
    script: string,
    extra: Partial<ContainerConfig> = {},
  ): Promise<string> {
    const id = await cri.createContainer(
      sandboxId,
      {
        metadata: { name, attempt: 0 },
        image: { image },
        command: ['sh', '-c', script],
        labels: {},
        log_path: `${name}/0.log`,
        ...extra,
      },
      sandboxConfig,
    );
    await cri.startContainer(id);
    return id;
  }

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('these tests need root (containerd): run them as root');
    cri = new CriClient({ endpoint: cluster.criEndpoint });
    image = imageRef('busybox', cluster.registry);
    await cri.pullImage(image);
    sandboxConfig = {
      metadata: { name: 'cri-streaming', namespace: 'spillway-test', uid, attempt: 0 },
      hostname: 'cri-streaming',
      log_directory: logDir,
      labels: { 'spillway.dev/test': 'cri-streaming' },
      // containerd reports no sandbox stats without a cgroup parent ("sandbox ... has no cgroup parent").
      linux: { cgroup_parent: `/spillway-test/cri-streaming-${uid}` },
    };
    sandboxId = await cri.runPodSandbox(sandboxConfig);
  });

  afterAll(async () => {
    if (sandboxId) {
      await cri.stopPodSandbox(sandboxId).catch(() => {});
      await cri.removePodSandbox(sandboxId).catch(() => {});
    }
    cri?.close();
    rmSync(logDir, { recursive: true, force: true });
  });

  it('execs a command: stdout, stderr and its exit code', async () => {
    const id = (main = await container('main', 'sleep 3600'));
    const stdout = sink();
    const stderr = sink();
    const url = await cri.exec({
      container_id: id,
      cmd: ['sh', '-c', 'echo hi; echo oops >&2; exit 3'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\//);
    expect(await execOverSpdy(url, { stdout, stderr, tty: false })).toEqual({ exitCode: 3 });
    expect(stdout.text()).toBe('hi\n');
    expect(stderr.text()).toBe('oops\n');
    // A URL is good for one connection.
    await expect(execOverSpdy(url, { stdout: sink(), tty: false })).rejects.toThrow(/answered 404/);
  });

  it('execs with stdin, and with a terminal of the size sent', async () => {
    const id = main;
    const stdout = sink();
    const withStdin = await cri.exec({
      container_id: id,
      cmd: ['sh', '-c', 'read line; echo "got $line"'],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    const stdin = Readable.from([Buffer.from('hello\n')]);
    expect(await execOverSpdy(withStdin, { stdin, stdout, tty: false })).toEqual({ exitCode: 0 });
    expect(stdout.text()).toBe('got hello\n');

    const terminal = sink();
    const withTty = await cri.exec({
      container_id: id,
      // The resize travels beside the command's start: wait in the container until it has landed.
      cmd: [
        'sh',
        '-c',
        'for i in $(seq 100); do [ "$(stty size 2>/dev/null)" = "45 123" ] && break; sleep 0.1; done; stty size',
      ],
      tty: true,
      stdin: true, // stty asks the terminal on stdin
      stdout: true,
      stderr: false,
    });
    const resize = Readable.from([{ width: 123, height: 45 }]);
    const open = new PassThrough();
    expect(await execOverSpdy(withTty, { stdin: open, stdout: terminal, tty: true, resize })).toEqual({
      exitCode: 0,
    });
    expect(terminal.text()).toBe('45 123\r\n');
  });

  it('rejects with containerd’s message when the command cannot start', async () => {
    const url = await cri.exec({
      container_id: main,
      cmd: ['/no/such/binary'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    const err = await execOverSpdy(url, { stdout: sink(), stderr: sink(), tty: false }).catch(
      (e: Error) => e,
    );
    expect((err as Error).message).toMatch(
      /^failed to exec in container: .*"\/no\/such\/binary": stat .*no such file/,
    );
  });

  it('attaches to a container: stdin in, output out, until it exits; its log file has the same lines', async () => {
    const id = await container('reader', 'read line; echo "got $line"; echo bye', {
      stdin: true,
      stdin_once: true,
    });
    const url = await cri.attach({ container_id: id, tty: false, stdin: true, stdout: true, stderr: true });
    const stdout = sink();
    const stdin = new PassThrough();
    const attached = attachOverSpdy(url, { stdin, stdout, stderr: sink(), tty: false });
    stdin.write('hello\n');
    expect(await attached).toEqual({ exitCode: 0 });
    expect(stdout.text()).toBe('got hello\nbye\n');

    await waitFor('the container to exit', 30_000, async () => {
      return (await cri.containerStatus(id)).state === 'CONTAINER_EXITED';
    });
    const status = await cri.containerStatus(id);
    const logs = await readContainerLog(status.logPath, { timestamps: true });
    let text = '';
    for await (const chunk of logs) text += String(chunk);
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z got hello\n\S+ bye\n$/);
  });

  it('follows a running container’s log until it exits, and detaches an attach on abort', async () => {
    const id = await container(
      'ticker',
      'for i in 1 2 3; do echo tick $i; sleep 0.3; done; read x; echo done',
    );
    const status = await cri.containerStatus(id);
    const logs = await readContainerLog(
      status.logPath,
      { follow: true },
      { running: async () => (await cri.containerStatus(id)).state === 'CONTAINER_RUNNING', pollMs: 50 },
    );
    expect(await readUntil(logs, 'tick 3\n')).toBe('tick 1\ntick 2\ntick 3\n');

    // Attach without stdin, detach: the container keeps running.
    const detach = new AbortController();
    const url = await cri.attach({ container_id: id, tty: false, stdin: false, stdout: true, stderr: false });
    const attached = attachOverSpdy(url, { stdout: sink(), tty: false, signal: detach.signal });
    detach.abort();
    expect(await attached).toEqual({ exitCode: 0 });
    expect((await cri.containerStatus(id)).state).toBe('CONTAINER_RUNNING');

    await cri.stopContainer(id, 0);
    let rest = '';
    for await (const chunk of logs) rest += String(chunk);
    expect(rest).toBe('');
  });

  it('follows a log across a rotation (renamed, then ReopenContainerLog) without losing a line', async () => {
    const id = await container(
      'rotated',
      'i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo line $i; sleep 0.05; done; read x',
    );
    const { logPath } = await cri.containerStatus(id);
    const logs = await readContainerLog(
      logPath,
      { follow: true },
      { running: async () => (await cri.containerStatus(id)).state === 'CONTAINER_RUNNING', pollMs: 20 },
    );
    let text = await readUntil(logs, 'line 3\n');
    renameSync(logPath, `${logPath}.20260101-000000`);
    await cri.reopenContainerLog(id);
    text += await readUntil(logs, 'line 30\n');
    expect(text).toBe(Array.from({ length: 30 }, (_, i) => `line ${i + 1}\n`).join(''));
    expect(existsSync(logPath)).toBe(true);
    await cri.stopContainer(id, 0);
    logs.destroy();
  });

  it('forwards a port to a listener on the pod’s loopback, and says when nothing listens', async () => {
    const id = await container('listener', 'echo hello-from-pod | nc -l -p 8080 127.0.0.1');
    await waitFor('nc listening on 8080', 30_000, async () => {
      const r = await cri.execSync(id, ['sh', '-c', 'netstat -ltn | grep -q 127.0.0.1:8080'], 5);
      return r.exitCode === 0;
    });
    const conn = await portForwardOverSpdy(await cri.portForward(sandboxId, [8080]), 8080);
    conn.write('ping-from-test\n');
    expect(await readUntil(conn, 'hello-from-pod\n')).toBe('hello-from-pod\n');
    // What the test sent reached the pod: nc printed it to its stdout, the container's log.
    const status = await cri.containerStatus(id);
    const logs = await readContainerLog(
      status.logPath,
      { follow: true },
      { running: () => true, pollMs: 50 },
    );
    expect(await readUntil(logs, 'ping-from-test\n')).toBe('ping-from-test\n');
    logs.destroy();
    conn.destroy();

    const refused = await portForwardOverSpdy(await cri.portForward(sandboxId, [9999]), 9999);
    const err = await new Promise<Error>((resolve) => refused.on('error', resolve).resume());
    expect(err.message).toMatch(/9999/);
  });

  it('ends the process’s stdin when stdin ends (what kubectl cp needs)', async () => {
    const url = await cri.exec({
      container_id: main,
      cmd: ['sh', '-c', 'cat; echo cat-saw-eof; exit 4'],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: true,
    });
    const stdout = sink();
    const stdin = Readable.from([Buffer.from('hello\n')]);
    expect(await execOverSpdy(url, { stdin, stdout, stderr: sink(), tty: false })).toEqual({
      exitCode: 4,
    });
    expect(stdout.text()).toBe('hello\ncat-saw-eof\n');
  });

  it('ends an attached container’s stdin (stdin_once) when stdin ends', async () => {
    const id = await container('cat', 'cat; echo cat-saw-eof', { stdin: true, stdin_once: true });
    const url = await cri.attach({ container_id: id, tty: false, stdin: true, stdout: true, stderr: true });
    const stdout = sink();
    const stdin = Readable.from([Buffer.from('one\n'), Buffer.from('two\n')]);
    expect(await attachOverSpdy(url, { stdin, stdout, stderr: sink(), tty: false })).toEqual({
      exitCode: 0,
    });
    expect(stdout.text()).toBe('one\ntwo\ncat-saw-eof\n');
  });

  it('half-closes a forward: the pod sees the end of what was sent and answers it whole', async () => {
    const id = await container('echo', 'nc -l -p 8081 127.0.0.1 -e cat');
    await waitFor('nc listening on 8081', 30_000, async () => {
      const r = await cri.execSync(id, ['sh', '-c', 'netstat -ltn | grep -q 127.0.0.1:8081'], 5);
      return r.exitCode === 0;
    });
    const conn = await portForwardOverSpdy(await cri.portForward(sandboxId, [8081]), 8081);
    conn.end('echo me, then EOF\n');
    let echoed = '';
    for await (const chunk of conn) echoed += String(chunk);
    expect(echoed).toBe('echo me, then EOF\n');
  });

  it('reports the sandbox’s usage from ListPodSandboxStats, with a CPU rate from two samples', async () => {
    const sampler = new UsageSampler();
    const started = { sandbox: new Date() };
    const sample = async () => {
      const all = await cri.listPodSandboxStats({ 'spillway.dev/test': 'cri-streaming' });
      return sampler.summary(all, () => started);
    };
    const [first] = await sample();
    expect(first?.key).toEqual({ uid, namespace: 'spillway-test', name: 'cri-streaming' });
    expect(first?.memory?.workingSetBytes).toBeGreaterThan(0);
    expect(first?.cpu?.usageCoreNanoSeconds).toBeGreaterThan(0);
    expect(first?.containers.map((c) => c.name)).toContain('main');
    // containerd leaves usage_nano_cores out: the rate comes from the sampler's two samples, around a busy loop.
    const busy = await cri.exec({
      container_id: main,
      cmd: ['sh', '-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    expect(await execOverSpdy(busy, { stdout: sink(), stderr: sink(), tty: false })).toEqual({
      exitCode: 0,
    });
    const [second] = await sample();
    expect(second!.cpu!.usageCoreNanoSeconds).toBeGreaterThan(first!.cpu!.usageCoreNanoSeconds);
    expect(second!.cpu!.usageNanoCores).toBeGreaterThan(0);
    const app = second!.containers.find((c) => c.name === 'main');
    expect(app?.cpu?.usageNanoCores).toBeGreaterThan(0);
  });
});
