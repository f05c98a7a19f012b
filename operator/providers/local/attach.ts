/**
 * `kubectl attach` to a local container: its output from now on, read from the current run's log as it is written
 * (the run's stdout and stderr both go to that log, so with or without a TTY they arrive on the client's stdout).
 * The container's stdin is not kept open by the local runtime: attach is output only here.
 */
import { once } from 'node:events';
import type { ExecResult, ExecStreams } from '../types.ts';
import { readRunLog } from './logs.ts';

/** Streams the run in `runDir` to `streams.stdout` until it exits or the client goes away. */
export async function attachToRun(runDir: string, streams: ExecStreams, pollMs = 200): Promise<ExecResult> {
  const output = readRunLog(runDir, { follow: true, tailLines: 0 }, pollMs);
  const detach = () => output.destroy();
  streams.signal?.addEventListener('abort', detach, { once: true });
  output.on('data', (chunk: Buffer) => streams.stdout.write(chunk));
  await once(output, 'close').catch(() => undefined);
  streams.signal?.removeEventListener('abort', detach);
  return { exitCode: 0 };
}
