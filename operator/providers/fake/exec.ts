/**
 * The commands a fake container understands, so that `kubectl exec` against the fake provider shows
 * something a user recognises: `echo`, `cat` (stdin to stdout), `env` (the resolved environment),
 * `hostname`, `true`/`false`/`exit N`, `sleep N`, `stty size` (the terminal size from resize events),
 * and `sh -c "<one of these>"`. Anything else fails like a missing binary does under containerd.
 */
import { once } from 'node:events';
import type { ExecResult, ExecStreams, ResolvedEnvVar, TerminalSize } from '../types.ts';

/** What a builtin may read about the container it runs in. */
export interface BuiltinContext {
  /** The pod name (what `hostname` prints). */
  hostname: string;
  env: readonly ResolvedEnvVar[];
}

const SHELLS = new Set(['sh', '/bin/sh', 'bash', '/bin/bash']);

/** Runs `command` with the fake's builtins; never rejects for a bad command, it exits non-zero instead. */
export async function runBuiltin(
  command: string[],
  streams: ExecStreams,
  ctx: BuiltinContext,
): Promise<ExecResult> {
  const [program = '', ...args] = command;
  const out = (text: string) => streams.stdout.write(text);
  const err = (text: string) => (streams.stderr ?? streams.stdout).write(text);
  if (SHELLS.has(program) && args[0] === '-c' && args[1] !== undefined) {
    // Enough shell for probes and tests: one simple command, words split on blanks.
    return runBuiltin(args[1].trim().split(/\s+/), streams, ctx);
  }
  switch (program) {
    case 'echo': {
      const noNewline = args[0] === '-n';
      out((noNewline ? args.slice(1) : args).join(' ') + (noNewline ? '' : '\n'));
      return { exitCode: 0 };
    }
    case 'cat':
      if (streams.stdin) await pipeUntilEnd(streams);
      return { exitCode: 0 };
    case 'env':
      out(ctx.env.map((e) => `${e.name}=${e.value}\n`).join(''));
      return { exitCode: 0 };
    case 'hostname':
      out(ctx.hostname + '\n');
      return { exitCode: 0 };
    case 'true':
      return { exitCode: 0 };
    case 'false':
      return { exitCode: 1 };
    case 'exit':
      return { exitCode: Number.parseInt(args[0] ?? '0', 10) & 0xff };
    case 'sleep':
      return sleep(Number(args[0] ?? 0) * 1000, streams.signal);
    case 'stty': {
      const size = args[0] === 'size' && streams.tty ? await firstSize(streams.resize) : undefined;
      if (!size) {
        err("stty: 'standard input': Inappropriate ioctl for device\n");
        return { exitCode: 1 };
      }
      out(`${size.height} ${size.width}\n`);
      return { exitCode: 0 };
    }
    default:
      err(`exec: "${program}": executable file not found in $PATH\n`);
      return { exitCode: 126 };
  }
}

/** Copies stdin to stdout until stdin ends or the session is aborted. */
async function pipeUntilEnd(streams: ExecStreams): Promise<void> {
  const stdin = streams.stdin!;
  const done = Promise.race([
    once(stdin, 'end').catch(() => undefined),
    once(stdin, 'close').catch(() => undefined),
    streams.signal ? once(streams.signal, 'abort') : new Promise(() => {}),
  ]);
  stdin.on('data', (chunk: Buffer) => streams.stdout.write(chunk));
  await done;
}

/** Waits like `sleep`; an aborted session kills it with SIGKILL's exit code. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<ExecResult> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ exitCode: 0 }), ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve({ exitCode: 137 });
    });
  });
}

/** The first terminal size the client sent (kubectl sends one right after the streams open). */
async function firstSize(sizes: AsyncIterable<TerminalSize> | undefined): Promise<TerminalSize | undefined> {
  if (!sizes) return undefined;
  for await (const size of sizes) return size;
  return undefined;
}
