/**
 * Clients of a CRI runtime's streaming server (containerd serves it on 127.0.0.1): the URL that the CRI `Exec`,
 * `Attach` and `PortForward` calls return is opened here and joined to the provider's streams, over either of the
 * two transports the server (k8s.io/cri-streaming) accepts.
 *
 * WebSocket ({@link execOverStream}, {@link attachOverStream}, {@link portForwardOverStream}; the `ws` package):
 * `v4.channel.k8s.io` (and the older `channel.k8s.io`), never v5. Every binary message starts with a channel byte.
 * For exec and attach: 0 stdin, 1 stdout, 2 stderr, 3 error (at the end a `metav1.Status` JSON that carries the
 * exit code), 4 resize (`{"Width":W,"Height":H}`). For port-forward the ports are those of the CRI request: per
 * port a data channel (2i) and an error channel (2i+1), and the server's first message on each is the port,
 * 2 bytes little-endian. The server closes the WebSocket when the command ends (after the status) or the
 * forwarded connection closes. What v4 over WebSocket cannot say: that stdin ended (v5's close signal says it,
 * and this server does not offer v5), nor that the forwarded connection's writer is done. So a command that reads
 * stdin to its end (`kubectl cp`, `kubectl exec -i ... < file`) waits for input for ever (measured against
 * containerd: `cat` never ends), and ending a forward's writable side does not half-close it.
 *
 * SPDY/3.1 ({@link execOverSpdy}, {@link attachOverSpdy}, {@link portForwardOverSpdy}): the path a kubelet hands kubectl's streams
 * through, one SPDY stream per channel, each with its own FIN, so stdin ends and forwards half-close (measured
 * against containerd). The provider should use these; they take the session constructor because the SPDY codec
 * lives in operator/virtualnode/kubelet/, which a provider may not import, until it moves to operator/shared/.
 *
 * Each function takes only a URL: the CRI call that makes it is the caller's (see {@link StreamingUrls}). A URL is
 * good for one connection and expires after a minute unused (the server's request cache).
 */
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ExecResult, ExecStreams, TerminalSize } from '../../types.ts';

/** The calls of a CRI client that make streaming URLs (the `url` of ExecResponse, AttachResponse, PortForwardResponse). */
export interface StreamingUrls {
  exec(request: {
    container_id: string;
    cmd: string[];
    tty: boolean;
    stdin: boolean;
    stdout: boolean;
    stderr: boolean;
  }): Promise<string>;
  attach(request: {
    container_id: string;
    tty: boolean;
    stdin: boolean;
    stdout: boolean;
    stderr: boolean;
  }): Promise<string>;
  portForward(sandboxId: string, ports: number[]): Promise<string>;
}

/** The subprotocol offered: the first whose error channel carries the exit code. */
export const CHANNEL_PROTOCOL = 'v4.channel.k8s.io';

/** Channel numbers of the remote command protocol. */
export const Channel = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4 } as const;

/** The `metav1.Status` the server writes on the error channel when a command ends. */
export interface StreamStatus {
  status?: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** The prefix the server puts before a runtime error; the kubelet API adds it again when it reports the error. */
const INTERNAL_ERROR_PREFIX = 'Internal error occurred: error executing command in container: ';

/**
 * The result a status means, as kubectl reads it: Success is exit code 0, `NonZeroExitCode` carries the code in
 * its `ExitCode` cause. @throws Error any other failure (the container is not running, the command does not
 * exist), with the runtime's message (without the server's "Internal error occurred" prefix)
 */
export function exitCodeOf(status: StreamStatus): ExecResult {
  if (status.status === 'Success') return { exitCode: 0 };
  if (status.reason === 'NonZeroExitCode') {
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number(cause?.message);
    if (Number.isInteger(code)) return { exitCode: code };
  }
  const message = status.message?.startsWith(INTERNAL_ERROR_PREFIX)
    ? status.message.slice(INTERNAL_ERROR_PREFIX.length)
    : status.message;
  throw new Error(message ?? `the runtime reported a failure without a message: ${JSON.stringify(status)}`);
}

/** The members of the `ws` package's client used here (`ws` ships no types, and `@types/ws` is not installed). */
interface WsClient {
  readonly protocol: string;
  send(data: Buffer, callback?: (err?: Error) => void): void;
  close(code?: number): void;
  terminate(): void;
  pause(): void;
  resume(): void;
  on(event: 'open', listener: () => void): this;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
}
const WebSocket = createRequire(import.meta.url)('ws') as new (
  url: string,
  protocols: string[],
  options: { perMessageDeflate: boolean },
) => WsClient;

/**
 * Opens the WebSocket of a streaming URL, handing every message to `onMessage` from the first on (the server
 * speaks as soon as it has upgraded); rejects with what the server answered when it refuses the upgrade.
 */
function connect(url: string, onMessage: (channel: number, payload: Buffer) => void): Promise<WsClient> {
  const socket = new WebSocket(url.replace(/^http/, 'ws'), [CHANNEL_PROTOCOL], { perMessageDeflate: false });
  socket.on('message', (data) => onMessage(data[0] ?? -1, data.subarray(1)));
  return new Promise((resolve, reject) => {
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const why =
          res.statusCode === 404 ? ' (the URL was used already or expired: ask CRI for a new one)' : '';
        reject(
          new Error(
            `the runtime's streaming server answered ${res.statusCode} to ${url}${why}: ${body.trim()}`,
          ),
        );
      });
      res.on('error', reject);
    });
    socket.on('error', (err) =>
      reject(new Error(`connecting to the runtime's streaming server ${url}: ${err.message}`)),
    );
    socket.on('open', () => {
      if (socket.protocol !== CHANNEL_PROTOCOL) {
        socket.terminate();
        reject(
          new Error(
            `the runtime's streaming server at ${url} chose protocol "${socket.protocol}", not ${CHANNEL_PROTOCOL}`,
          ),
        );
      } else resolve(socket);
    });
  });
}

/**
 * Runs an exec session at `url` (from CRI `Exec`) wired to `streams`; resolves with the command's exit code when
 * the server ends it (a non-zero code resolves). `streams.signal` aborting closes the connection and rejects with
 * its reason; the process goes on (containerd, like a kubelet, does not kill an exec'd process whose client left,
 * and CRI has no call that could: measured, a `sleep` exec'd and abandoned kept running). The CRI request must ask for the same streams: stdin when
 * `streams.stdin` is given, stderr when `streams.stderr` is, tty as `streams.tty`.
 * @throws Error the server refused the URL, or reported a failure other than an exit code
 */
export function execOverStream(url: string, streams: ExecStreams): Promise<ExecResult> {
  return remoteCommand(url, streams);
}

/**
 * Attaches `streams` to a container's main process at `url` (from CRI `Attach`): its output from now on, stdin and
 * terminal resizes into it. Resolves (exit code 0, as the kubelet reports an attach) when the container stops;
 * `streams.signal` aborting detaches (closes the connection) and resolves the same way.
 * @throws Error the server refused the URL, or the runtime could not attach
 */
export async function attachOverStream(url: string, streams: ExecStreams): Promise<ExecResult> {
  try {
    return await remoteCommand(url, streams);
  } catch (err) {
    if (streams.signal?.aborted) return { exitCode: 0 };
    throw err;
  }
}

async function remoteCommand(url: string, streams: ExecStreams): Promise<ExecResult> {
  streams.signal?.throwIfAborted();
  const stderr = streams.stderr ?? streams.stdout;
  let status = '';
  const socket: { open?: WsClient } = {};
  const onMessage = (channel: number, payload: Buffer) => {
    if (payload.length === 0) return; // the server's "connected" message
    const out = channel === Channel.stdout ? streams.stdout : channel === Channel.stderr ? stderr : undefined;
    if (out) {
      // Back-pressure: stop reading the socket until the client has taken the output.
      if (!out.write(payload) && socket.open) {
        socket.open.pause();
        out.once('drain', () => socket.open?.resume());
      }
    } else if (channel === Channel.error) status += payload.toString('utf8');
  };
  const open = await connect(url, onMessage);
  socket.open = open;
  return new Promise<ExecResult>((resolve, reject) => {
    const abort = () => open.close(1000);
    streams.signal?.addEventListener('abort', abort, { once: true });
    if (streams.signal?.aborted) abort(); // while connecting
    open.on('error', () => undefined); // a reset also closes; the close below decides
    const stopStdin = streams.stdin ? sendStdin(open, streams.stdin) : () => {};
    open.on('close', () => {
      streams.signal?.removeEventListener('abort', abort);
      stopStdin();
      if (streams.signal?.aborted) return reject(streams.signal.reason);
      if (!status) return reject(new Error(`the runtime's streaming server closed ${url} without a status`));
      try {
        resolve(exitCodeOf(JSON.parse(status) as StreamStatus));
      } catch (err) {
        reject(
          err instanceof SyntaxError ? new Error(`the runtime's streaming server said: ${status}`) : err,
        );
      }
    });
    if (streams.tty && streams.resize) void sendResizes(open, streams.resize);
  });
}

/**
 * Copies stdin to channel 0, one message per chunk, reading on only when the socket has taken the last one.
 * Returns how to stop (the session ended: stdin is left unread for its owner).
 */
function sendStdin(socket: WsClient, stdin: NodeJS.ReadableStream): () => void {
  const onData = (chunk: Buffer | string) => {
    stdin.pause();
    socket.send(Buffer.concat([Buffer.of(Channel.stdin), Buffer.from(chunk)]), () => stdin.resume());
  };
  stdin.on('data', onData);
  return () => {
    stdin.off('data', onData);
    stdin.pause();
  };
}

async function sendResizes(socket: WsClient, sizes: AsyncIterable<TerminalSize>): Promise<void> {
  try {
    for await (const { width, height } of sizes) {
      socket.send(
        Buffer.concat([
          Buffer.of(Channel.resize),
          Buffer.from(JSON.stringify({ Width: width, Height: height })),
        ]),
      );
    }
  } catch {
    /* the resize stream failed: the session goes on at the last size */
  }
}

/**
 * A connection to `port` inside the sandbox, through the URL of a CRI `PortForward` request for exactly that one
 * port. The returned stream's readable side is what the pod sends, ending when the server closes the connection;
 * what is written goes to the pod. The server announces the port before it dials it, so a failure to connect
 * (nothing listens) arrives after this resolves: it destroys the stream with the runtime's message. Ending the
 * writable side does not half-close (see the module comment): destroy the stream to close the connection.
 * @throws Error the server refused the URL, closed before announcing the port, or forwards another port
 */
export async function portForwardOverStream(url: string, port: number): Promise<Duplex> {
  const ws: { open?: WsClient } = {};
  const stream = new Duplex({
    read() {
      ws.open?.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      ws.open!.send(Buffer.concat([Buffer.of(0), chunk]), (err) => callback(err ?? null));
    },
    final(callback) {
      callback(); // v4 has no half-close: the connection stays open until either side closes it
    },
    destroy(err, callback) {
      ws.open?.close(1000);
      callback(err);
    },
  });
  // The first message of each channel is the port it carries; what follows is data (or error text).
  const announced: { data?: number; error?: number } = {};
  let error = '';
  let ready: () => void;
  const announcedBoth = new Promise<void>((resolve) => (ready = resolve));
  const onMessage = (channel: number, payload: Buffer) => {
    const which = channel === 0 ? 'data' : channel === 1 ? 'error' : undefined;
    if (!which) return;
    if (announced[which] === undefined) {
      announced[which] = payload.length >= 2 ? payload.readUInt16LE(0) : -1;
      payload = payload.subarray(2);
      if (announced.data !== undefined && announced.error !== undefined) ready();
    }
    if (payload.length === 0) return;
    if (which === 'error') error += payload.toString('utf8');
    else if (!stream.push(payload)) ws.open?.pause();
  };
  const socket = await connect(url, onMessage);
  ws.open = socket;
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', (err) => stream.destroy(err));
  // Both ports arrive right after the upgrade; a server that closes first has said why on the error channel.
  await Promise.race([announcedBoth, closed]);
  if (announced.data !== port) {
    socket.terminate();
    throw new Error(
      error ||
        `the runtime's streaming server forwards port ${announced.data}, not ${port}: ask CRI PortForward for [${port}] only`,
    );
  }
  void closed.then(() => {
    if (error) stream.destroy(new Error(error));
    else stream.push(null);
  });
  return stream;
}

// ---------------------------------------------------------------------------------------------------------
// The SPDY/3.1 path of the same server: a FIN per stream, so stdin can end and a forward can half-close.
// ---------------------------------------------------------------------------------------------------------

/** A stream of a SPDY client session, usable once its `response` (SYN_REPLY) has arrived. */
export interface SpdyClientStream extends Duplex {
  once(event: 'response', listener: () => void): this;
  once(event: string | symbol, listener: (...args: unknown[]) => void): this;
}

/** The SPDY/3.1 client session these functions need (the project's `SpdySession` in its client role). */
export interface SpdyClientSession {
  openStream(headers: Record<string, string>): SpdyClientStream;
  close(options?: { timeoutMs?: number }): Promise<void>;
  destroy(err?: Error): void;
}

/**
 * Makes a client session over an upgraded socket (`initialData`: bytes that followed the 101 answer). Passed in
 * because the codec lives in operator/virtualnode/kubelet/, which a provider may not import (docs/architecture.md,
 * the direction of imports): `(socket, rest) => new SpdySession(socket, { role: 'client', initialData: rest })`.
 */
export type SpdyClientFactory = (socket: Duplex, initialData: Buffer) => SpdyClientSession;

/** Upgrades a streaming URL to SPDY/3.1 offering `protocol`; rejects with the server's answer when it refuses. */
async function upgradeSpdy(
  url: string,
  protocol: string,
  spdy: SpdyClientFactory,
): Promise<SpdyClientSession> {
  const target = new URL(url);
  const socket = net.connect({ host: target.hostname, port: Number(target.port) });
  socket.write(
    [
      `POST ${target.pathname} HTTP/1.1`,
      `Host: ${target.host}`,
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      `X-Stream-Protocol-Version: ${protocol}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
  const { status, rest } = await new Promise<{ status: number; rest: Buffer }>((resolve, reject) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData).off('error', onError);
      socket.pause();
      resolve({
        status: Number(head.subarray(0, end).toString('latin1').split(' ')[1]),
        rest: head.subarray(end + 4),
      });
    };
    const onError = (err: Error) =>
      reject(new Error(`connecting to the runtime's streaming server ${url}: ${err.message}`));
    socket.on('data', onData).once('error', onError);
  });
  if (status !== 101) {
    const body = Buffer.concat([rest, ...(await socket.toArray())]).toString('utf8');
    socket.destroy();
    const why = status === 404 ? ' (the URL was used already or expired: ask CRI for a new one)' : '';
    throw new Error(`the runtime's streaming server answered ${status} to ${url}${why}: ${body.trim()}`);
  }
  return spdy(socket, rest);
}

async function openSpdyStream(
  session: SpdyClientSession,
  headers: Record<string, string>,
): Promise<SpdyClientStream> {
  const stream = session.openStream(headers);
  await new Promise<void>((resolve, reject) => {
    stream.once('response', () => resolve());
    stream.once('close', () =>
      reject(new Error(`the runtime's streaming server refused the ${headers.streamType} stream`)),
    );
  });
  return stream;
}

/** Reads a stream to its end (a reset one gives what arrived). */
async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await finished(stream, { writable: false }).catch(() => undefined);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * {@link execOverStream} over SPDY/3.1, with what WebSocket v4 lacks: when `streams.stdin` ends, the process sees
 * its stdin end (`kubectl cp`, `exec -i < file`). The CRI request must ask for stdout, for stdin when
 * `streams.stdin` is given and for stderr when `streams.stderr` is and there is no tty (the server waits for
 * exactly those streams).
 * @throws Error the server refused the URL, or reported a failure other than an exit code
 */
export async function execOverSpdy(
  url: string,
  streams: ExecStreams,
  spdy: SpdyClientFactory,
): Promise<ExecResult> {
  streams.signal?.throwIfAborted();
  const session = await upgradeSpdy(url, CHANNEL_PROTOCOL, spdy);
  if (streams.signal?.aborted) {
    // The client left while the upgrade was under way.
    session.destroy();
    throw streams.signal.reason;
  }
  const abort = () => session.destroy(new Error('the client went away'));
  streams.signal?.addEventListener('abort', abort, { once: true });
  try {
    // client-go's order: error first, then the data streams, each used once the server has replied.
    const error = await openSpdyStream(session, { streamType: 'error' });
    error.end();
    const stdin = streams.stdin ? await openSpdyStream(session, { streamType: 'stdin' }) : undefined;
    const stdout = await openSpdyStream(session, { streamType: 'stdout' });
    stdout.end();
    const stderr =
      streams.stderr && !streams.tty ? await openSpdyStream(session, { streamType: 'stderr' }) : undefined;
    stderr?.end();
    const resize = streams.tty ? await openSpdyStream(session, { streamType: 'resize' }) : undefined;
    if (stdin && streams.stdin) streams.stdin.pipe(stdin);
    if (resize && streams.resize) void sendSpdyResizes(resize, streams.resize);
    stdout.pipe(streams.stdout, { end: false });
    if (stderr) stderr.pipe(streams.stderr ?? streams.stdout, { end: false });
    const [status] = await Promise.all([
      readAll(error),
      finished(stdout, { writable: false }).catch(() => undefined),
      stderr && finished(stderr, { writable: false }).catch(() => undefined),
    ]);
    streams.stdin?.unpipe();
    resize?.end();
    if (streams.signal?.aborted) throw streams.signal.reason;
    if (!status) throw new Error(`the runtime's streaming server closed ${url} without a status`);
    try {
      return exitCodeOf(JSON.parse(status) as StreamStatus);
    } catch (err) {
      throw err instanceof SyntaxError ? new Error(`the runtime's streaming server said: ${status}`) : err;
    }
  } finally {
    streams.signal?.removeEventListener('abort', abort);
    await session.close({ timeoutMs: 1000 }).catch(() => undefined);
  }
}

/**
 * {@link attachOverStream} over SPDY/3.1: when `streams.stdin` ends, the container's stdin ends too (a container
 * made with `stdin_once` then sees EOF). Resolves (exit code 0) when the container stops or `streams.signal`
 * aborts (detach).
 * @throws Error the server refused the URL, or the runtime could not attach
 */
export async function attachOverSpdy(
  url: string,
  streams: ExecStreams,
  spdy: SpdyClientFactory,
): Promise<ExecResult> {
  try {
    return await execOverSpdy(url, streams, spdy);
  } catch (err) {
    if (streams.signal?.aborted) return { exitCode: 0 };
    throw err;
  }
}

async function sendSpdyResizes(stream: Duplex, sizes: AsyncIterable<TerminalSize>): Promise<void> {
  try {
    for await (const { width, height } of sizes)
      stream.write(JSON.stringify({ Width: width, Height: height }));
  } catch {
    /* the resize stream failed: the session goes on at the last size */
  }
}

/**
 * {@link portForwardOverStream} over SPDY/3.1 (`portforward.k8s.io`): ending the returned stream's writable side
 * half-closes the connection inside the pod, as the provider contract says. A failure the server reports (nothing
 * listens) destroys the stream with the runtime's message. The session closes with the stream.
 * @throws Error the server refused the URL or a stream
 */
export async function portForwardOverSpdy(
  url: string,
  port: number,
  spdy: SpdyClientFactory,
): Promise<Duplex> {
  const session = await upgradeSpdy(url, 'portforward.k8s.io', spdy);
  let data: SpdyClientStream;
  let errorText: Promise<string>;
  try {
    const headers = { port: String(port), requestID: '0' };
    const error = await openSpdyStream(session, { ...headers, streamType: 'error' });
    error.end();
    errorText = readAll(error);
    data = await openSpdyStream(session, { ...headers, streamType: 'data' });
  } catch (err) {
    session.destroy();
    throw err;
  }
  // The server ends (or resets) the data stream and writes the error text in either order: the connection ends
  // only once the error stream has ended too, failing with its text when there is one.
  const conn = new Duplex({
    read() {
      data.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      data.write(chunk, callback);
    },
    final(callback) {
      data.end(callback); // the FIN that half-closes the connection in the pod
    },
    destroy(err, callback) {
      data.destroy();
      session.destroy();
      callback(err);
    },
  });
  data.on('data', (chunk: Buffer) => {
    if (!conn.push(chunk)) data.pause();
  });
  data.on('error', () => undefined); // a reset: the error stream says why
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    void errorText.then((text) => {
      if (text) conn.destroy(new Error(text));
      else conn.push(null);
    });
  };
  data.once('end', end).once('close', end);
  void finished(conn)
    .catch(() => undefined)
    .then(() => session.close({ timeoutMs: 1000 }));
  return conn;
}
