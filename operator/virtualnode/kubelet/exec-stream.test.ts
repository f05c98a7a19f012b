import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { NotFoundError, sandboxKey, type SandboxKey, type TerminalSize } from '../../providers/types.ts';
import { runRemoteCommand } from './exec-client.ts';
import {
  parseRemoteCommandQuery,
  RemoteCommandRequestError,
  serveRemoteCommand,
  writeUpgradeError,
  type RemoteCommandHandler,
  type RemoteCommandOptions,
  type RemoteCommandOutcome,
  type ServeRemoteCommandOptions,
} from './exec-stream.ts';
import { SpdySession } from '../../shared/spdy/spdy.ts';

/** A kubelet-shaped HTTP server on loopback whose `upgrade` route serves exec with `handlerFor`. */
async function kubelet(
  handlerFor: (options: RemoteCommandOptions) => RemoteCommandHandler,
  serveOptions: ServeRemoteCommandOptions = {},
) {
  const outcomes: RemoteCommandOutcome[] = [];
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    let options: RemoteCommandOptions;
    try {
      options = parseRemoteCommandQuery(new URL(req.url ?? '/', 'http://kubelet').searchParams);
    } catch (err) {
      const e = err as RemoteCommandRequestError;
      return writeUpgradeError(socket, e.status, e.message);
    }
    void serveRemoteCommand(req, socket, head, options, handlerFor(options), serveOptions).then((o) =>
      outcomes.push(o),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port, outcomes };
}

const cleanups: (() => void)[] = [];
let provider: FakeProvider;
let key: SandboxKey;
let port: number;
let outcomes: RemoteCommandOutcome[];

beforeEach(async () => {
  provider = new FakeProvider();
  const pod = {
    metadata: { name: 'web', namespace: 'default', uid: 'uid-web' },
    spec: { containers: [{ name: 'app' }] },
  };
  await provider.create(pod);
  key = sandboxKey(pod);
  ({ port, outcomes } = await kubelet((o) => (streams) => provider.exec(key, 'app', o.command, streams)));
});
afterEach(() => cleanups.splice(0).forEach((fn) => fn()));

/** The query kube-apiserver sends for `kubectl exec [-i] [-t] web -- <command>`. */
function execPath(command: string[], flags: { stdin?: boolean; tty?: boolean } = {}): string {
  const q = new URLSearchParams(command.map((c) => ['command', c]));
  if (flags.stdin) q.set('input', '1');
  q.set('output', '1');
  q.set('error', '1');
  if (flags.tty) q.set('tty', '1');
  return `/exec/default/web/app?${q}`;
}

describe('kubectl exec over SPDY/3.1', () => {
  it('runs echo and returns its output with a Success status, on v4.channel.k8s.io', async () => {
    const result = await runRemoteCommand({ port, path: execPath(['echo', 'hello', 'world']) });
    expect(result).toMatchObject({
      httpStatus: 101,
      protocol: 'v4.channel.k8s.io',
      stdout: 'hello world\n',
      stderr: '',
      exitCode: 0,
    });
    expect(result.status).toEqual({ metadata: {}, status: 'Success' });
  });

  it('round-trips stdin through cat, including input larger than any frame', async () => {
    const input = 'x'.repeat(200_000) + '\nthe end\n';
    const result = await runRemoteCommand({ port, path: execPath(['cat'], { stdin: true }), stdin: input });
    expect(result.stdout.length).toBe(input.length);
    expect(result.stdout.endsWith('the end\n')).toBe(true);
    expect(result.exitCode).toBe(0);
  });

  it('reports a non-zero exit code the way kubectl reads it (NonZeroExitCode, ExitCode cause)', async () => {
    const result = await runRemoteCommand({ port, path: execPath(['sh', '-c', 'exit 3']) });
    expect(result.exitCode).toBe(3);
    expect(result.status).toEqual({
      metadata: {},
      status: 'Failure',
      message: 'command terminated with non-zero exit code: exit status 3',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
    await expect.poll(() => outcomes).toEqual([{ protocol: 'v4.channel.k8s.io', exitCode: 3 }]);
  });

  it('keeps stderr apart from stdout without a terminal', async () => {
    const result = await runRemoteCommand({ port, path: execPath(['nosuch-binary']) });
    expect(result).toMatchObject({ stdout: '', exitCode: 126 });
    expect(result.stderr).toMatch(/"nosuch-binary": executable file not found/);
  });

  it('with a terminal, merges output into stdout and delivers the terminal size', async () => {
    const result = await runRemoteCommand({
      port,
      path: execPath(['stty', 'size'], { stdin: true, tty: true }),
      resize: [{ width: 80, height: 24 }],
    });
    expect(result).toMatchObject({ stdout: '24 80\n', stderr: '', exitCode: 0 });
  });

  it('passes every resize to the handler, in order', async () => {
    const sizes: TerminalSize[] = [];
    const k = await kubelet(() => async (streams) => {
      for await (const size of streams.resize!) {
        sizes.push(size);
        streams.stdout.write(`${size.width}x${size.height}\n`);
        if (sizes.length === 3) break;
      }
      return { exitCode: 0 };
    });
    const resize = [
      { width: 80, height: 24 },
      { width: 120, height: 40 },
      { width: 100, height: 30 },
    ];
    const result = await runRemoteCommand({
      port: k.port,
      path: execPath(['bash'], { stdin: true, tty: true }),
      resize,
    });
    expect(result.stdout).toBe('80x24\n120x40\n100x30\n');
    expect(sizes).toEqual(resize);
  });

  it('tells the user when the container is not there (NotFound status)', async () => {
    const k = await kubelet(() => async () => {
      throw new NotFoundError('container "nope" not found in pod default/web (uid-web)');
    });
    const result = await runRemoteCommand({ port: k.port, path: execPath(['true']) });
    expect(result.status).toMatchObject({ status: 'Failure', reason: 'NotFound', code: 404 });
    expect(result.status?.message).toMatch(/container "nope" not found/);
  });

  it('aborts the command when the client goes away', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.write(
      `POST ${execPath(['sleep', '3600'])} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
        'X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n',
    );
    await once(socket, 'data'); // 101
    const session = new SpdySession(socket, { role: 'client' });
    for (const type of ['error', 'stdout', 'stderr']) session.openStream({ streamType: type });
    await new Promise((r) => setTimeout(r, 50));
    session.destroy();
    await expect.poll(() => outcomes.length).toBe(1);
    expect(outcomes[0]).toMatchObject({ exitCode: 137 }); // the fake's sleep was killed
  });
});

describe('upgrade negotiation', () => {
  it('refuses with 403 and the accepted versions when v4 is not offered', async () => {
    const result = await runRemoteCommand({
      port,
      path: execPath(['true']),
      protocols: ['v5.channel.k8s.io'],
    });
    expect(result.httpStatus).toBe(403);
    expect(result.body).toMatch(/unable to negotiate protocol/);
  });

  it('refuses a request that asks for no stream at all', async () => {
    const result = await runRemoteCommand({ port, path: '/exec/default/web/app?command=true' });
    expect(result.httpStatus).toBe(400);
    expect(result.body).toMatch(/at least 1 of stdin, stdout, stderr/);
  });

  it('gives up when the client never opens its streams', async () => {
    const k = await kubelet(() => async () => ({ exitCode: 0 }), { streamCreationTimeoutMs: 100 });
    const socket = net.connect(k.port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    socket.write(
      `POST ${execPath(['true'])} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
        'X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n',
    );
    await expect.poll(() => k.outcomes.length).toBe(1);
    expect(k.outcomes[0]!.error?.message).toMatch(/timed out waiting for client to create streams/);
  });
});

describe('parseRemoteCommandQuery', () => {
  it.each([
    [
      'command=ls&command=-l&output=1',
      { command: ['ls', '-l'], stdin: false, stdout: true, stderr: false, tty: false },
    ],
    [
      'command=sh&input=1&output=1&error=1&tty=1',
      { command: ['sh'], stdin: true, stdout: true, stderr: false, tty: true },
    ],
    ['input=1', { command: [], stdin: true, stdout: false, stderr: false, tty: false }],
  ])('reads %s as the kubelet does (tty drops stderr)', (query, expected) => {
    expect(parseRemoteCommandQuery(new URLSearchParams(query))).toEqual(expected);
  });
});
