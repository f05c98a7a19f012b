/**
 * Wires a process started inside a sandbox (`kubectl exec`) to the kubelet API's streams: stdin in,
 * stdout and stderr out (merged with a TTY), killed when the client goes away, exit code out.
 */
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { ExecResult, ExecStreams } from '../types.ts';

/** Resolves with the process's exit code (128 + signal when killed); never rejects for a failing command. */
export function execIn(child: ChildProcess, streams: ExecStreams): Promise<ExecResult> {
  const kill = () => child.kill('SIGKILL');
  streams.signal?.addEventListener('abort', kill, { once: true });
  if (streams.stdin && child.stdin) streams.stdin.pipe(child.stdin).on('error', () => undefined);
  else child.stdin?.end();
  child.stdin?.on('error', () => undefined);
  child.stdout?.on('data', (chunk: Buffer) => streams.stdout.write(chunk));
  child.stderr?.on('data', (chunk: Buffer) => (streams.stderr ?? streams.stdout).write(chunk));
  return new Promise((resolve) => {
    child.once('error', (err) => {
      (streams.stderr ?? streams.stdout).write(`exec failed: ${err.message}\n`);
      resolve({ exitCode: 126 });
    });
    child.once('close', (code, signal) => {
      streams.signal?.removeEventListener('abort', kill);
      const bySignal = signal ? 128 + (constants.signals[signal] ?? 9) : undefined;
      resolve({ exitCode: code ?? bySignal ?? 1 });
    });
  });
}
