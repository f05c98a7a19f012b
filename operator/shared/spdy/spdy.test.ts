import net from 'node:net';
import { once } from 'node:events';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { SpdySession, type SpdyStream } from './spdy.ts';
import {
  decodeHeaderBlock,
  encodeGoAway,
  encodeHeaderBlock,
  encodeSynStream,
  HeaderZlib,
  parseFrame,
  SPDY3_DICTIONARY,
  type SpdyFrame,
} from './spdy-frames.ts';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((fn) => fn()));

/** A listening loopback server; resolves with the accepted server-side socket and the client socket. */
async function socketPair(
  clientOptions: { allowHalfOpen?: boolean } = {},
): Promise<{ serverSocket: net.Socket; clientSocket: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const clientSocket = net.connect({ port, host: '127.0.0.1', ...clientOptions });
  const [serverSocket] = await accepted;
  cleanups.push(() => {
    clientSocket.destroy();
    serverSocket.destroy();
    server.close();
  });
  return { serverSocket, clientSocket };
}

async function sessionPair(): Promise<{ server: SpdySession; client: SpdySession }> {
  const { serverSocket, clientSocket } = await socketPair();
  return { server: new SpdySession(serverSocket), client: new SpdySession(clientSocket, { role: 'client' }) };
}

function readAll(stream: SpdyStream): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return once(stream, 'end').then(() => Buffer.concat(chunks).toString());
}

const nextStream = (session: SpdySession) => once(session, 'stream').then(([s]) => s as SpdyStream);

describe('SpdySession', () => {
  it('hands a client-opened stream to the server with its headers, and carries data both ways to FIN', async () => {
    const { server, client } = await sessionPair();
    const accepted = nextStream(server);
    const clientStream = client.openStream({ streamType: 'stdin' });
    const serverStream = await accepted;
    expect(serverStream.headers.streamtype).toBe('stdin');
    expect(serverStream.id).toBe(1);

    const response = once(clientStream, 'response');
    serverStream.reply();
    await response;

    const toServer = readAll(serverStream);
    const toClient = readAll(clientStream);
    clientStream.end('hello from the client');
    serverStream.end('hello from the server');
    expect(await toServer).toBe('hello from the client');
    expect(await toClient).toBe('hello from the server');
  });

  it('still delivers what the peer sent just before it closed the connection', async () => {
    const { serverSocket, clientSocket } = await socketPair();
    const server = new SpdySession(serverSocket);
    const client = new SpdySession(clientSocket, { role: 'client' });
    const received = new Promise<string>((resolve) =>
      server.on('stream', (s) => {
        s.reply();
        void readAll(s).then(resolve);
      }),
    );
    const stdin = client.openStream({ streamType: 'stdin' });
    stdin.end('last words');
    await once(stdin, 'finish'); // SYN_STREAM, DATA and FIN are written
    clientSocket.end(); // EOF arrives while the server may still be inflating the SYN_STREAM headers
    expect(await received).toBe('last words');
  });

  it('echoes the client pings that keep the apiserver connection alive', async () => {
    const { client } = await sessionPair();
    const rtt = await client.ping();
    expect(rtt).toBeGreaterThanOrEqual(0);
  });

  it('delivers a large write intact, split into frames', async () => {
    const { server, client } = await sessionPair();
    const accepted = nextStream(server);
    const clientStream = client.openStream({ streamType: 'stdout' });
    const serverStream = await accepted;
    const payload = Buffer.alloc(1024 * 1024 + 7, 'x');
    const received = readAll(clientStream);
    serverStream.end(payload);
    expect((await received).length).toBe(payload.length);
  });

  it('holds data for a slow reader without losing or reordering any', async () => {
    const { server, client } = await sessionPair();
    const accepted = nextStream(server);
    const clientStream = client.openStream({ streamType: 'stdin' });
    const serverStream = await accepted;
    serverStream.reply();
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}\n`);
    for (const line of lines) clientStream.write(line.repeat(50));
    clientStream.end();
    await new Promise((r) => setTimeout(r, 50)); // nobody reads meanwhile: the socket is paused
    expect(await readAll(serverStream)).toBe(lines.map((l) => l.repeat(50)).join(''));
  });

  it('refuses streams when nobody listens, and the opener sees its stream closed', async () => {
    const { serverSocket, clientSocket } = await socketPair();
    new SpdySession(serverSocket); // no 'stream' listener
    const client = new SpdySession(clientSocket, { role: 'client' });
    const stream = client.openStream({ streamType: 'error' });
    await once(stream, 'close');
    expect(stream.destroyed).toBe(true);
  });

  it('tells the other side when a stream is abandoned', async () => {
    const { server, client } = await sessionPair();
    const accepted = nextStream(server);
    const clientStream = client.openStream({ streamType: 'stdout' });
    const serverStream = await accepted;
    serverStream.reply();
    await once(clientStream, 'response');
    clientStream.destroy();
    await once(serverStream, 'close');
    expect(server.streamCount).toBe(0);
  });

  it('closes with GOAWAY, and the peer learns no more streams are coming', async () => {
    const { server, client } = await sessionPair();
    const goaway = once(client, 'goaway');
    const closed = once(client, 'close');
    await server.close();
    expect((await goaway)[1]).toBe(0);
    expect((await closed)[0]).toBeUndefined();
  });

  it('still ends the connection on close after the peer has said GOAWAY but kept its socket open', async () => {
    const { serverSocket, clientSocket } = await socketPair({ allowHalfOpen: true });
    const server = new SpdySession(serverSocket);
    const peerGoAway = once(server, 'goaway');
    clientSocket.write(encodeGoAway(0, 0));
    await peerGoAway;
    const ended = once(clientSocket.resume(), 'end');
    const closed = server.close({ timeoutMs: 200 });
    await ended; // our GOAWAY and FIN reached the peer
    await closed; // and the lingering peer was cut off after the timeout
    expect(serverSocket.destroyed).toBe(true);
  });

  it('ends the session on a frame it cannot speak (SPDY/2), reporting a protocol error', async () => {
    const { serverSocket, clientSocket } = await socketPair();
    const server = new SpdySession(serverSocket);
    const closed = once(server, 'close');
    clientSocket.write(Buffer.from('8002000100000000', 'hex'));
    const [error] = await closed;
    expect(String(error)).toMatch(/unsupported SPDY version 2/);
  });

  it('refuses a SYN_STREAM whose headers inflate past 1 MiB: GOAWAY(PROTOCOL_ERROR), closed, no stream', async () => {
    const { serverSocket, clientSocket } = await socketPair();
    const server = new SpdySession(serverSocket);
    const streams: SpdyStream[] = [];
    server.on('stream', (s) => streams.push(s));
    const closed = once(server, 'close');
    const received: Buffer[] = [];
    clientSocket.on('data', (chunk: Buffer) => received.push(chunk));
    const clientClosed = once(clientSocket, 'close');
    // 16 MiB of one header value in a 16 KiB frame.
    const bomb = zlib.deflateSync(encodeHeaderBlock({ streamtype: 'a'.repeat(16 << 20) }), {
      dictionary: SPDY3_DICTIONARY,
      level: 9,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    clientSocket.write(encodeSynStream(1, 0, bomb));
    const [error] = await closed;
    expect(String(error)).toMatch(/header block exceeds 1048576 bytes/);
    await clientClosed;
    expect(parseFrame(Buffer.concat(received))?.frame).toEqual({
      type: 'goaway',
      lastGoodStreamId: 0,
      status: 1,
    });
    expect(streams).toEqual([]);
  });

  it('serves the exact bytes Go spdystream sends: two streams, data with FIN, and a ping it echoes', async () => {
    const { serverSocket, clientSocket } = await socketPair();
    const server = new SpdySession(serverSocket);
    const streams: SpdyStream[] = [];
    server.on('stream', (s) => {
      s.reply();
      streams.push(s);
    });
    const replies: SpdyFrame[] = [];
    let buf = Buffer.alloc(0);
    clientSocket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let parsed;
      while ((parsed = parseFrame(buf))) {
        replies.push(parsed.frame);
        buf = buf.subarray(parsed.size);
      }
    });
    clientSocket.write(
      Buffer.from(
        '80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff' +
          '800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff00000003010000026869' +
          '800300060000000400000001',
        'hex',
      ),
    );
    await expect.poll(() => replies.length).toBe(3);
    expect(streams.map((s) => s.headers.streamtype)).toEqual(['error', 'stdout']);
    expect(await readAll(streams[1]!)).toBe('hi');
    expect(replies.map((f) => f.type)).toEqual(['syn_reply', 'syn_reply', 'ping']);
    expect(replies[2]).toEqual({ type: 'ping', id: 1 });
    // Our replies use our own zlib context; a Go-like reader decodes them in order.
    const inflate = new HeaderZlib('inflate');
    for (const f of replies.slice(0, 2) as { headerBlock: Buffer }[]) {
      expect(decodeHeaderBlock(await inflate.process(f.headerBlock))).toEqual({});
    }
    inflate.close();
  });
});
