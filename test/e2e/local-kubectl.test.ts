/**
 * e2e (issue 13, point 9): `kubectl port-forward` and `kubectl attach` into a local sandbox, through the
 * apiserver and the virtual node's kubelet API, with a real server and a real ticking process in the sandbox.
 * Needs root, like every local-provider test; run it under `flock /tmp/helpers/local-sandbox.lock` beside others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultBinDir, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { tearDownLocalNode, startLocalNode, type LocalNode } from '../support/local-network.ts';
import { createTestNamespace } from '../support/namespace.ts';

const nodeName = 'spillway-local-kubectl-e2e';
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;
const children: ChildProcess[] = [];

/** An echo server on 8080 and a line every 200 ms on stdout. */
const program = [
  'import socket, threading, time',
  'def echo(c):',
  '    while True:',
  '        d = c.recv(4096)',
  '        if not d: break',
  '        c.sendall(d)',
  '    c.close()',
  'def serve():',
  '    s = socket.socket()',
  '    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
  '    s.bind(("0.0.0.0", 8080))',
  '    s.listen()',
  '    while True:',
  '        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()',
  'threading.Thread(target=serve, daemon=True).start()',
  'n = 0',
  'while True:',
  '    n += 1',
  '    print(f"tick {n}", flush=True)',
  '    time.sleep(0.2)',
].join('\n');

/** Starts kubectl in the background; `output()` is what it printed so far (stdout and stderr). */
function kubectlInBackground(...args: string[]): () => string {
  const child = spawn(`${defaultBinDir}/kubectl`, ['--kubeconfig', cluster.kubeconfigPath, ...args]);
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

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  local = await startLocalNode(cluster.kc, nodeName);
  ns = await createTestNamespace(cluster.kc, 'e2e-kubectl');
}, 180_000);

afterAll(async () => {
  for (const child of children) child.kill();
  await ns?.remove();
  if (cluster) await tearDownLocalNode(cluster.kc, nodeName, local);
}, 120_000);

describe('kubectl into a local sandbox', () => {
  it('forwards a port to the sandbox and attaches to its output', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'echo' },
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': nodeName },
          tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'app',
              image: 'python:3',
              command: ['python3', '-c', program],
              ports: [{ containerPort: 8080 }],
              readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
    });
    await waitFor('echo Ready', 90_000, async () => {
      const p = await core.readNamespacedPod({ namespace: ns.name, name: 'echo' });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    });

    const forwarding = kubectlInBackground(
      'port-forward',
      '-n',
      ns.name,
      'pod/echo',
      ':8080',
      '--address',
      '127.0.0.1',
    );
    await waitFor('port-forward listening', 30_000, async () =>
      /Forwarding from 127\.0\.0\.1:\d+/.test(forwarding()),
    ).catch((err: Error) => {
      throw new Error(`${err.message}; kubectl said: ${forwarding()}`);
    });
    const localPort = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(forwarding())![1]);
    expect(await echoThrough(localPort, 'into the sandbox and back')).toBe('into the sandbox and back');
    // Two connections through the same port-forward, one after the other.
    expect(await echoThrough(localPort, 'again')).toBe('again');

    const attached = kubectlInBackground('attach', '-n', ns.name, 'echo', '-c', 'app');
    await waitFor(
      'ticks through attach',
      30_000,
      async () => (attached().match(/^tick \d+$/gm) ?? []).length >= 3,
    );
    // Output from the moment of attaching: not the run's first line (written seconds before).
    expect(attached()).not.toMatch(/^tick 1$/m);
  });

  it('gives kubectl exec -it a terminal of the client’s size', async () => {
    // `script` gives kubectl a terminal of 33 rows and 101 columns; the sandbox's own `stty size` reads its own.
    const command = `${defaultBinDir}/kubectl --kubeconfig ${cluster.kubeconfigPath} exec -it -n ${ns.name} echo -- stty size`;
    const shell = spawn('script', ['-qec', `stty rows 33 cols 101; ${command}`, '/dev/null']);
    children.push(shell);
    let output = '';
    shell.stdout.on('data', (d: Buffer) => (output += d.toString()));
    await new Promise((resolve) => shell.once('close', resolve));
    expect(output).toContain('33 101');
  });
});
