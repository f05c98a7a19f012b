/**
 * What a restarted operator checks before it adopts a sandbox it finds on disk: the record is written only
 * once the set-up is complete (see {@link SETUP_STEPS}), and each step's result must still be there, since a
 * sandbox that is Running but has no network or no DNS is worse than one that is created again.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerCgroup } from './cgroups.ts';
import type { AttachStep, LocalNetwork } from './network.ts';
import { isAlive } from './runtime.ts';
import type { SandboxRecord } from './sandbox.ts';
import type { RunStep } from './container.ts';

/**
 * The set-up of a sandbox, in order; each is reported once done (tests crash the operator there). The record
 * (`sandbox.json`) is the last: a directory without it is a set-up that never finished, torn down on start.
 */
export const SETUP_STEPS = [
  'state-dir',
  'lease',
  'files',
  'cgroups',
  'namespaces',
  'veth',
  'address',
  'link-up',
  'network',
  'record',
] as const;

/** One step of a sandbox's set-up or of a container's start. */
export type SetupStep = (typeof SETUP_STEPS)[number] | AttachStep | RunStep;

/** Files the set-up writes before the sandbox starts (relative to its directory). */
const FILES = ['mounts', 'hostname', 'etc/resolv.conf', 'etc/hosts', 'etc/hostname'];

/**
 * What is wrong with the sandbox `record` describes (empty when every step of its set-up is in place): PID 1
 * (its namespaces), sandbox-init's mounts, the DNS and hosts files, the volumes, the containers' cgroups and
 * the network. The containers' runs are not checked here: their shims are found by LocalContainer.load.
 */
export async function setupProblems(
  record: SandboxRecord,
  dir: string,
  network: LocalNetwork,
  cgroupFor: (container: string) => ContainerCgroup,
): Promise<string[]> {
  if (!isAlive(record.processes.init)) return ['its PID 1 is gone'];
  const problems = fileProblems(dir, record);
  for (const c of [...record.plan.initContainers, ...record.plan.containers]) {
    if (!cgroupFor(c.name).exists()) problems.push(`the cgroup of container ${c.name} is missing`);
  }
  problems.push(...(await network.verify(record.key.uid, record.processes.init, record.ip)));
  return problems;
}

/** The files of the set-up: sandbox-init's `ready`, the DNS and hosts files, the volumes' directories. */
function fileProblems(dir: string, record: SandboxRecord): string[] {
  const problems: string[] = [];
  if (!existsSync(join(dir, 'ready'))) problems.push('sandbox-init never reported ready');
  for (const f of FILES) if (!nonEmpty(join(dir, f))) problems.push(`${f} is missing`);
  const hosts = read(join(dir, 'etc/hosts'));
  if (hosts && !hosts.includes(record.ip)) problems.push(`etc/hosts does not name ${record.ip}`);
  if (!existsSync(join(dir, 'containers'))) problems.push('containers/ is missing');
  for (const v of record.plan.volumes) {
    if (!existsSync(join(dir, 'volumes', v))) problems.push(`volume ${v} is missing`);
  }
  return problems;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function nonEmpty(file: string): boolean {
  return Boolean(read(file));
}

/** `fn` over `items`, at most `size` at a time (each check spawns a few `ip` processes), in order. */
export async function inBatches<T, R>(
  items: T[],
  size: number,
  fn: (item: T) => Promise<R> | R,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size)
    out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}
