/**
 * The kubelet side of `kubectl exec` and `kubectl attach` (remote command protocol over SPDY/3.1).
 *
 * kube-apiserver ≥ 1.36 forwards WebSocket to a kubelet only when the node declares
 * `ExtendWebSocketsToKubelet`; a virtual node does not, so it always receives SPDY/3.1 (docs/architecture.md#kubelet-api-and-streaming):
 * an HTTP upgrade offering `X-Stream-Protocol-Version` v5…v1, then one SPDY stream per `streamtype`
 * (error, stdin, stdout, stderr unless tty, resize when tty). We answer `v4.channel.k8s.io`:
 * - it is what the real kubelet answers: its SPDY path supports v4, v3, v2, v1 and never v5;
 * - v4 is the first version whose error stream carries a `metav1.Status` with the exit code (v3 sends
 *   plain text and `kubectl` cannot tell the exit code), and v3 already brought terminal resizing;
 * - v5 only adds a CLOSE signal, which WebSocket needs to half-close stdin; SPDY has a FIN per stream,
 *   and client-go treats SPDY v5 exactly as v4. Answering v5 would add nothing and differ from kubelets.
 *
 * The command itself is pluggable: {@link serveRemoteCommand} takes a handler (usually
 * `streams => provider.exec(key, container, command, streams)`) and turns its result into the final
 * status on the error stream. Authentication and authorisation happen before, in the kubelet API server.
 */
import type { IncomingMessage } from 'node:http';
import { Readable, Writable, type Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import { isNotFound, type ExecResult, type ExecStreams, type TerminalSize } from '../../providers/types.ts';
import { RstStatus, SpdySession, type SpdyStream } from '../../shared/spdy/spdy.ts';

/** The remote command subprotocol this kubelet speaks (see the module comment for why v4). */
export const REMOTE_COMMAND_PROTOCOL = 'v4.channel.k8s.io';

/** What the client asked for, from the `/exec` or `/attach` query string. */
export interface RemoteCommandOptions {
  /** The command (`command=` repeated); empty for attach. */
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** A request the kubelet refuses before upgrading, with the HTTP status to answer. */
export class RemoteCommandRequestError extends Error {
  override readonly name = 'RemoteCommandRequestError';
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/**
 * Reads `command`, `input`, `output`, `error` and `tty` as the kubelet does: `tty` drops `stderr`
 * (a terminal has one output), and at least one of stdin/stdout/stderr is required.
 * @throws RemoteCommandRequestError (400) when no stream is requested
 */
export function parseRemoteCommandQuery(query: URLSearchParams): RemoteCommandOptions {
  const flag = (name: string) => query.get(name) === '1';
  const tty = flag('tty');
  const options = {
    command: query.getAll('command'),
    stdin: flag('input'),
    stdout: flag('output'),
    stderr: flag('error') && !tty,
    tty,
  };
  if (!options.stdin && !options.stdout && !options.stderr) {
    throw new RemoteCommandRequestError(400, 'you must specify at least 1 of stdin, stdout, stderr');
  }
  return options;
}

/** Runs the command once the streams are connected; its exit code becomes the final status. */
export type RemoteCommandHandler = (streams: ExecStreams) => Promise<ExecResult>;

/** Timings and hooks of {@link serveRemoteCommand}. */
export interface ServeRemoteCommandOptions {
  /** How long the client may take to open its streams (kubelet default: 30 s). */
  streamCreationTimeoutMs?: number;
  /** Close a connection with no traffic for this long (kubelet's streamingConnectionIdleTimeout: 4 h). */
  idleTimeoutMs?: number;
  /** Errors that do not reach the client (a stream write after it left, a handler failure), for logging. */
  onError?: (error: Error) => void;
}

/** How a remote command session ended. */
export interface RemoteCommandOutcome {
  /** The negotiated protocol; absent when the upgrade was refused. */
  protocol?: string;
  /** The command's exit code, when the handler returned one. */
  exitCode?: number;
  /** Why the session failed (refused upgrade, stream timeout, handler error). */
  error?: Error;
}

/** The final `metav1.Status` written on the error stream (v4): what `kubectl` turns into its exit code. */
export interface RemoteCommandStatus {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes: { reason: string; message: string }[] };
}

/** Maps the handler's result (or error) to the status the kubelet writes on the error stream. */
export function remoteCommandStatus(result: ExecResult | { error: unknown }): RemoteCommandStatus {
  if ('exitCode' in result) {
    if (result.exitCode === 0) return { metadata: {}, status: 'Success' };
    return {
      metadata: {},
      status: 'Failure',
      message: `command terminated with non-zero exit code: exit status ${result.exitCode}`,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: String(result.exitCode) }] },
    };
  }
  const message = result.error instanceof Error ? result.error.message : String(result.error);
  if (isNotFound(result.error))
    return { metadata: {}, status: 'Failure', message, reason: 'NotFound', code: 404 };
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: error executing command in container: ${message}`,
    reason: 'InternalError',
    code: 500,
  };
}

/**
 * Answers a non-upgraded error on a raw upgrade socket (Node hands `upgrade` requests over without a
 * ServerResponse), then closes it. Also for the kubelet API's 401/403 on exec requests.
 */
export function writeUpgradeError(
  socket: Duplex,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  // The caller may not have one; a peer that resets while this is written must not crash the process.
  if (socket.listenerCount('error') === 0) socket.on('error', () => {});
  const body = Buffer.from(message + '\n');
  const reason =
    { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 501: 'Not Implemented' }[
      status
    ] ?? 'Error';
  const lines = [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${body.length}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), body]));
  // A client that never closes its side would hold the half-open socket for ever. Like Go's net/http
  // (close-write, then close after a short grace so the answer is not lost to a reset), close it shortly.
  const timer = setTimeout(() => socket.destroy(), UPGRADE_ERROR_LINGER_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}

/** How long a refused upgrade's socket stays half-open for the client to read the answer and close. */
const UPGRADE_ERROR_LINGER_MS = 500;

/**
 * Chooses the protocol from the client's `X-Stream-Protocol-Version` offers (client order, like
 * `httpstream.Handshake`). @throws RemoteCommandRequestError 400 without SPDY upgrade headers or offers,
 * 403 (with `X-Accepted-Stream-Protocol-Versions`) when no offer is {@link REMOTE_COMMAND_PROTOCOL}
 */
export function negotiateRemoteCommand(req: IncomingMessage): string {
  return negotiateSpdy(req, REMOTE_COMMAND_PROTOCOL);
}

/**
 * `httpstream.Handshake` for one server protocol (`protocol`): the SPDY/3.1 upgrade headers and an offer of it.
 * @throws RemoteCommandRequestError 400 without upgrade headers or offers, 403 when no offer is `protocol`
 */
export function negotiateSpdy(req: IncomingMessage, protocol: string): string {
  const connection = (req.headers.connection ?? '').toLowerCase();
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  if (!connection.includes('upgrade') || !upgrade.includes('spdy/3.1')) {
    throw new RemoteCommandRequestError(
      400,
      'unable to upgrade: missing upgrade headers in request (SPDY/3.1)',
    );
  }
  const offers = (req.headersDistinct['x-stream-protocol-version'] ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  if (offers.length === 0) {
    throw new RemoteCommandRequestError(
      400,
      'unable to upgrade: header X-Stream-Protocol-Version is missing',
    );
  }
  if (!offers.includes(protocol)) {
    throw new RemoteCommandRequestError(
      403,
      `unable to upgrade: unable to negotiate protocol: client supports [${offers.join(' ')}], server accepts [${protocol}]`,
      { 'X-Accepted-Stream-Protocol-Versions': protocol },
    );
  }
  return protocol;
}

type StreamType = 'error' | 'stdin' | 'stdout' | 'stderr' | 'resize';

/**
 * Serves one exec/attach request from Node's `upgrade` event: negotiates, answers 101, waits for the
 * client's streams, runs `handler`, writes the final status on the error stream and closes. Never
 * throws; the outcome says how it ended.
 */
export async function serveRemoteCommand(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: RemoteCommandOptions,
  handler: RemoteCommandHandler,
  serveOptions: ServeRemoteCommandOptions = {},
): Promise<RemoteCommandOutcome> {
  const onError = serveOptions.onError ?? (() => {});
  // Node drops its socket error listener on upgrade: a reset before the SPDY session listens must not
  // become an uncaught exception.
  if (socket.listenerCount('error') === 0) socket.on('error', onError);
  let protocol: string;
  try {
    protocol = negotiateRemoteCommand(req);
  } catch (err) {
    const e = err as RemoteCommandRequestError;
    writeUpgradeError(socket, e.status, e.message, e.headers);
    return { error: e };
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
      `X-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
  );
  const session = new SpdySession(socket, { initialData: head });
  const idle = serveOptions.idleTimeoutMs ?? 4 * 3600_000;
  if ('setTimeout' in socket && typeof socket.setTimeout === 'function') {
    socket.setTimeout(idle, () => session.destroy(new Error(`no traffic for ${idle} ms`)));
  }
  const abort = new AbortController();
  session.once('close', () => abort.abort(new Error('client disconnected')));

  let streams: Partial<Record<StreamType, SpdyStream>>;
  try {
    streams = await waitForStreams(session, options, serveOptions.streamCreationTimeoutMs ?? 30_000);
  } catch (err) {
    session.destroy();
    return { protocol, error: err as Error };
  }
  for (const stream of Object.values(streams)) stream.on('error', onError);

  const execStreams: ExecStreams = {
    stdout: streams.stdout ?? discard(),
    tty: options.tty,
    signal: abort.signal,
    ...(streams.stdin && { stdin: streams.stdin }),
    ...(streams.stderr && { stderr: streams.stderr }),
    ...(streams.resize && { resize: terminalSizes(streams.resize, onError) }),
  };
  // Output streams carry nothing from the client, but draining them lets a FIN from it be seen.
  for (const t of ['stdout', 'stderr', 'error'] as const) streams[t]?.resume();

  let outcome: RemoteCommandOutcome;
  let status: RemoteCommandStatus;
  try {
    const result = await handler(execStreams);
    outcome = { protocol, exitCode: result.exitCode };
    status = remoteCommandStatus(result);
  } catch (err) {
    onError(err as Error);
    outcome = { protocol, error: err as Error };
    status = remoteCommandStatus({ error: err });
  }
  // The client stops copying stdout/stderr at their FIN and only then reads the status: end them first.
  await Promise.all([streams.stdout, streams.stderr].map((s) => s && endAndWait(s)));
  if (streams.error && !abort.signal.aborted) await endAndWait(streams.error, JSON.stringify(status));
  // The client closes the connection once it has the status; one that lingers is cut off.
  await session.close({ timeoutMs: 10_000 });
  return outcome;
}

/** Waits until every stream the options call for has been opened (and replied to). */
function waitForStreams(
  session: SpdySession,
  options: RemoteCommandOptions,
  timeoutMs: number,
): Promise<Partial<Record<StreamType, SpdyStream>>> {
  const expected = new Set<StreamType>(['error']);
  if (options.stdin) expected.add('stdin');
  if (options.stdout) expected.add('stdout');
  if (options.stderr) expected.add('stderr');
  if (options.tty) expected.add('resize');
  const got: Partial<Record<StreamType, SpdyStream>> = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error('timed out waiting for client to create streams')),
      timeoutMs,
    );
    const onClose = () => done(new Error('connection closed before the client created its streams'));
    const onStream = (stream: SpdyStream) => {
      const type = stream.headers.streamtype as StreamType;
      // An unknown or repeated stream type is refused so the client fails fast instead of waiting.
      if (!expected.has(type) || got[type]) return stream.reset(RstStatus.RefusedStream);
      stream.reply();
      got[type] = stream;
      if (Object.keys(got).length === expected.size) done();
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      session.off('stream', onStream).off('close', onClose);
      if (err) reject(err);
      else resolve(got);
    };
    session.on('stream', onStream).on('close', onClose);
  });
}

/** Decodes the resize stream (`{"Width":80,"Height":24}` objects, one after another) into sizes. */
function terminalSizes(stream: SpdyStream, onError: (error: Error) => void): AsyncIterable<TerminalSize> {
  const sizes = new Readable({ objectMode: true, read() {} });
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    pending += text;
    let end;
    // Objects are flat (no nested braces, no braces in strings), so the next `}` closes one.
    while ((end = pending.indexOf('}')) >= 0) {
      const json = pending.slice(pending.indexOf('{'), end + 1);
      pending = pending.slice(end + 1);
      try {
        const { Width, Height } = JSON.parse(json) as { Width?: number; Height?: number };
        if (Number.isInteger(Width) && Number.isInteger(Height)) sizes.push({ width: Width, height: Height });
      } catch (err) {
        onError(err as Error);
      }
    }
  });
  stream.on('end', () => sizes.push(null));
  stream.on('close', () => sizes.push(null));
  return sizes;
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() });
}

/** Ends a stream (after `last`, if given) and waits until its FIN is handed to the socket. */
async function endAndWait(stream: Writable, last?: string): Promise<void> {
  if (!stream.writableEnded) stream.end(last);
  await finished(stream, { readable: false }).catch(() => undefined);
}
