/**
 * The process supervisor (supervisor.ts): restarts with back-off, stop, a command that cannot run. Over a fake
 * child (a tiny node script) and a fake clock, so that nothing here waits for real time. kube-proxy runs under it
 * for real in test/integration/kube-proxy.test.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Supervisor, type Clock, type SupervisedExit, type SupervisorOptions } from './supervisor.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spillway-supervisor-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A clock whose time moves only when the test says, and whose sleeps are recorded and return at once. */
class FakeClock implements Clock {
  t = 0;
  readonly sleeps: number[] = [];
  /** When set, sleeps return only once aborted (a back-off the test interrupts). */
  hold = false;
  now = () => this.t;
  sleep = (ms: number, signal: AbortSignal) => {
    this.sleeps.push(ms);
    if (!this.hold || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
  };
}

/** A pino logger whose lines the test reads. */
function recordingLogger() {
  const lines: { level: number; msg: string; code?: number; error?: string; logTail?: string[] }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, warnings: () => lines.filter((l) => l.level === 40) };
}

/** A supervisor over `node -e script`, and a promise for its n-th exit / start. */
function supervise(script: string, clock: FakeClock, extra: Partial<SupervisorOptions> = {}) {
  const exits: SupervisedExit[] = [];
  const pids: (number | undefined)[] = [];
  const waiters: { n: number; kind: 'exit' | 'start'; resolve: () => void }[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) {
      if ((w.kind === 'exit' ? exits.length : pids.length) >= w.n) w.resolve();
      else waiters.push(w);
    }
  };
  const { logger, warnings } = recordingLogger();
  const supervisor = new Supervisor({
    name: 'fake-proxy',
    command: process.execPath,
    args: ['-e', script],
    logFile: join(dir, 'fake.log'),
    pidFile: join(dir, 'fake.pid'),
    logger,
    clock,
    ...extra,
    onStart: (pid) => {
      pids.push(pid);
      extra.onStart?.(pid);
      wake();
    },
    onExit: (exit) => {
      exits.push(exit);
      extra.onExit?.(exit);
      wake();
    },
  });
  const reach = (kind: 'exit' | 'start', n: number) =>
    new Promise<void>((resolve) => {
      waiters.push({ n, kind, resolve });
      wake();
    });
  return { supervisor, exits, pids, warnings, reach };
}

const crashing = `for (let i = 1; i <= 12; i++) console.log('line ' + i); process.exit(3);`;

describe('Supervisor', () => {
  it('restarts a crashing process with a doubling back-off capped at 30 s, logging each exit with its log tail', async () => {
    const clock = new FakeClock();
    const s = supervise(crashing, clock, {
      onExit: () => void (s.exits.length === 7 && s.supervisor.stop()),
    });
    s.supervisor.start();
    await s.reach('exit', 7);
    await s.supervisor.stop();

    expect(s.supervisor.starts).toBe(7);
    expect(clock.sleeps).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    const warnings = s.warnings();
    expect(warnings).toHaveLength(7);
    expect(warnings[0]!.msg).toBe('fake-proxy exited with code 3 after 0 s; restarting in 1 s');
    expect(warnings[0]!.code).toBe(3);
    expect(warnings[0]!.logTail).toEqual(['line 3', ...Array.from({ length: 9 }, (_, i) => `line ${i + 4}`)]);
    expect(existsSync(join(dir, 'fake.pid'))).toBe(false);
  });

  it('starts the back-off over after a run of 60 s (a run that lasted is no crash loop)', async () => {
    const clock = new FakeClock();
    const s = supervise(crashing, clock, {
      // The third run "lasts" 61 s.
      onStart: () => void (s.pids.length === 3 && (clock.t += 61_000)),
      onExit: () => void (s.exits.length === 4 && s.supervisor.stop()),
    });
    s.supervisor.start();
    await s.reach('exit', 4);
    await s.supervisor.stop();

    expect(clock.sleeps).toEqual([1000, 2000, 1000, 2000]);
    expect(s.exits.map((e) => e.ranMs)).toEqual([0, 0, 61_000, 0]);
  });

  it('stop() ends a running process and restarts nothing', async () => {
    const clock = new FakeClock();
    const s = supervise(`console.log('up'); setInterval(() => {}, 1000);`, clock);
    s.supervisor.start();
    await s.reach('start', 1);
    const pid = s.supervisor.pid!;
    expect(readFileSync(join(dir, 'fake.pid'), 'utf8')).toBe(String(pid));

    await s.supervisor.stop();

    expect(() => process.kill(pid, 0)).toThrow(); // gone
    expect(s.supervisor.starts).toBe(1);
    expect(s.exits).toHaveLength(0); // a stop is not logged as a crash
    expect(s.warnings()).toHaveLength(0);
    expect(clock.sleeps).toEqual([]);
    expect(existsSync(join(dir, 'fake.pid'))).toBe(false);
  });

  it('stop() during the back-off cancels the pending restart', async () => {
    const clock = new FakeClock();
    clock.hold = true;
    const s = supervise(crashing, clock);
    s.supervisor.start();
    await s.reach('exit', 1);

    await s.supervisor.stop();

    expect(s.supervisor.starts).toBe(1);
    expect(clock.sleeps).toEqual([1000]);
    expect(s.supervisor.pid).toBeUndefined();
  });

  it('says so when the command cannot be run at all, and keeps trying', async () => {
    const clock = new FakeClock();
    const s = supervise('', clock, {
      command: join(dir, 'no-such-kube-proxy'),
      onExit: () => void (s.exits.length === 2 && s.supervisor.stop()),
    });
    s.supervisor.start();
    await s.reach('exit', 2);
    await s.supervisor.stop();

    expect(s.supervisor.starts).toBe(2);
    expect(s.warnings()[0]!.msg).toMatch(/could not run .*no-such-kube-proxy: spawn .* ENOENT/);
  });
});
