/**
 * A client that resets its TCP connection at any point of the kubelet API's upgrade handling (exec/attach)
 * must never take the virtual node down: Node drops its own socket error handler when it hands a socket
 * over on `upgrade`, so an unhandled `read ECONNRESET` there used to end the process.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { request, type Server } from 'node:https';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeProvider } from '../../providers/fake/fake-provider.ts';
import { componentLogger } from '../../shared/log.ts';
import { loopbackServingCert } from './api.fixtures.ts';
import type { KubeletAuth } from './auth.ts';
import { startKubeletApi } from './api.ts';
import { encodeHeaderBlock, encodeSynStream, HeaderZlib } from '../../shared/spdy/spdy-frames.ts';

const POD = {
  metadata: { name: 'web', namespace: 'default', uid: 'uid-web' },
  spec: { nodeName: 'n', containers: [{ name: 'app' }] },
};
const EXEC_PATH = '/exec/default/web/app?command=cat&input=1&output=1&error=1';

/** The upgrade request kube-apiserver sends for `kubectl exec -i`, with or without a token. */
function upgradeRequest(token?: string): Buffer {
  const lines = [
    `POST ${EXEC_PATH} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: SPDY/3.1',
    'X-Stream-Protocol-Version: v4.channel.k8s.io',
    ...(token ? [`Authorization: Bearer ${token}`] : []),
    'Content-Length: 0',
  ];
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n');
}

let server: Server;
let port: number;
/** Resolves the authentication of a request with token `slow` (held to reset the client meanwhile). */
let releaseSlow: () => void = () => {};
let slowStarted: Promise<void>;
let markSlowStarted: () => void;
/** One promise per server-side TLS socket, settled when it has closed. */
let serverSocketsClosed: Promise<unknown>[] = [];
const uncaught: Error[] = [];
const onUncaught = (err: Error) => uncaught.push(err);

beforeAll(async () => {
  const serving = await loopbackServingCert();
  const provider = new FakeProvider();
  await provider.create(POD);
  const auth = {
    authenticate: async (req: { headers: { authorization?: string } }) => {
      const header = req.headers.authorization;
      if (header === 'Bearer slow') {
        markSlowStarted();
        await new Promise<void>((resolve) => (releaseSlow = resolve));
      }
      return header === 'Bearer good' || header === 'Bearer slow' ? { username: 'u', groups: [] } : undefined;
    },
    authorize: async () => true,
  } as unknown as KubeletAuth;
  server = await startKubeletApi({
    nodeName: 'n',
    provider,
    auth,
    pod: (namespace, name) => (namespace === 'default' && name === 'web' ? POD : undefined),
    pods: () => [POD],
    tls: serving,
    host: '127.0.0.1',
    port: 0,
    logger: componentLogger('test'),
  });
  port = (server.address() as net.AddressInfo).port;
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    // Not events.once: it listens for 'error' too, and would hide the very fault under test.
    serverSocketsClosed.push(new Promise((resolve) => socket.on('close', resolve)));
  });
  process.on('uncaughtException', onUncaught);
});
afterAll(() => {
  process.off('uncaughtException', onUncaught);
  server?.closeAllConnections();
  server?.close();
});
beforeEach(() => {
  serverSocketsClosed = [];
  slowStarted = new Promise((resolve) => (markSlowStarted = resolve));
});
afterEach(async () => {
  // Whatever the stage, the node keeps serving and nothing escaped as an uncaught error.
  expect(await healthz()).toBe(200);
  expect(uncaught.splice(0)).toEqual([]);
});

/** A TLS connection over a TCP socket the test can reset (RST, not FIN) at any moment. */
async function connect(options: { allowHalfOpen?: boolean } = {}): Promise<{
  tcp: net.Socket;
  tls: tls.TLSSocket;
}> {
  // The server side must be known (and watched) before the test resets: a TLS 1.3 client is connected
  // before the server has accepted.
  const accepted = once(server, 'secureConnection');
  const tcp = net.connect({ host: '127.0.0.1', port, ...options });
  await once(tcp, 'connect');
  const secure = tls.connect({ socket: tcp, rejectUnauthorized: false });
  secure.on('error', () => {}); // the client's own side of the reset is expected
  await Promise.all([once(secure, 'secureConnect'), accepted]);
  return { tcp, tls: secure };
}

/** Resets the connection, then waits until the server has seen it and closed its socket. */
async function resetAndSettle(tcp: net.Socket): Promise<void> {
  tcp.resetAndDestroy();
  await Promise.all(serverSocketsClosed);
}

/** Reads from `socket` until `done(everything read so far)` holds; leaves the socket open. */
function readUntil(socket: tls.TLSSocket, done: (got: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (!done(got)) return;
      socket.off('data', onData).off('close', onClose);
      socket.pause();
      resolve(got);
    };
    const onClose = () => reject(new Error(`connection closed after ${got.toString('latin1')}`));
    socket.on('data', onData).on('close', onClose);
    socket.resume();
  });
}

/** Reads the HTTP response head of the upgrade answer. */
async function responseHead(socket: tls.TLSSocket): Promise<string> {
  return (await readUntil(socket, (b) => b.includes('\r\n\r\n'))).toString('latin1');
}

function healthz(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/healthz',
        rejectUnauthorized: false,
        headers: { Authorization: 'Bearer good' },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('a client resetting during the kubelet API upgrade', () => {
  it.each([0, 1, 20, 60])('after %i bytes of the request head', async (bytes) => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest('good').subarray(0, bytes));
    await resetAndSettle(tcp);
  });

  it('while the request is being authenticated', async () => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest('slow'));
    await slowStarted;
    await resetAndSettle(tcp);
    // Authentication finishes after the client is gone: the answer must go nowhere, quietly.
    releaseSlow();
    await new Promise((resolve) => setTimeout(resolve, 10));
  });

  it('right after the 401', async () => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest());
    // Not read, only given time to be written: a client that reads the answer (even into Node's buffer)
    // answers the server's close cleanly before any reset. Were the server slower, the reset would come
    // before the 401 is written, which must be survived just the same.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await resetAndSettle(tcp);
  });

  it('(and a refused client that keeps its side open is disconnected all the same)', async () => {
    const { tcp, tls: socket } = await connect({ allowHalfOpen: true });
    socket.write(upgradeRequest());
    expect(await responseHead(socket)).toMatch(/^HTTP\/1.1 401/);
    socket.resume();
    await Promise.all(serverSocketsClosed);
    tcp.destroy();
  });

  it('right after the 101, before any SPDY frame', async () => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest('good'));
    expect(await responseHead(socket)).toMatch(/^HTTP\/1.1 101/);
    await resetAndSettle(tcp);
  });

  it('in the middle of a SPDY frame', async () => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest('good'));
    await responseHead(socket);
    const zlib = new HeaderZlib('deflate');
    const frame = encodeSynStream(1, 0, await zlib.process(encodeHeaderBlock({ streamtype: 'error' })));
    zlib.close();
    socket.write(frame.subarray(0, frame.length - 3));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await resetAndSettle(tcp);
  });

  it('while the command runs', async () => {
    const { tcp, tls: socket } = await connect();
    socket.write(upgradeRequest('good'));
    await responseHead(socket);
    const zlib = new HeaderZlib('deflate');
    for (const [id, type] of [
      [1, 'error'],
      [3, 'stdin'],
      [5, 'stdout'],
      [7, 'stderr'],
    ] as const) {
      socket.write(encodeSynStream(id, 0, await zlib.process(encodeHeaderBlock({ streamtype: type }))));
    }
    zlib.close();
    // Four SYN_REPLYs mean the streams are open and `cat` is waiting on stdin.
    const replies = (b: Buffer) => {
      let n = 0;
      for (let i = 0; i + 3 < b.length; i++) if (b.readUInt32BE(i) === 0x80030002) n++;
      return n;
    };
    await readUntil(socket, (b) => replies(b) >= 4);
    await resetAndSettle(tcp);
  });
});
