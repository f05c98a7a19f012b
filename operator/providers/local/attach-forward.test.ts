/** The local provider's attach (a run's output from now on) and port-forward dial, without root. */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachToRun } from './attach.ts';
import { dialSandbox } from './port-forward.ts';

const line = (s: string) => `${new Date().toISOString().replace('Z', '000000Z')} stdout F ${s}\n`;

describe('local attach', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('shows what the run writes after attaching, not before, until the run exits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-attach-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'log'), line('before attaching'));
    const stdout = new PassThrough();
    const seen = text(stdout);
    const attached = attachToRun(dir, { stdout, tty: false }, 10);
    await new Promise((r) => setTimeout(r, 30));
    appendFileSync(join(dir, 'log'), line('after attaching'));
    await new Promise((r) => setTimeout(r, 30));
    writeFileSync(join(dir, 'exit'), '0 0');
    expect(await attached).toEqual({ exitCode: 0 });
    stdout.end();
    expect(await seen).toBe('after attaching\n');
  });

  it('detaches when the client goes away', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-attach-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'log'), '');
    const abort = new AbortController();
    const attached = attachToRun(dir, { stdout: new PassThrough(), tty: false, signal: abort.signal }, 10);
    abort.abort();
    expect(await attached).toEqual({ exitCode: 0 });
  });
});

describe('local port-forward dial', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => server.close());

  it('connects to the address and port, both ways', async () => {
    const conn = await dialSandbox('127.0.0.1', port);
    conn.end('echo me');
    expect(await text(conn)).toBe('echo me');
  });

  it('says connection refused as Go does when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const free = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    await expect(dialSandbox('127.0.0.1', free)).rejects.toThrow(
      `dial tcp 127.0.0.1:${free}: connect: connection refused`,
    );
  });
});
