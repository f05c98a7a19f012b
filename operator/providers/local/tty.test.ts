import { execFileSync, spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../shared/wait.ts';
import { applyTerminalSizes, descendants, firstTerminalSize, sizedCommand, terminalOf } from './tty.ts';

/** The size of the terminal under `root`, as stty reads it ('' while there is none). */
function sizeUnder(root: number): string {
  const terminal = terminalOf(root);
  return terminal ? execFileSync('stty', ['-F', terminal, 'size'], { encoding: 'utf8' }).trim() : '';
}

describe('local exec terminal sizes', () => {
  it('finds the descendants of a process, nearest first', () => {
    const tree = new Map([
      [10, 1],
      [11, 10],
      [12, 11],
      [13, 10],
      [20, 1],
    ]);
    expect(descendants(10, tree)).toEqual([11, 13, 12]);
  });

  it('sets the size on the terminal that script made, first size and resizes alike', async () => {
    // As the local exec runs a command with -t: under `script`, here on the host, without a sandbox. The command
    // prints its size each time it is sent a line, so the test moves on only once a size has been applied.
    const child = spawn('script', ['-qec', 'read a; stty size; read b; stty size', '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const sizes = new Readable({ objectMode: true, read() {} });
    const applied = applyTerminalSizes(child.pid!, sizes);
    sizes.push({ width: 101, height: 33 });
    await waitFor('first size applied', 10_000, async () => sizeUnder(child.pid!) === '33 101');
    child.stdin.write('\n');
    sizes.push({ width: 90, height: 20 });
    await waitFor('resize applied', 10_000, async () => sizeUnder(child.pid!) === '20 90');
    child.stdin.write('\n');
    await new Promise((resolve) => child.once('close', resolve));
    sizes.push(null);
    await applied;
    expect(output.match(/^\d+ \d+/gm)).toEqual(['33 101', '20 90']);
  });
});

describe('the first terminal size', () => {
  it('is taken off the sizes, the others follow', async () => {
    const sizes = Readable.from([
      { width: 80, height: 24 },
      { width: 100, height: 30 },
    ]);
    const { first, rest } = await firstTerminalSize(sizes);
    expect(first).toEqual({ width: 80, height: 24 });
    const others = [];
    for await (const s of rest) others.push(s);
    expect(others).toEqual([{ width: 100, height: 30 }]);
  });

  it('is not lost when it comes after the wait', async () => {
    const sizes = new Readable({ objectMode: true, read() {} });
    const { first, rest } = await firstTerminalSize(sizes, 10);
    expect(first).toBeUndefined();
    sizes.push({ width: 80, height: 24 });
    sizes.push(null);
    const all = [];
    for await (const s of rest) all.push(s);
    expect(all).toEqual([{ width: 80, height: 24 }]);
  });

  it('is set before the command runs', () => {
    const argv = sizedCommand(['stty', 'size'], { width: 101, height: 33 });
    expect(
      execFileSync('script', ['-qec', argv.map((a) => `'${a}'`).join(' '), '/dev/null'], {
        encoding: 'utf8',
      }).trim(),
    ).toBe('33 101');
  });
});
