/**
 * e2e (issue 15, "Done when"): kubectl against burst pods of the `local` provider, which run from images of the
 * cluster's registry in containerd sandboxes: `kubectl run --image=<registry>/busybox -- sh -c ...`, `kubectl
 * logs` (-f, --previous), `exec -it`, `attach`, `port-forward` and `cp` both ways, all through the apiserver and
 * the virtual node's kubelet API; and a missing image, which must leave its pods Pending in ImagePullBackOff
 * with the pull error in a Warning Event, never Failed and never replaced.
 * Needs root, like every local-provider test; run it under `flock /tmp/helpers/local-sandbox.lock` beside others.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { defaultBinDir, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { tearDownLocalNode, startLocalNode, type LocalNode } from '../support/local-network.ts';
import { createTestNamespace } from '../support/namespace.ts';

const nodeName = 'spillway-local-kubectl-e2e';
const execFileAsync = promisify(execFile);
const registry = inject('registry');
const BUSYBOX = imageRef('busybox', registry);
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;
let scratch: string;
const children: ChildProcess[] = [];

/** What `kubectl run --overrides` adds so that the pod lands on the local virtual node (no webhooks run here). */
const onLocalNode = JSON.stringify({
  spec: {
    nodeSelector: { 'kubernetes.io/hostname': nodeName },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
    terminationGracePeriodSeconds: 1,
  },
});

/**
 * An echo server on 8080 (busybox nc, one `cat` per connection: what comes in goes back until the client
 * half-closes) and a numbered tick on stdout every 200 ms.
 */
const echoAndTick = 'nc -ll -p 8080 -e cat & i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done';

/** Runs kubectl asynchronously (the kubelet API it reaches through the apiserver lives in this process). */
async function kubectl(...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(
      `${defaultBinDir}/kubectl`,
      ['--kubeconfig', cluster.kubeconfigPath, '-n', ns.name, ...args],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

/** Starts kubectl in the background; `output()` is what it printed so far (stdout and stderr). */
function kubectlInBackground(...args: string[]): () => string {
  const child = spawn(`${defaultBinDir}/kubectl`, [
    '--kubeconfig',
    cluster.kubeconfigPath,
    '-n',
    ns.name,
    ...args,
  ]);
  children.push(child);
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

/** Sends `message` to 127.0.0.1:`port`, half-closes, and resolves with what came back. */
function echoThrough(port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(message));
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('end', () => resolve(reply));
    socket.on('error', reject);
  });
}

async function pod(name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ namespace: ns.name, name });
}

/** The highest `tick N` in `text`, 0 when there is none. */
function lastTick(text: string): number {
  return Math.max(0, ...[...text.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1])));
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  local = await startLocalNode(cluster.kc, nodeName);
  ns = await createTestNamespace(cluster.kc, 'e2e-kubectl');
  scratch = mkdtempSync(join(tmpdir(), 'spillway-kubectl-cp-'));
  await kubectl(
    'run',
    'echo',
    `--image=${BUSYBOX}`,
    '--port=8080',
    `--overrides=${onLocalNode}`,
    '--',
    'sh',
    '-c',
    echoAndTick,
  );
  await waitFor('pod echo Running and ticking', 90_000, async () => {
    if ((await pod('echo')).status?.phase !== 'Running') return false;
    return lastTick(await kubectl('logs', 'echo')) >= 3;
  });
}, 180_000);

afterAll(async () => {
  for (const child of children) child.kill();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  await ns?.remove();
  if (cluster) await tearDownLocalNode(cluster.kc, nodeName, local);
}, 120_000);

describe('kubectl against a burst pod run from an image', () => {
  it('kubectl run --image=<registry>/busybox -- sh -c runs the command in the image, and kubectl logs shows it', async () => {
    const p = await pod('echo');
    expect(p.spec?.nodeName).toBe(nodeName);
    expect(p.status?.containerStatuses?.[0]?.image).toBe(BUSYBOX);
    expect(p.status?.containerStatuses?.[0]?.imageID).toMatch(/sha256:[0-9a-f]{64}$/);
    expect(await kubectl('logs', 'echo')).toMatch(/^tick 1\ntick 2\ntick 3\n/);
  });

  it('kubectl logs -f follows the output as it is written', async () => {
    const before = lastTick(await kubectl('logs', 'echo'));
    const following = kubectlInBackground('logs', '-f', 'echo');
    // The whole log first, then lines written after kubectl started.
    await waitFor('new ticks through logs -f', 30_000, async () => lastTick(following()) >= before + 5);
    expect(following()).toMatch(/^tick 1\n/);
  });

  it('kubectl port-forward reaches a server in the sandbox, connection after connection', async () => {
    const forwarding = kubectlInBackground('port-forward', 'pod/echo', ':8080', '--address', '127.0.0.1');
    await waitFor('port-forward listening', 30_000, async () =>
      /Forwarding from 127\.0\.0\.1:\d+/.test(forwarding()),
    ).catch((err: Error) => {
      throw new Error(`${err.message}; kubectl said: ${forwarding()}`);
    });
    const localPort = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(forwarding())![1]);
    expect(await echoThrough(localPort, 'into the sandbox and back')).toBe('into the sandbox and back');
    expect(await echoThrough(localPort, 'again')).toBe('again');
  });

  it('kubectl attach shows the output from the moment of attaching', async () => {
    const attached = kubectlInBackground('attach', 'echo', '-c', 'echo');
    await waitFor(
      'ticks through attach',
      30_000,
      async () => (attached().match(/^tick \d+$/gm) ?? []).length >= 3,
    );
    // Not the run's first line, written seconds before.
    expect(attached()).not.toMatch(/^tick 1$/m);
  });

  it('gives kubectl exec -it a terminal of the client’s size', async () => {
    // `script` gives kubectl a terminal of 33 rows and 101 columns. kubectl sends the size on its resize stream
    // once the exec has started (so a kubelet's process may start at 0 0, too): the shell in the sandbox reads
    // its own terminal's size until it has one.
    const probe =
      'test -t 0 && test -t 1 || exit 7; ' +
      'for i in $(seq 50); do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.1; done; ' +
      'echo "a tty: $s"';
    const command =
      `${defaultBinDir}/kubectl --kubeconfig ${cluster.kubeconfigPath} exec -it -n ${ns.name} echo -- ` +
      `sh -c '${probe}'`;
    const shell = spawn('script', ['-qec', `stty rows 33 cols 101; ${command}`, '/dev/null']);
    children.push(shell);
    let output = '';
    shell.stdout.on('data', (d: Buffer) => (output += d.toString()));
    await new Promise((resolve) => shell.once('close', resolve));
    expect(output).toContain('a tty: 33 101');
  });

  it('kubectl cp copies a file into the sandbox and one out of it (tar in the image)', async () => {
    const inbound = join(scratch, 'inbound.txt');
    writeFileSync(inbound, 'from the host\nsecond line\n');
    await kubectl('cp', inbound, `${ns.name}/echo:/tmp/inbound.txt`);
    expect(await kubectl('exec', 'echo', '--', 'cat', '/tmp/inbound.txt')).toBe(
      'from the host\nsecond line\n',
    );

    await kubectl(
      'exec',
      'echo',
      '--',
      'sh',
      '-c',
      'mkdir -p /tmp/out && echo "from $(hostname)" > /tmp/out/a.txt',
    );
    await kubectl('cp', `${ns.name}/echo:/tmp/out`, join(scratch, 'out'));
    expect(readFileSync(join(scratch, 'out', 'a.txt'), 'utf8')).toBe('from echo\n');
  });

  it('kubectl logs --previous shows the run before a restart', async () => {
    await kubectl(
      'run',
      'crasher',
      `--image=${BUSYBOX}`,
      `--overrides=${onLocalNode}`,
      '--',
      'sh',
      '-c',
      'echo "run $(cat /proc/sys/kernel/random/uuid)"; sleep 1; exit 3',
    );
    await waitFor('crasher restarted', 90_000, async () => {
      const s = (await pod('crasher')).status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 1 && s?.lastState?.terminated?.exitCode === 3;
    });
    const previous = await kubectl('logs', 'crasher', '--previous');
    expect(previous).toMatch(/^run [0-9a-f-]{36}\n$/);
    // The current run's log is another run's line, once it has written it.
    await waitFor('the current run’s line', 30_000, async () =>
      /^run [0-9a-f-]{36}\n$/.test(await kubectl('logs', 'crasher')),
    );
    const current = await kubectl('logs', 'crasher');
    const again = await kubectl('logs', 'crasher', '--previous');
    expect(current).not.toBe(again);
  });

  it('a missing image: Pending in ImagePullBackOff with the pull error in a Warning Event, never Failed, never replaced', async () => {
    const image = `${registry}/spillway/no-such-image:1`;
    await cluster.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'missing' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'missing' } },
          template: {
            metadata: { labels: { app: 'missing' } },
            spec: {
              ...JSON.parse(onLocalNode).spec,
              containers: [{ name: 'app', image }],
            },
          },
        },
      },
    });
    const pods = async () =>
      (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=missing' })).items;
    // Each pod's waiting reasons in the order seen: a pull, its back-off, the next pull, its back-off.
    const seen = new Map<string, string[]>();
    const failed: string[] = [];
    await waitFor('two pull attempts of each pod, each followed by ImagePullBackOff', 120_000, async () => {
      const now = await pods();
      for (const p of now) {
        if (p.status?.phase === 'Failed') failed.push(`${p.metadata?.name}: ${JSON.stringify(p.status)}`);
        const reason = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
        const reasons = seen.get(p.metadata!.uid!) ?? [];
        if (reason && reasons.at(-1) !== reason) reasons.push(reason);
        seen.set(p.metadata!.uid!, reasons);
      }
      const cycled = (r: string[]) =>
        r.filter((x, i) => x === 'ImagePullBackOff' && r.slice(0, i).includes('ErrImagePull')).length >= 2;
      return now.length === 2 && [...seen.values()].filter(cycled).length === 2;
    }).catch((err: Error) => {
      throw new Error(
        `${err.message}; waiting reasons by pod: ${JSON.stringify([...seen])}; failed: ${failed}`,
      );
    });
    // Never Failed while the image is missing: the kubelet keeps trying.
    expect(failed).toEqual([]);
    // The same two pods as at the start: no replacement storm.
    expect(seen.size).toBe(2);
    const now = await pods();
    expect(now.map((p) => p.metadata!.uid).sort()).toEqual([...seen.keys()].sort());
    for (const p of now) {
      expect(p.status?.phase).toBe('Pending');
      const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
      expect(['ErrImagePull', 'ImagePullBackOff']).toContain(waiting?.reason);
      expect(waiting?.message).toContain('no-such-image');
    }
    // What `kubectl describe pod` shows: the pull failing, with the registry's answer, as a Warning.
    const name = now[0]!.metadata!.name!;
    const events = (
      await core.listNamespacedEvent({ namespace: ns.name, fieldSelector: `involvedObject.name=${name}` })
    ).items;
    const warnings = events.filter((e) => e.type === 'Warning').map((e) => `${e.reason}: ${e.message}`);
    expect(warnings, JSON.stringify(events.map((e) => `${e.type} ${e.reason}: ${e.message}`))).toContainEqual(
      expect.stringMatching(/^Failed: Failed to pull image ".*no-such-image:1": .+/),
    );
    expect(warnings).toContainEqual('Failed: Error: ErrImagePull');
    const describe = await kubectl('describe', 'pod', name);
    expect(describe).toMatch(/Status:\s+Pending/);
    expect(describe).toMatch(/Reason:\s+(ImagePullBackOff|ErrImagePull)/);
  });
});
