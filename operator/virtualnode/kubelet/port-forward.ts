/**
 * The kubelet side of `kubectl port-forward` (protocol `portforward.k8s.io` over SPDY/3.1), as the kubelet's
 * `pkg/kubelet/cri/streaming/portforward` serves it: one upgraded connection per `kubectl port-forward`, and per
 * forwarded TCP connection a pair of streams opened by the client, an `error` stream and a `data` stream, both
 * carrying the headers `streamType`, `port` and `requestID`. When both streams of a request have arrived, the
 * data stream is joined to a connection to that port inside the pod (the provider's `portForward`); a failure is
 * written as text on the error stream (`error forwarding port <p> to pod <pod>, uid <uid>: <why>`), which kubectl
 * prints. kube-apiserver translates kubectl's WebSocket to SPDY towards a node, so SPDY is all a node speaks.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import { RemoteCommandRequestError, negotiateSpdy, writeUpgradeError } from './exec-stream.ts';
import { RstStatus, SpdySession, type SpdyStream } from '../../shared/spdy/spdy.ts';

/** The only port-forward subprotocol there is. */
export const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';

/** Opens a connection to `port` inside the pod; rejects when it cannot (nothing listens, pod gone). */
export type PortForwarder = (port: number) => Promise<Duplex>;

/** Names and timings of {@link servePortForward}. */
export interface ServePortForwardOptions {
  /** The pod, for the error messages. */
  podName: string;
  uid: string;
  /** How long the second stream of a pair may take (kubelet's streamCreationTimeout: 30 s). */
  streamCreationTimeoutMs?: number;
  /** Close a connection with no traffic for this long (kubelet's streamingConnectionIdleTimeout: 4 h). */
  idleTimeoutMs?: number;
  /** Errors that do not reach the client, for logging. */
  onError?: (error: Error) => void;
}

/** How a port-forward session ended. */
export interface PortForwardOutcome {
  /** The negotiated protocol; absent when the upgrade was refused. */
  protocol?: string;
  /** Forwarded connections (stream pairs) served. */
  connections: number;
  error?: Error;
}

/**
 * Why a stream cannot be part of a forward, as the kubelet's `httpStreamReceived` checks them; undefined when it
 * can. Such a stream is refused (reset), not paired.
 */
export function invalidPortForwardStream(headers: Record<string, string>): string | undefined {
  const port = headers.port;
  if (!port) return '"port" header is required';
  if (!/^\d+$/.test(port) || Number(port) > 65535) return `unable to parse "${port}" as a port`;
  if (Number(port) < 1) return `port "${port}" must be > 0`;
  const type = headers.streamtype;
  if (!type) return '"streamType" header is required';
  if (type !== 'error' && type !== 'data') return `invalid stream type "${type}"`;
  return undefined;
}

/**
 * The request a stream belongs to: its `requestID` header, or for clients too old to send one the kubelet's
 * best effort: an error stream and the data stream after it have consecutive odd ids (n and n+2).
 */
export function requestIdOf(stream: { id: number; headers: Record<string, string> }): string {
  const id = stream.headers.requestid;
  if (id) return id;
  return String(stream.headers.streamtype === 'data' ? stream.id - 2 : stream.id);
}

interface Pair {
  error?: SpdyStream;
  data?: SpdyStream;
  timer: NodeJS.Timeout;
}

/**
 * Serves one port-forward connection from Node's `upgrade` event: negotiates, answers 101, then forwards every
 * stream pair the client opens until it closes the connection. Never throws; the outcome says how it ended.
 */
export async function servePortForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  forward: PortForwarder,
  options: ServePortForwardOptions,
): Promise<PortForwardOutcome> {
  const onError = options.onError ?? (() => {});
  if (socket.listenerCount('error') === 0) socket.on('error', onError);
  let protocol: string;
  try {
    protocol = negotiateSpdy(req, PORT_FORWARD_PROTOCOL);
  } catch (err) {
    const e = err as RemoteCommandRequestError;
    writeUpgradeError(socket, e.status, e.message, e.headers);
    return { connections: 0, error: e };
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
      `X-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
  );
  const session = new SpdySession(socket, { initialData: head });
  const idle = options.idleTimeoutMs ?? 4 * 3600_000;
  if ('setTimeout' in socket && typeof socket.setTimeout === 'function') {
    socket.setTimeout(idle, () => session.destroy(new Error(`no traffic for ${idle} ms`)));
  }
  const timeout = options.streamCreationTimeoutMs ?? 30_000;
  const pairs = new Map<string, Pair>();
  const running = new Set<Promise<void>>();
  let connections = 0;

  session.on('stream', (stream: SpdyStream) => {
    if (invalidPortForwardStream(stream.headers)) return stream.reset(RstStatus.RefusedStream);
    const type = stream.headers.streamtype as 'error' | 'data';
    const id = requestIdOf(stream);
    let pair = pairs.get(id);
    if (pair?.[type]) return stream.reset(RstStatus.RefusedStream);
    stream.on('error', onError);
    stream.reply();
    if (!pair) {
      const timer = setTimeout(() => {
        // The other stream never came: say so on the error stream (if that is the one we have) and give up.
        pairs.delete(id);
        const p = pair!;
        if (p.error) p.error.end(`timed out waiting for streams of request ${id}`);
        p.data?.reset(RstStatus.Cancel);
      }, timeout);
      timer.unref();
      pair = { timer };
      pairs.set(id, pair);
    }
    pair[type] = stream;
    if (!pair.error || !pair.data) return;
    clearTimeout(pair.timer);
    pairs.delete(id);
    connections += 1;
    const done = forwardPair(pair.error, pair.data, forward, options).catch(onError);
    running.add(done);
    void done.finally(() => running.delete(done));
  });

  await new Promise<void>((resolve) => session.once('close', () => resolve()));
  for (const pair of pairs.values()) clearTimeout(pair.timer);
  await Promise.all(running);
  return { protocol, connections };
}

/** Joins one data stream to a connection inside the pod; failures go to the error stream as text. */
async function forwardPair(
  error: SpdyStream,
  data: SpdyStream,
  forward: PortForwarder,
  options: ServePortForwardOptions,
): Promise<void> {
  // The client half-closes the error stream at once; reading lets its FIN be seen.
  error.resume();
  const port = Number(data.headers.port);
  let target: Duplex;
  try {
    target = await forward(port);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    error.end(`error forwarding port ${port} to pod ${options.podName}, uid ${options.uid}: ${why}`);
    data.end();
    await Promise.all([finished(error).catch(() => {}), finished(data).catch(() => {})]);
    return;
  }
  // Both directions, each with its own end: the client's FIN half-closes the pod connection, and the pod
  // closing its side ends the data stream, as the kubelet's copy loops do.
  target.on('error', (err: Error) => {
    options.onError?.(err);
    data.destroy();
  });
  data.on('close', () => target.destroy());
  data.pipe(target);
  target.pipe(data);
  await Promise.all([finished(target).catch(() => {}), finished(data).catch(() => {})]);
  error.end();
}
