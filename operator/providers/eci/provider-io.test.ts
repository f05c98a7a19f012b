/**
 * Logs, exec and stats of the ECI provider, through the real SDK against the fake ECI endpoint.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fakeEciConfig } from '../../../test/support/fake-eci/provider-config.ts';
import { FakeEci } from '../../../test/support/fake-eci/server.ts';
import { createLogger } from '../../shared/log.ts';
import { isNotFound, sandboxKey, type ExecStreams } from '../types.ts';
import { EciProvider } from './provider.ts';

let fake: FakeEci;
let provider: EciProvider;
let web: V1Pod;
let groupId: string;

beforeEach(async () => {
  fake = await FakeEci.start();
  provider = new EciProvider({ config: fakeEciConfig(fake), logger: createLogger({ level: 'silent' }) });
  web = {
    metadata: { name: 'web', namespace: 'default', uid: 'aaaaaaaa-0000-4000-8000-000000000001' },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], restartPolicy: 'Never' },
  };
  await provider.create(web);
  await vi.waitFor(
    async () => {
      if ((await provider.status(sandboxKey(web))).phase !== 'Running') throw new Error('not running yet');
    },
    { timeout: 5000, interval: 10 },
  );
  groupId = fake.groupByUid(web.metadata!.uid!)!.id;
});
afterEach(async () => {
  await provider.close();
  await fake.close();
});

describe('logs', () => {
  it('returns the tail, with RFC 3339 timestamps only when asked', async () => {
    fake.appendLog(groupId, 'app', 'one\ntwo\nthree');
    expect(await text(await provider.logs(sandboxKey(web), 'app', { tailLines: 2 }))).toBe('two\nthree\n');
    const stamped = await text(
      await provider.logs(sandboxKey(web), 'app', { tailLines: 1, timestamps: true }),
    );
    expect(stamped).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n$/);
  });

  it('follows new lines by polling, without repeating any, and ends when the container exits', async () => {
    fake.appendLog(groupId, 'app', 'before');
    const stream = await provider.logs(sandboxKey(web), 'app', { follow: true, tailLines: 1 });
    const all = text(stream);
    fake.appendLog(groupId, 'app', 'during-1\nduring-2');
    await vi.waitFor(() => expect(fake.calls('DescribeContainerLog')).toBeGreaterThan(2), {
      timeout: 5000,
      interval: 10,
    });
    fake.appendLog(groupId, 'app', 'last');
    fake.exitContainer(groupId, 'app', 0);
    expect(await all).toBe('before\nduring-1\nduring-2\nlast\n');
  });

  it('rejects before any byte for an unknown container or pod', async () => {
    await expect(provider.logs(sandboxKey(web), 'nope')).rejects.toSatisfy(isNotFound);
    const ghost = { uid: 'ghost', namespace: 'default', name: 'ghost' };
    await expect(provider.logs(ghost, 'app')).rejects.toSatisfy(isNotFound);
  });
});

describe('exec', () => {
  async function run(command: string[], stdin?: string, tty = false) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const streams: ExecStreams = {
      stdout,
      stderr,
      tty,
      ...(stdin !== undefined && { stdin: Readable.from([stdin]) }),
    };
    const out = text(stdout);
    const err = text(stderr);
    const { exitCode } = await provider.exec(sandboxKey(web), 'app', command, streams);
    stdout.end();
    stderr.end();
    return { exitCode, stdout: await out, stderr: await err };
  }

  it('runs a command over the session WebSocket and returns its output and exit code', async () => {
    expect(await run(['echo', 'hello', 'eci'])).toEqual({ exitCode: 0, stdout: 'hello eci\n', stderr: '' });
    expect((await run(['sh', '-c', 'exit 3'])).exitCode).toBe(3);
    expect(await run(['nope'])).toEqual({ exitCode: 127, stdout: '', stderr: 'nope: not found\n' });
    expect(fake.execs.map((e) => e.command)).toContainEqual(['echo', 'hello', 'eci']);
  });

  it('passes stdin through and ends it', async () => {
    expect(await run(['cat'], 'typed input')).toMatchObject({ exitCode: 0, stdout: 'typed input' });
  });

  it('refuses a container that is not running', async () => {
    fake.exitContainer(groupId, 'app', 0);
    await vi.waitFor(
      async () => {
        if ((await provider.status(sandboxKey(web))).phase !== 'Succeeded') throw new Error('still running');
      },
      { timeout: 5000, interval: 10 },
    );
    await expect(run(['echo'])).rejects.toThrow(/not running/);
  });
});

describe('stats', () => {
  it('reports CPU and memory from ECI metrics, per pod and in the summary', async () => {
    const stats = await provider.stats(sandboxKey(web));
    expect(stats.cpu?.usageNanoCores).toBeGreaterThan(0);
    expect(stats.memory?.workingSetBytes).toBeGreaterThan(0);
    expect(stats.containers).toMatchObject([{ name: 'app' }]);
    const summary = await provider.statsSummary();
    expect(summary.map((s) => s.key.uid)).toEqual([web.metadata!.uid]);
  });
});
