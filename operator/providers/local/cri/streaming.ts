/**
 * Clients of a CRI runtime's streaming server (containerd serves it on 127.0.0.1): the URL that the CRI `Exec`,
 * `Attach` and `PortForward` calls return is opened here over SPDY/3.1 and joined to the provider's streams.
 *
 * SPDY/3.1 is the path a kubelet hands kubectl's streams through: one SPDY stream per channel (`error`, `stdin`,
 * `stdout`, `stderr`, `resize`; for port-forward `error` and `data` per port), each with its own FIN, so stdin
 * ends (`kubectl cp`, `kubectl exec -i ... < file`) and a forward half-closes. The server's other transport,
 * WebSocket, speaks only `v4.channel.k8s.io` there, which can say neither: measured against containerd, a `cat`
 * fed over it never ends. The codec is the project's own (operator/shared/spdy/), in its client role.
 *
 * Each function takes only a URL: the CRI call that makes it is the caller's (see {@link StreamingUrls}). A URL is
 * good for one connection and expires after a minute unused (the server's request cache).
 */
import net from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { SpdySession, type SpdyStream } from '../../../shared/spdy/spdy.ts';
import type { ExecResult, ExecStreams, TerminalSize } from '../../types.ts';
import type { AttachRequest, ExecRequest } from './types.ts';

/** The calls of a CRI client that make streaming URLs (the `url` of ExecResponse, AttachResponse, PortForwardResponse). */
export interface StreamingUrls {
  exec(request: ExecRequest): Promise<string>;
  attach(request: AttachRequest): Promise<string>;
  portForward(sandboxId: string, ports: number[]): Promise<string>;
}

/** The remote command protocol offered: the first whose error stream carries the exit code. */
export const CHANNEL_PROTOCOL = 'v4.channel.k8s.io';

/** The `metav1.Status` the server writes on the error stream when a command ends. */
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

/** Upgrades a streaming URL to SPDY/3.1 offering `protocol`; rejects with the server's answer when it refuses. */
async function upgradeSpdy(url: string, protocol: string): Promise<SpdySession> {
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
  const { status, length, rest } = await new Promise<{ status: number; length: number; rest: Buffer }>(
    (resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData).off('error', onError);
        socket.pause();
        const text = head.subarray(0, end).toString('latin1');
        resolve({
          status: Number(text.split(' ')[1]),
          length: Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? Infinity),
          rest: head.subarray(end + 4),
        });
      };
      const onError = (err: Error) =>
        reject(new Error(`connecting to the runtime's streaming server ${url}: ${err.message}`));
      socket.on('data', onData).once('error', onError);
    },
  );
  if (status !== 101) {
    // The server keeps the connection open after its answer (HTTP/1.1): read the body by its length.
    let body = rest;
    if (body.length < length) {
      for await (const chunk of socket) {
        body = Buffer.concat([body, chunk as Buffer]);
        if (body.length >= length) break;
      }
    }
    socket.destroy();
    const why = status === 404 ? ' (the URL was used already or expired: ask CRI for a new one)' : '';
    throw new Error(
      `the runtime's streaming server answered ${status} to ${url}${why}: ${body.subarray(0, length).toString('utf8').trim()}`,
    );
  }
  return new SpdySession(socket, { role: 'client', initialData: rest });
}

/** Opens a stream and waits for the server's SYN_REPLY; rejects when the server resets it instead. */
async function openSpdyStream(session: SpdySession, headers: Record<string, string>): Promise<SpdyStream> {
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
 * Runs an exec session at `url` (from CRI `Exec`) wired to `streams`; resolves with the command's exit code when
 * the server ends it (a non-zero code resolves). When `streams.stdin` ends, the process sees its stdin end.
 * `streams.signal` aborting closes the connection and rejects with its reason; the process goes on (containerd,
 * like a kubelet, does not kill an exec'd process whose client left, and CRI has no call that could: measured, a
 * `sleep` exec'd and abandoned kept running). The CRI request must ask for stdout, for stdin when `streams.stdin`
 * is given, for stderr when `streams.stderr` is and there is no tty, and tty as `streams.tty` (the server waits
 * for exactly those streams).
 * @throws Error the server refused the URL, or reported a failure other than an exit code
 */
export async function execOverSpdy(url: string, streams: ExecStreams): Promise<ExecResult> {
  streams.signal?.throwIfAborted();
  const session = await upgradeSpdy(url, CHANNEL_PROTOCOL);
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
 * Attaches `streams` to a container's main process at `url` (from CRI `Attach`): its output from now on, stdin and
 * terminal resizes into it; when `streams.stdin` ends, the container's stdin ends too (a container made with
 * `stdin_once` then sees EOF). Resolves (exit code 0, as the kubelet reports an attach) when the container stops
 * or `streams.signal` aborts (detach).
 * @throws Error the server refused the URL, or the runtime could not attach
 */
export async function attachOverSpdy(url: string, streams: ExecStreams): Promise<ExecResult> {
  try {
    return await execOverSpdy(url, streams);
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
 * A connection to `port` inside the sandbox, through the URL of a CRI `PortForward` request for that port
 * (protocol `portforward.k8s.io`). The returned stream's readable side is what the pod sends; ending its writable
 * side half-closes the connection inside the pod, as the provider contract says. A failure to connect (nothing
 * listens) arrives on the error stream after this resolves: it destroys the returned stream with the runtime's
 * message. The session closes with the stream.
 * @throws Error the server refused the URL or a stream
 */
export async function portForwardOverSpdy(url: string, port: number): Promise<Duplex> {
  const session = await upgradeSpdy(url, 'portforward.k8s.io');
  let data: SpdyStream;
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
