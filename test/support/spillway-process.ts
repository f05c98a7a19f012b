/** The `spillway` command as a real child process (what `make run` and the chart's containers start). */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { CoreV1Api } from '@kubernetes/client-node';
import { repoRoot } from './cluster.ts';

/** A running `spillway` process: its exit code once it exits, and everything it printed so far. */
export interface SpillwayProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

/** Starts `spillway <args>` against `kubeconfig`, logging at info level into {@link SpillwayProcess.output}. */
export function spillway(kubeconfig: string, ...args: string[]): SpillwayProcess {
  let output = '';
  const child = spawn(process.execPath, [join(repoRoot, 'operator/cli.ts'), ...args], {
    env: { ...process.env, KUBECONFIG: kubeconfig, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // A test that times out never reaches its own clean-up: never leave an operator behind to fight the next one.
  const orphanGuard = () => child.kill('SIGKILL');
  process.once('exit', orphanGuard);
  void exited.then(() => process.off('exit', orphanGuard));
  return { child, exited, output: () => output };
}

/** Whether Node `name` reports Ready=True. */
export const nodeReady = async (core: CoreV1Api, name: string): Promise<boolean> =>
  (await core.readNode({ name })).status?.conditions?.some(
    (c) => c.type === 'Ready' && c.status === 'True',
  ) === true;
