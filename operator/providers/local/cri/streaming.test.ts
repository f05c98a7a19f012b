import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpdySession, type SpdyStream } from '../../../shared/spdy/spdy.ts';
import { attachOverSpdy, execOverSpdy, exitCodeOf, portForwardOverSpdy } from './streaming.ts';

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

/** What the server side of a stream received from the client, resolving at the client's FIN. */
function received(stream: SpdyStream): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => stream.once('end', () => resolve(Buffer.concat(chunks).toString())));
}

type Script = (stream: SpdyStream, all: SpdyStream[]) => void;

/**
 * A fake of the CRI streaming server's SPDY/3.1 path (k8s.io/cri-streaming) over the project's real SPDY codec:
 * `/…/used` answers 404 like a consumed token (and keeps the connection open, as Go's server does); any other path upgrades, accepts every stream the client opens and
 * hands it to the script of the test that made the URL.
 */
async function fakeStreamingServer(): Promise<{
  url: (path: string, script?: Script) => string;
  close: () => void;
}> {
  const scripts = new Map<string, Script>();
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const path = head.toString('latin1').split(' ')[1]!;
      if (path.endsWith('/used')) {
        socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n');
        return;
      }
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n');
      const session = new SpdySession(socket, { initialData: head.subarray(end + 4) });
      const all: SpdyStream[] = [];
      session.on('stream', (stream) => {
        stream.on('error', () => undefined);
        all.push(stream);
        stream.reply();
        scripts.get(path)?.(stream, all);
      });
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let next = 0;
  return {
    url: (path, script) => {
      const unique = `${path}/${next++}`;
      if (script) scripts.set(unique, script);
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}${unique}`;
    },
    close: () => server.close(),
  };
}

let fake: Awaited<ReturnType<typeof fakeStreamingServer>>;
beforeAll(async () => {
  fake = await fakeStreamingServer();
});
afterAll(() => fake.close());

const typeOf = (stream: SpdyStream) => stream.headers.streamtype ?? '';
const find = (all: SpdyStream[], type: string) => all.find((s) => typeOf(s) === type)!;

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

describe('execOverSpdy', () => {
  it('opens the streams in client-go’s order, copies output, ends stdin, resolves with the exit code', async () => {
    let opened: string[] = [];
    let stdinText: Promise<string> | undefined;
    // A `cat` that writes "hi" and what it read, and exits 5 once its stdin has ended.
    const url = fake.url('/exec', (stream, all) => {
      if (typeOf(stream) === 'stdin') stdinText = received(stream);
      if (typeOf(stream) !== 'stderr') return;
      opened = all.map(typeOf);
      find(all, 'stderr').end('warning\n');
      const stdout = find(all, 'stdout');
      stdout.write('hi\n');
      void stdinText!.then((text) => {
        stdout.end(text);
        find(all, 'error').end(JSON.stringify(exitStatus(5)));
      });
    });
    const stdout = sink();
    const stderr = sink();
    const stdin = Readable.from([Buffer.from('input')]);
    expect(await execOverSpdy(url, { stdin, stdout, stderr, tty: false })).toEqual({ exitCode: 5 });
    expect(stdout.text()).toBe('hi\ninput');
    expect(stderr.text()).toBe('warning\n');
    expect(opened).toEqual(['error', 'stdin', 'stdout', 'stderr']);
  });

  it('sends terminal sizes on the resize stream with a tty (and opens no stderr stream)', async () => {
    let opened: string[] = [];
    let size = '';
    const url = fake.url('/exec', (stream, all) => {
      if (typeOf(stream) !== 'resize') return;
      opened = all.map(typeOf);
      stream.once('data', (chunk: Buffer) => {
        size = chunk.toString();
        find(all, 'stdout').end();
        find(all, 'error').end(JSON.stringify(exitStatus(0)));
      });
    });
    const resize = Readable.from([{ width: 100, height: 30 }]);
    expect(await execOverSpdy(url, { stdout: sink(), stderr: sink(), tty: true, resize })).toEqual({
      exitCode: 0,
    });
    expect(opened).toEqual(['error', 'stdout', 'resize']);
    expect(size).toBe('{"Width":100,"Height":30}');
  });

  it('rejects with the runtime’s message when the command cannot run', async () => {
    const url = fake.url('/exec', (stream, all) => {
      if (typeOf(stream) !== 'stdout') return;
      stream.end();
      const failure = {
        status: 'Failure',
        message: 'Internal error occurred: error executing command in container: no such file: nope',
      };
      find(all, 'error').end(JSON.stringify(failure));
    });
    await expect(execOverSpdy(url, { stdout: sink(), tty: false })).rejects.toThrow(/^no such file: nope$/);
  });

  it('rejects with what the server answered for a used or expired URL', async () => {
    await expect(execOverSpdy(fake.url('/exec') + '/used', { stdout: sink(), tty: false })).rejects.toThrow(
      /answered 404 .*used already or expired.*: not found/,
    );
  });
});

describe('attachOverSpdy', () => {
  it('copies output until the container stops, and resolves with exit code 0', async () => {
    const url = fake.url('/attach', (stream, all) => {
      if (typeOf(stream) !== 'stdout') return;
      stream.end('last words\n');
      find(all, 'error').end(JSON.stringify(exitStatus(0)));
    });
    const stdout = sink();
    expect(await attachOverSpdy(url, { stdout, tty: false })).toEqual({ exitCode: 0 });
    expect(stdout.text()).toBe('last words\n');
  });

  it('detaches when the signal aborts, also while still connecting', async () => {
    const url = fake.url('/attach'); // a container that never stops
    const detach = new AbortController();
    const attached = attachOverSpdy(url, { stdout: sink(), tty: false, signal: detach.signal });
    detach.abort();
    expect(await attached).toEqual({ exitCode: 0 });
  });
});

describe('portForwardOverSpdy', () => {
  it('opens an error and a data stream for the port; the data stream is the connection, half-closed by end()', async () => {
    let headers: Record<string, string>[] = [];
    let toPod: Promise<string> | undefined;
    const url = fake.url('/portforward', (stream, all) => {
      if (typeOf(stream) !== 'data') return;
      headers = all.map((s) => ({ ...s.headers }));
      toPod = received(stream);
      stream.write('from pod');
    });
    const conn = await portForwardOverSpdy(url, 8080);
    expect(await new Promise((resolve) => conn.once('data', (c: Buffer) => resolve(String(c))))).toBe(
      'from pod',
    );
    expect(headers).toEqual([
      { port: '8080', requestid: '0', streamtype: 'error' },
      { port: '8080', requestid: '0', streamtype: 'data' },
    ]);
    conn.end('to pod');
    // The pod side sees its input end (the FIN) while the connection stays open the other way.
    expect(await toPod).toBe('to pod');
    conn.destroy();
  });

  it('fails the connection with the server’s error text, even when the data stream ended first', async () => {
    const url = fake.url('/portforward', (stream, all) => {
      if (typeOf(stream) !== 'data') return;
      // As the server does when the dial fails: both streams end, the data stream here before the error text.
      stream.end();
      setImmediate(() =>
        find(all, 'error').end('error forwarding port 8080 to pod sb1, uid : connection refused'),
      );
    });
    const conn = await portForwardOverSpdy(url, 8080);
    const err = await new Promise<Error>((resolve) => conn.on('error', resolve).resume());
    expect(err.message).toContain('connection refused');
  });
});
