import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { findRun, refOf, type ProcessRef } from './runtime.ts';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** Runs `program` with `argv` under the name `name` (its argv[0]), once its command line is in place. */
async function start(program: string, argv: string[], name = program): Promise<ProcessRef> {
  const child = spawn('bash', ['-c', `exec -a ${name} ${program} "$@"`, 'wrapper', ...argv], {
    stdio: 'ignore',
  });
  children.push(child);
  for (let i = 0; i < 200; i++) {
    const ref = refOf(child.pid!);
    const cmd = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
    if (ref && cmd.startsWith(`${name}\0`)) return ref;
    await sleep(10);
  }
  throw new Error(`${name} did not start`);
}

describe('findRun', () => {
  // This process stands in for the sandbox's PID 1: the run must be in its PID namespace.
  const init = refOf(process.pid)!;

  it('finds the shim of a run by its directory and pid, not its subshells (same command line) nor other runs', async () => {
    const script = '( sleep 30; : ) & sleep 30; :';
    const other = await start('bash', ['-c', script, 'container-shim', '/run/.spillway/app/1']);
    const shim = await start('bash', ['-c', script, 'container-shim', '/run/.spillway/app/2']);
    await sleep(100); // the subshells fork
    expect(findRun(init, '/run/.spillway/app/2', shim.pid)).toEqual({ shim });
    expect(findRun(init, '/run/.spillway/app/1', other.pid)).toEqual({ shim: other });
    expect(findRun(init, '/run/.spillway/app/3', 1)).toBeUndefined();
    // Its pid not written yet: still starting. A pid no process of the run has: a shim that is gone.
    expect(findRun(init, '/run/.spillway/app/2', undefined)).toHaveProperty('starting');
    expect(findRun(init, '/run/.spillway/app/2', 999_999_999)).toBeUndefined();
  });

  it('finds the nsenter still starting a run for this sandbox, and ignores one for another sandbox', async () => {
    const sleeper = ['-c', 'import time; time.sleep(30)'];
    const starting = await start(
      '/usr/bin/python3',
      [...sleeper, '-t', String(init.pid), 'container-shim', '/run/.spillway/app/4'],
      'nsenter',
    );
    await start(
      '/usr/bin/python3',
      [...sleeper, '-t', '1', 'container-shim', '/run/.spillway/app/5'],
      'nsenter',
    );
    expect(findRun(init, '/run/.spillway/app/4', undefined)).toEqual({ starting });
    expect(findRun(init, '/run/.spillway/app/5', undefined)).toBeUndefined();
  });

  it('finds nothing for a sandbox whose PID 1 is gone', () => {
    expect(findRun({ pid: init.pid, startTime: '0' }, '/run/.spillway/app/2', undefined)).toBeUndefined();
  });
});
