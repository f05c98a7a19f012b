import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import net from 'node:net';
import { Duplex, PassThrough, Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TerminalSize } from '../../types.ts';
import {
  attachOverSpdy,
  attachOverStream,
  execOverSpdy,
  execOverStream,
  exitCodeOf,
  portForwardOverSpdy,
  portForwardOverStream,
  type SpdyClientFactory,
  type SpdyClientSession,
  type SpdyClientStream,
} from './streaming.ts';

/** The members of `ws` the fake server uses (`ws` ships no types). */
interface FakeSocket {
  protocol: string;
  send(data: Buffer): void;
  close(): void;
  on(event: 'message', listener: (data: Buffer) => void): this;
  on(event: 'close', listener: () => void): this;
}
interface FakeServer {
  address(): AddressInfo;
  close(cb: () => void): void;
  clients: Set<{ terminate(): void }>;
  on(event: 'connection', listener: (socket: FakeSocket, req: IncomingMessage) => void): this;
  once(event: 'listening', listener: () => void): this;
}
const { WebSocketServer } = createRequire(import.meta.url)('ws') as {
  WebSocketServer: new (options: {
    host: string;
    port: number;
    handleProtocols: (protocols: Set<string>) => string | false;
    verifyClient: (info: { req: IncomingMessage }) => boolean;
  }) => FakeServer;
};

const frame = (channel: number, data: string | Buffer) =>
  Buffer.concat([Buffer.of(channel), Buffer.from(data)]);
const le16 = (port: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
};
const exitStatus = (code: number) =>
  code === 0
    ? { metadata: {}, status: 'Success' }
    : {
        metadata: {},
        status: 'Failure',
        message: `command terminated with non-zero exit code: exit status ${code}`,
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
      };

/**
 * A fake of the CRI streaming server's WebSocket path (k8s.io/cri-streaming): `v4.channel.k8s.io` only, an empty
 * stdout message once connected, the status on channel 3, then close. What each session does is chosen by the
 * URL's token; `used` answers 404 like a consumed token.
 */
async function fakeStreamingServer(): Promise<{
  url: (path: string) => string;
  resizes: TerminalSize[];
  close: () => Promise<void>;
}> {
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (offers) => (offers.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false),
    verifyClient: ({ req }) => !req.url?.endsWith('/used'),
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const resizes: TerminalSize[] = [];
  server.on('connection', (socket, req) => {
    const token = req.url!.split('/').pop();
    const end = (status: object) => {
      socket.send(frame(3, JSON.stringify(status)));
      socket.close();
    };
    if (req.url!.startsWith('/portforward/')) {
      socket.send(frame(0, le16(8080)));
      socket.send(frame(1, le16(8080)));
      if (token === 'refused') {
        socket.send(
          frame(
            1,
            'error forwarding port 8080 to pod sb1, uid : dial tcp 127.0.0.1:8080: connection refused',
          ),
        );
        return socket.close();
      }
      // An upper-casing echo server that hangs up after "bye".
      socket.on('message', (data) => {
        const text = data.subarray(1).toString();
        socket.send(frame(0, text.toUpperCase()));
        if (text.includes('bye')) socket.close();
      });
      return;
    }
    socket.send(frame(1, ''));
    if (token === 'exit3') {
      socket.send(frame(1, 'hi\n'));
      socket.send(frame(2, 'oops\n'));
      return end(exitStatus(3));
    }
    if (token === 'not-running') {
      return end({
        metadata: {},
        status: 'Failure',
        message: 'Internal error occurred: error executing command in container: container is not running',
        reason: 'InternalError',
        code: 500,
      });
    }
    if (token === 'cat') {
      // Echoes stdin until a line "end", then exits 0.
      let seen = '';
      socket.on('message', (data) => {
        if (data[0] !== 0) return;
        seen += data.subarray(1).toString();
        socket.send(frame(1, data.subarray(1)));
        if (seen.endsWith('end\n')) end(exitStatus(0));
      });
      return;
    }
    if (token === 'resize') {
      socket.on('message', (data) => {
        if (data[0] !== 4) return;
        resizes.push(JSON.parse(data.subarray(1).toString()));
        if (resizes.length === 2) end(exitStatus(0));
      });
      return;
    }
    if (token === 'attach') {
      // The container prints until the client goes away.
      socket.send(frame(1, 'tick\n'));
      return;
    }
    if (token === 'attach-exit') {
      socket.send(frame(1, 'last line\n'));
      return end(exitStatus(0));
    }
    end({ metadata: {}, status: 'Failure', message: `fake has no session ${token}` });
  });
  return {
    url: (path) => `http://127.0.0.1:${server.address().port}${path}`,
    resizes,
    close: () =>
      new Promise((resolve) => {
        server.clients.forEach((c) => c.terminate());
        server.close(() => resolve());
      }),
  };
}

/** A writable that keeps what it got. */
function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString() });
}

let fake: Awaited<ReturnType<typeof fakeStreamingServer>>;
beforeAll(async () => {
  fake = await fakeStreamingServer();
});
afterAll(() => fake.close());

describe('exitCodeOf', () => {
  it.each([
    [exitStatus(0), 0],
    [exitStatus(3), 3],
    [exitStatus(137), 137],
  ])('%j → %i', (status, code) => expect(exitCodeOf(status as never)).toEqual({ exitCode: code }));

  it('throws the runtime message for any other failure, without the server’s prefix', () => {
    expect(() => exitCodeOf({ status: 'Failure', message: 'container is not running' })).toThrow(
      'container is not running',
    );
    const status = {
      status: 'Failure' as const,
      reason: 'InternalError',
      message:
        'Internal error occurred: error executing command in container: failed to exec in container: x',
    };
    expect(() => exitCodeOf(status)).toThrow(/^failed to exec in container: x$/);
  });
});

describe('execOverStream', () => {
  it('copies stdout and stderr and resolves with the exit code', async () => {
    const stdout = sink();
    const stderr = sink();
    expect(await execOverStream(fake.url('/exec/exit3'), { stdout, stderr, tty: false })).toEqual({
      exitCode: 3,
    });
    expect(stdout.text()).toBe('hi\n');
    expect(stderr.text()).toBe('oops\n');
  });

  it('sends stdin to the process', async () => {
    const stdout = sink();
    const stdin = Readable.from([Buffer.from('hello\n'), Buffer.from('end\n')]);
    expect(await execOverStream(fake.url('/exec/cat'), { stdin, stdout, tty: false })).toEqual({
      exitCode: 0,
    });
    expect(stdout.text()).toBe('hello\nend\n');
  });

  it('sends terminal sizes on the resize channel with a tty', async () => {
    const resize = Readable.from([
      { width: 80, height: 24 },
      { width: 120, height: 40 },
    ]);
    await execOverStream(fake.url('/exec/resize'), { stdout: sink(), tty: true, resize });
    expect(fake.resizes).toEqual([
      { Width: 80, Height: 24 },
      { Width: 120, Height: 40 },
    ]);
  });

  it('rejects with the runtime’s message when the command cannot run', async () => {
    await expect(
      execOverStream(fake.url('/exec/not-running'), { stdout: sink(), tty: false }),
    ).rejects.toThrow('container is not running');
  });

  it('rejects with what the server answered for a used or expired URL', async () => {
    await expect(execOverStream(fake.url('/exec/used'), { stdout: sink(), tty: false })).rejects.toThrow(
      /answered 401 .*\/exec\/used/,
    );
  });
});

describe('attachOverStream', () => {
  it('copies output until the container stops', async () => {
    const stdout = sink();
    expect(await attachOverStream(fake.url('/attach/attach-exit'), { stdout, tty: false })).toEqual({
      exitCode: 0,
    });
    expect(stdout.text()).toBe('last line\n');
  });

  it('detaches when the signal aborts', async () => {
    const detach = new AbortController();
    const stdout = new PassThrough();
    stdout.once('data', () => detach.abort());
    expect(
      await attachOverStream(fake.url('/attach/attach'), { stdout, tty: false, signal: detach.signal }),
    ).toEqual({ exitCode: 0 });
  });
});

describe('portForwardOverStream', () => {
  it('carries data both ways and ends when the pod side closes', async () => {
    const conn = await portForwardOverStream(fake.url('/portforward/echo'), 8080);
    conn.write('hello ');
    conn.write('bye');
    let got = '';
    for await (const chunk of conn) got += String(chunk);
    expect(got).toBe('HELLO BYE');
  });

  it('fails the stream with the server’s error when nothing listens', async () => {
    // The server announces the ports before it dials, so the failure arrives on the open stream.
    const conn = await portForwardOverStream(fake.url('/portforward/refused'), 8080);
    const err = await new Promise<Error>((resolve) => conn.on('error', resolve).resume());
    expect(err.message).toContain('dial tcp 127.0.0.1:8080: connection refused');
  });

  it('refuses a URL made for another port', async () => {
    await expect(portForwardOverStream(fake.url('/portforward/echo'), 9090)).rejects.toThrow(
      'forwards port 8080, not 9090',
    );
  });
});

/** A stream of the fake SPDY session: records what the client wrote and whether it sent its FIN. */
class FakeSpdyStream extends Duplex implements SpdyClientStream {
  readonly headers: Record<string, string>;
  readonly written: Buffer[] = [];
  fin = false;
  constructor(headers: Record<string, string>) {
    super();
    this.headers = headers;
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.written.push(chunk);
    cb();
  }
  override _final(cb: () => void): void {
    this.fin = true;
    this.emit('fin');
    cb();
  }
}

/**
 * A fake SPDY client session playing the server's side of one session: `script` gets each stream the client opens
 * (after the server's reply) and may push data on it.
 */
function fakeSpdy(script: (stream: FakeSpdyStream, all: FakeSpdyStream[]) => void): {
  factory: SpdyClientFactory;
  streams: FakeSpdyStream[];
} {
  const streams: FakeSpdyStream[] = [];
  const factory: SpdyClientFactory = (socket) => {
    const session: SpdyClientSession = {
      openStream(headers) {
        const stream = new FakeSpdyStream(headers);
        streams.push(stream);
        setImmediate(() => {
          stream.emit('response');
          script(stream, streams);
        });
        return stream;
      },
      close: async () => void socket.destroy(),
      // As SpdySession does: its streams go with it.
      destroy: () => {
        streams.forEach((stream) => stream.destroy());
        socket.destroy();
      },
    };
    return session;
  };
  return { factory, streams };
}

/** An HTTP server that upgrades every path but `/used`, which answers 404 like a consumed token. */
async function upgradingServer(): Promise<{ url: (path: string) => string; close: () => void }> {
  const server = net.createServer((socket) => {
    socket.once('data', (request: Buffer) => {
      if (request.toString().startsWith('POST /exec/used ')) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n');
      } else socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n\r\n');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: (path) => `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`,
    close: () => server.close(),
  };
}

describe('execOverSpdy', () => {
  let http: Awaited<ReturnType<typeof upgradingServer>>;
  beforeAll(async () => {
    http = await upgradingServer();
  });
  afterAll(() => http.close());

  it('opens the streams in client-go’s order, copies output, ends stdin with a FIN, reads the exit code', async () => {
    const { factory, streams } = fakeSpdy((stream, all) => {
      const type = stream.headers.streamType;
      if (type === 'stdout') stream.push('hi\n');
      if (type === 'stderr') stream.push(null);
      if (type === 'error') {
        // The "process" ends once its stdin has ended.
        const stdin = () => all.find((s) => s.headers.streamType === 'stdin');
        const finish = () => {
          all.find((s) => s.headers.streamType === 'stdout')?.push(null);
          stream.push(JSON.stringify(exitStatus(5)));
          stream.push(null);
        };
        const wait = () =>
          stdin()?.fin ? finish() : stdin() ? stdin()!.once('fin', finish) : setImmediate(wait);
        wait();
      }
    });
    const stdout = sink();
    const stdin = Readable.from([Buffer.from('input')]);
    const result = await execOverSpdy(
      http.url('/exec/ok'),
      { stdin, stdout, stderr: sink(), tty: false },
      factory,
    );
    expect(result).toEqual({ exitCode: 5 });
    expect(stdout.text()).toBe('hi\n');
    expect(streams.map((s) => s.headers.streamType)).toEqual(['error', 'stdin', 'stdout', 'stderr']);
    const sent = streams[1]!;
    expect(Buffer.concat(sent.written).toString()).toBe('input');
    expect(sent.fin).toBe(true);
  });

  it('sends resizes on the resize stream with a tty (no stderr stream)', async () => {
    const { factory, streams } = fakeSpdy((stream, all) => {
      if (stream.headers.streamType !== 'resize') return;
      stream.on('data', () => undefined);
      setImmediate(() => {
        all.find((s) => s.headers.streamType === 'stdout')?.push(null);
        const error = all.find((s) => s.headers.streamType === 'error')!;
        error.push(JSON.stringify(exitStatus(0)));
        error.push(null);
      });
    });
    const resize = Readable.from([{ width: 100, height: 30 }]);
    const result = await execOverSpdy(
      http.url('/exec/ok'),
      { stdout: sink(), stderr: sink(), tty: true, resize },
      factory,
    );
    expect(result).toEqual({ exitCode: 0 });
    expect(streams.map((s) => s.headers.streamType)).toEqual(['error', 'stdout', 'resize']);
    expect(Buffer.concat(streams[2]!.written).toString()).toBe('{"Width":100,"Height":30}');
  });

  it('detaches an attach when the signal aborts, also while still connecting', async () => {
    const { factory } = fakeSpdy(() => undefined); // a container that never stops
    const detach = new AbortController();
    const attached = attachOverSpdy(
      http.url('/attach/ok'),
      { stdout: sink(), tty: false, signal: detach.signal },
      factory,
    );
    detach.abort();
    expect(await attached).toEqual({ exitCode: 0 });
  });

  it('rejects with what the server answered for a used or expired URL', async () => {
    const { factory } = fakeSpdy(() => undefined);
    await expect(
      execOverSpdy(http.url('/exec/used'), { stdout: sink(), tty: false }, factory),
    ).rejects.toThrow(/answered 404 .*used already or expired.*: not found/);
  });
});

describe('portForwardOverSpdy', () => {
  let http: Awaited<ReturnType<typeof upgradingServer>>;
  beforeAll(async () => {
    http = await upgradingServer();
  });
  afterAll(() => http.close());

  it('opens an error and a data stream for the port; the data stream is the connection', async () => {
    const { factory, streams } = fakeSpdy((stream) => {
      if (stream.headers.streamType === 'data') stream.push('from pod');
    });
    const conn = await portForwardOverSpdy(http.url('/portforward/ok'), 8080, factory);
    expect(streams.map((s) => s.headers)).toEqual([
      { port: '8080', requestID: '0', streamType: 'error' },
      { port: '8080', requestID: '0', streamType: 'data' },
    ]);
    expect(await new Promise((resolve) => conn.once('data', (c: Buffer) => resolve(String(c))))).toBe(
      'from pod',
    );
    conn.end('to pod');
    if (!streams[1]!.fin) await new Promise((resolve) => streams[1]!.once('fin', resolve));
    expect(Buffer.concat(streams[1]!.written).toString()).toBe('to pod');
    conn.destroy();
  });

  it('fails the connection with the server’s error text, even when the data stream ended first', async () => {
    const { factory } = fakeSpdy((stream, all) => {
      if (stream.headers.streamType !== 'data') return;
      // As the server does when the dial fails: both streams end, the data stream here before the error text.
      stream.push(null);
      setImmediate(() => {
        const error = all.find((s) => s.headers.streamType === 'error')!;
        error.push('error forwarding port 8080 to pod sb1, uid : connection refused');
        error.push(null);
      });
    });
    const conn = await portForwardOverSpdy(http.url('/portforward/refused'), 8080, factory);
    const err = await new Promise<Error>((resolve) => conn.on('error', resolve).resume());
    expect(err.message).toContain('connection refused');
  });
});
