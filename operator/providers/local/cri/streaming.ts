/**
 * Clients of a CRI runtime's streaming server (containerd serves it on 127.0.0.1): the URL that the CRI `Exec`,
 * `Attach` and `PortForward` calls return is opened here as a WebSocket and joined to the provider's streams.
 *
 * The server is k8s.io/cri-streaming. Its WebSocket path speaks `v4.channel.k8s.io` (and the older
 * `channel.k8s.io`), never v5: every binary message starts with a channel byte. For exec and attach: 0 stdin,
 * 1 stdout, 2 stderr, 3 error (at the end a `metav1.Status` JSON that carries the exit code), 4 resize
 * (`{"Width":W,"Height":H}`). For port-forward the ports are those of the CRI request: per port a data channel
 * (2i) and an error channel (2i+1), and the server's first message on each is the port, 2 bytes little-endian.
 * The server closes the WebSocket when the command ends (after the status) or the forwarded connection closes.
 *
 * What v4 over WebSocket cannot say: that stdin ended (v5's close signal is what says it, and this server does not
 * offer v5), nor that the forwarded connection's writer is done. So a command that reads stdin to its end
 * (`kubectl cp`, `kubectl exec -i ... < file`) waits for input for ever here (measured against containerd: `cat`
 * never ends), and ending a forward's writable side does not half-close the connection inside the pod. The same
 * server's SPDY/3.1 path has both (a FIN per stream): it is what a kubelet hands through, and what these clients
 * should speak once the project's SPDY codec (operator/virtualnode/kubelet/spdy*.ts) is shared where a provider
 * may import it.
 *
 * Each function takes only a URL: the CRI call that makes it is the caller's (see {@link StreamingUrls}). A URL is
 * good for one connection and expires after a minute unused (the server's request cache).
 */
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
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
