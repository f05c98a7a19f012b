import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PORT_FORWARD_PROTOCOL,
  invalidPortForwardStream,
  requestIdOf,
  servePortForward,
  type PortForwardOutcome,
} from './port-forward.ts';
import { SpdySession, type SpdyStream } from '../../shared/spdy/spdy.ts';

/** Reads a stream to its end (or reset) as text. */
function text(stream: Duplex): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = () => resolve(Buffer.concat(chunks).toString());
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', done).once('close', done);
  });
}

/** Upgrades a connection as kube-apiserver does towards a kubelet for port-forward; the client session. */
async function connect(port: number, protocols = [PORT_FORWARD_PROTOCOL]): Promise<SpdySession | string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.write(
    [
      'POST /portForward/shop/web-1 HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      ...protocols.map((p) => `X-Stream-Protocol-Version: ${p}`),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
  const head = await new Promise<{ status: number; rest: Buffer; raw: string }>((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const raw = buf.toString();
      resolve({ status: Number(raw.split(' ')[1]), rest: buf.subarray(end + 4), raw });
    };
    socket.on('data', onData);
  });
  if (head.status !== 101) return head.raw;
  return new SpdySession(socket, { role: 'client', initialData: head.rest });
}

/** Opens the stream pair of one forwarded connection, as client-go does: error (half-closed), then data. */
async function openPair(
  session: SpdySession,
  port: number | string,
  requestID?: string,
): Promise<{ error: SpdyStream; data: SpdyStream }> {
  const headers = (streamType: string) => ({
    streamType,
    port: String(port),
    ...(requestID !== undefined && { requestID }),
  });
  const error = session.openStream(headers('error'));
  await new Promise((resolve) => error.once('response', resolve));
  error.end();
  const data = session.openStream(headers('data'));
  await new Promise((resolve) => data.once('response', resolve));
  return { error, data };
}

describe('port-forward over SPDY', () => {
  let server: Server;
  let port: number;
  const outcomes: PortForwardOutcome[] = [];
  const asked: number[] = [];

  beforeAll(async () => {
    server = createServer();
    server.on('upgrade', (req, socket, head) => {
      void servePortForward(
        req,
        socket,
        head,
        async (p) => {
          asked.push(p);
          // An echo on 8080; nothing listens elsewhere.
          if (p !== 8080) throw new Error(`dial tcp 10.253.0.2:${p}: connect: connection refused`);
          return new PassThrough();
        },
        { podName: 'web-1', uid: 'u1' },
      ).then((o) => outcomes.push(o));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it('forwards each stream pair to the port it names, concurrently, until the client ends it', async () => {
    const session = (await connect(port)) as SpdySession;
    const [a, b] = await Promise.all([openPair(session, 8080, '0'), openPair(session, 8080, '1')]);
    const replies = [text(a.data), text(b.data)];
    a.data.end('hello ');
    b.data.end('world');
    expect(await Promise.all(replies)).toEqual(['hello ', 'world']);
    // A connection that worked ends its error stream empty.
    expect(await text(a.error)).toBe('');
    await session.close();
    await expect.poll(() => outcomes.length).toBe(1);
    expect(outcomes[0]).toMatchObject({ protocol: PORT_FORWARD_PROTOCOL, connections: 2 });
  });

  it('writes the kubelet’s message on the error stream when the pod’s port cannot be reached', async () => {
    const session = (await connect(port)) as SpdySession;
    const { error, data } = await openPair(session, 81, '0');
    expect(await text(error)).toBe(
      'error forwarding port 81 to pod web-1, uid u1: dial tcp 10.253.0.2:81: connect: connection refused',
    );
    await text(data);
    await session.close();
  });

  it('pairs the streams of clients too old to send requestID by their stream ids', async () => {
    const session = (await connect(port)) as SpdySession;
    const { data } = await openPair(session, 8080);
    const reply = text(data);
    data.end('old client');
    expect(await reply).toBe('old client');
    await session.close();
  });

  it('refuses an upgrade that does not offer portforward.k8s.io', async () => {
    const answer = await connect(port, ['v4.channel.k8s.io']);
    expect(answer).toMatch(/^HTTP\/1.1 403/);
    expect(answer).toContain('X-Accepted-Stream-Protocol-Versions: portforward.k8s.io');
  });

  it('checks the stream headers as the kubelet does', () => {
    expect(invalidPortForwardStream({ streamtype: 'data', port: '80' })).toBeUndefined();
    expect(invalidPortForwardStream({ streamtype: 'data' })).toBe('"port" header is required');
    expect(invalidPortForwardStream({ streamtype: 'data', port: 'x' })).toBe('unable to parse "x" as a port');
    expect(invalidPortForwardStream({ streamtype: 'data', port: '70000' })).toMatch(/unable to parse/);
    expect(invalidPortForwardStream({ streamtype: 'data', port: '0' })).toBe('port "0" must be > 0');
    expect(invalidPortForwardStream({ port: '80' })).toBe('"streamType" header is required');
    expect(invalidPortForwardStream({ streamtype: 'stdin', port: '80' })).toBe('invalid stream type "stdin"');
    expect(requestIdOf({ id: 5, headers: { streamtype: 'data', requestid: '7' } })).toBe('7');
    expect(requestIdOf({ id: 3, headers: { streamtype: 'error' } })).toBe('3');
    expect(requestIdOf({ id: 5, headers: { streamtype: 'data' } })).toBe('3');
  });
});
