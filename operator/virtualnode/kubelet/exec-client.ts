/**
 * A minimal remote command client over SPDY/3.1 — what kube-apiserver does towards a kubelet for
 * `kubectl exec` — for tests and for poking a virtual node's kubelet API directly. It opens the streams
 * in client-go's order (error, stdin, stdout, stderr, resize), waits for each SYN_REPLY, sends stdin and
 * resizes, and collects output and the final status. Not used by the operator at run time.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { TerminalSize } from '../../providers/types.ts';
import type { RemoteCommandStatus } from './exec-stream.ts';
import { SpdySession, type SpdyStream } from '../../shared/spdy/spdy.ts';

/** The offers kube-apiserver 1.36 sends, most preferred first. */
export const APISERVER_PROTOCOL_OFFERS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
];

/** Where to connect and what to send. */
export interface RemoteCommandClientOptions {
  host?: string;
  port: number;
  /** Path with query, e.g. `/exec/default/web/app?command=echo&command=hi&output=1&error=1`. */
  path: string;
  /** HTTP method of the upgrade request (default POST, as kube-apiserver sends; WebSocket clients use GET). */
  method?: string;
  /** Protocol offers (default {@link APISERVER_PROTOCOL_OFFERS}). */
  protocols?: string[];
  /** Extra request headers (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** Connect with TLS using these options. */
  tls?: tls.ConnectionOptions;
  /** Sent on the stdin stream, then FIN (the query must say `input=1`). */
  stdin?: string | Buffer;
  /** Sent on the resize stream after the streams are open (the query must say `tty=1`). */
  resize?: TerminalSize[];
}

/** What came back. */
export interface RemoteCommandClientResult {
  /** HTTP status of the upgrade answer (101 on success). */
  httpStatus: number;
  /** The negotiated protocol (`X-Stream-Protocol-Version` of the answer). */
  protocol?: string;
  /** The body of a refused upgrade. */
  body?: string;
  stdout: string;
  stderr: string;
  /** The status read from the error stream. */
  status?: RemoteCommandStatus;
  /** The exit code as kubectl derives it: 0 on Success, the ExitCode cause on NonZeroExitCode. */
  exitCode?: number;
}

/** Runs one remote command against a kubelet-like endpoint and collects the result. */
export async function runRemoteCommand(
  options: RemoteCommandClientOptions,
): Promise<RemoteCommandClientResult> {
  const host = options.host ?? '127.0.0.1';
  const socket: Duplex = options.tls
    ? tls.connect({ host, port: options.port, ...options.tls })
    : net.connect({ host, port: options.port });
  const request = [
    `${options.method ?? 'POST'} ${options.path} HTTP/1.1`,
    `Host: ${host}:${options.port}`,
    'Connection: Upgrade',
    'Upgrade: SPDY/3.1',
    ...(options.protocols ?? APISERVER_PROTOCOL_OFFERS).map((p) => `X-Stream-Protocol-Version: ${p}`),
    ...Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    'Content-Length: 0',
  ];
  socket.write(request.join('\r\n') + '\r\n\r\n');
  const { statusCode, headers, rest } = await readResponseHead(socket);
  if (statusCode !== 101) {
    const body = await collect(socket, rest);
    return { httpStatus: statusCode, body, stdout: '', stderr: '' };
  }
  const query = new URL(options.path, 'http://x').searchParams;
  const tty = query.get('tty') === '1';
  const session = new SpdySession(socket, { role: 'client', initialData: rest });
  const open = async (type: string) => {
    const stream = session.openStream({ streamType: type });
    await new Promise((resolve) => stream.once('response', resolve));
    return stream;
  };
  const error = await open('error');
  const stdin = query.get('input') === '1' ? await open('stdin') : undefined;
  const stdout = query.get('output') === '1' ? await open('stdout') : undefined;
  const stderr = query.get('error') === '1' && !tty ? await open('stderr') : undefined;
  const resize = tty ? await open('resize') : undefined;

  for (const size of options.resize ?? []) {
    resize?.write(JSON.stringify({ Width: size.width, Height: size.height }) + '\n');
  }
  if (stdin) stdin.end(options.stdin ?? '');
  const [out, err, statusText] = await Promise.all([
    stdout ? collect(stdout) : '',
    stderr ? collect(stderr) : '',
    collect(error),
  ]);
  await session.close();
  const status = statusText ? (JSON.parse(statusText) as RemoteCommandStatus) : undefined;
  return {
    httpStatus: statusCode,
    protocol: headers['x-stream-protocol-version'],
    stdout: out,
    stderr: err,
    status,
    exitCode: exitCodeOf(status),
  };
}

function exitCodeOf(status: RemoteCommandStatus | undefined): number | undefined {
  if (!status) return undefined;
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes.find((c) => c.reason === 'ExitCode');
  return cause ? Number(cause.message) : undefined;
}

/** Reads the HTTP response head; `rest` is what followed it (SPDY frames already sent). */
function readResponseHead(
  socket: Duplex,
): Promise<{ statusCode: number; headers: Record<string, string>; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData).off('error', reject);
      socket.pause();
      const [statusLine = '', ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ statusCode: Number(statusLine.split(' ')[1]), headers, rest: buf.subarray(end + 4) });
    };
    socket.on('data', onData).on('error', reject);
  });
}

/** Reads a stream to its end as UTF-8 (a reset or destroyed stream yields what arrived). */
function collect(stream: Duplex | SpdyStream, first: Buffer = Buffer.alloc(0)): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [first];
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', done).once('close', done);
    stream.resume();
  });
}
