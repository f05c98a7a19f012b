/**
 * Terminal sizes for `kubectl exec -it` into a local sandbox. The exec runs under util-linux `script`, which gives
 * the command a pseudo-terminal inside the sandbox; the size kubectl sends first and on every resize is set on that
 * terminal from the host: the command's stdin, reached as `/proc/<pid>/fd/0`, is the terminal itself, and
 * `stty -F` on it sets the window size (the kernel then sends SIGWINCH to the foreground job, as a kubelet's
 * runtime does through the CRI's resize call). The first size is set before the command starts (kubectl sends it
 * right after the streams open), so that a command reading its size at once (`stty size`, a shell) gets it.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { promisify } from 'node:util';
import type { TerminalSize } from '../types.ts';

const run = promisify(execFile);

/** The parent PID of every process, from /proc/<pid>/stat (the field after the parenthesised command). */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.set(Number(entry), ppid);
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Every descendant of `root`, nearest first. */
export function descendants(root: number, parentOf: Map<number, number> = parents()): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentOf) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const out: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** The first descendant of `root` whose stdin is a pseudo-terminal: the command `script` started. */
export function terminalOf(root: number): string | undefined {
  for (const pid of descendants(root)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/0`).startsWith('/dev/pts/')) return `/proc/${pid}/fd/0`;
    } catch {
      /* gone, or not ours to read */
    }
  }
  return undefined;
}

/**
 * Applies each size from `sizes` to the terminal of the exec whose host process is `root`, until the sizes end.
 * The first size usually arrives before `script` has made the terminal: it waits for it (up to `waitMs`).
 */
export async function applyTerminalSizes(
  root: number,
  sizes: AsyncIterable<TerminalSize>,
  waitMs = 3000,
  onError: (err: Error) => void = () => {},
): Promise<void> {
  let terminal: string | undefined;
  for await (const size of sizes) {
    for (let waited = 0; !terminal && waited <= waitMs; waited += 50) {
      terminal = terminalOf(root);
      if (!terminal) await new Promise((r) => setTimeout(r, 50));
    }
    if (!terminal) return onError(new Error(`no terminal found under process ${root}`));
    await run('stty', ['-F', terminal, 'rows', String(size.height), 'cols', String(size.width)]).catch(
      (err: Error) => onError(err),
    );
  }
}

/** The command, wrapped to set its terminal to `size` first (inside `script`'s terminal) and then exec it. */
export function sizedCommand(argv: string[], size: TerminalSize): string[] {
  const set = 'stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@"';
  return ['sh', '-c', set, 'sh', String(size.height), String(size.width), ...argv];
}

/**
 * Takes the first size off `sizes`, waiting at most `waitMs` for it, and the sizes after it. A first size that
 * comes later than that is not lost: it is the first of `rest`.
 */
export async function firstTerminalSize(
  sizes: AsyncIterable<TerminalSize>,
  waitMs = 1000,
): Promise<{ first?: TerminalSize; rest: AsyncIterable<TerminalSize> }> {
  const it = sizes[Symbol.asyncIterator]();
  const pending = it.next();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), waitMs)));
  const got = await Promise.race([pending, late]);
  clearTimeout(timer);
  const rest = async function* (next: Promise<IteratorResult<TerminalSize>>) {
    for (let r = await next; !r.done; r = await it.next()) yield r.value;
  };
  if (got === 'late') return { rest: rest(pending) };
  if (got.done) return { rest: rest(Promise.resolve(got)) };
  return { first: got.value, rest: rest(it.next()) };
}
