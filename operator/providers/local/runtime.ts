/**
 * The processes of a local sandbox, and nothing else: start a sandbox (`unshare` running sandbox-init.sh as
 * PID 1 of new PID, mount, UTS, IPC and network namespaces), start a container run (`nsenter` into those
 * namespaces running container-shim.sh), exec, signal, kill. Processes are started detached, so a sandbox
 * outlives the operator; they are named by {@link ProcessRef} (pid + start time) so that a pid reused after
 * a reboot or a crash is never mistaken for the sandbox.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
/** The sandbox's PID 1 program (runs before pivot_root, so a host path is fine). */
export const SANDBOX_INIT_PATH = join(here, 'sandbox-init.sh');
/** Where each sandbox's `containers/` directory appears inside the sandbox. */
export const SANDBOX_STATE_MOUNT = '/run/.spillway';
let shimText: string | undefined;

/** A process named so that a reused pid does not match: its pid and its start time in clock ticks. */
export interface ProcessRef {
  pid: number;
  startTime: string;
}

/** The start time (field 22 of /proc/<pid>/stat) of a live, non-zombie process, else undefined. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

/** A reference to a live process, or undefined when it is gone. */
export function refOf(pid: number): ProcessRef | undefined {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** True while the very process `ref` names is running. */
export function isAlive(ref: ProcessRef | undefined): boolean {
  return ref !== undefined && processStartTime(ref.pid) === ref.startTime;
}

/** Sends `signal` to `ref` if it is still that process; false when it was gone. */
export function signalProcess(ref: ProcessRef | undefined, signal: NodeJS.Signals): boolean {
  if (!isAlive(ref)) return false;
  try {
    process.kill(ref!.pid, signal);
    return true;
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Polls `check` every 10 ms (the set-up takes tens of ms) until it returns a value or `ms` pass. */
async function poll<T>(what: string, ms: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`local sandbox: timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** The processes that hold a sandbox's namespaces. */
export interface SandboxProcesses {
  /** The `unshare` that created the namespaces (it waits for init). */
  unshare: ProcessRef;
  /** PID 1 of the sandbox: the target of every `nsenter`. */
  init: ProcessRef;
}

async function adoptStarted(child: ChildProcess, dir: string): Promise<SandboxProcesses> {
  child.unref();
  const unshare = await poll('unshare to start', 5000, () => (child.pid ? refOf(child.pid) : undefined));
  const init = await poll('sandbox PID 1', 5000, () => {
    const [pid] = childrenOf(unshare.pid);
    return pid ? refOf(pid) : undefined;
  });
  const outcome = await poll('sandbox set-up', 20_000, () => {
    if (existsSync(join(dir, 'ready'))) return 'ready';
    if (existsSync(join(dir, 'failed'))) return readFileSync(join(dir, 'failed'), 'utf8').trim();
    if (!isAlive(init)) return 'sandbox-init exited';
    return undefined;
  });
  if (outcome !== 'ready') {
    await killSandbox({ unshare, init });
    const log = readFileSync(join(dir, 'init.log'), 'utf8').trim().split('\n').slice(-5).join(' | ');
    throw new Error(`local sandbox set-up failed: ${outcome}${log ? ` (${log})` : ''}`);
  }
  return { unshare, init };
}

function spawnInit(dir: string, out: number): ChildProcess {
  return spawn(
    'unshare',
    [
      '--pid',
      '--fork',
      '--mount',
      '--uts',
      '--ipc',
      '--net',
      '--propagation',
      'private',
      'bash',
      SANDBOX_INIT_PATH,
      dir,
    ],
    { detached: true, stdio: ['ignore', out, out] },
  );
}

/**
 * Starts the sandbox whose state directory `dir` already holds `mounts`, `hostname` and `containers/`, and
 * resolves once sandbox-init.sh has built it.
 * @throws Error with sandbox-init's reason when the set-up failed (the sandbox is killed first)
 */
export async function startSandbox(dir: string): Promise<SandboxProcesses> {
  const out = openSync(join(dir, 'init.log'), 'a');
  const child = spawnInit(dir, out);
  closeSync(out);
  return adoptStarted(child, dir);
}

/** SIGKILLs the sandbox's PID 1 (the kernel then kills every process in it) and waits until all are gone. */
export async function killSandbox(p: SandboxProcesses): Promise<void> {
  signalProcess(p.init, 'SIGKILL');
  await poll('sandbox processes to exit', 10_000, () => (isAlive(p.init) ? undefined : true)).catch(
    () => undefined,
  );
  signalProcess(p.unshare, 'SIGKILL');
  await poll('unshare to exit', 5000, () => (isAlive(p.unshare) ? undefined : true)).catch(() => undefined);
}

/** SIGKILLs each of `refs` and waits (up to 10 s) until all are gone. */
export async function killProcesses(refs: ProcessRef[]): Promise<void> {
  for (const ref of refs) signalProcess(ref, 'SIGKILL');
  await poll('killed processes to exit', 10_000, () => (refs.some(isAlive) ? undefined : true)).catch(
    () => undefined,
  );
}

/** The namespace flags of `nsenter` for entering a sandbox (root and all but the user namespace). */
function enter(init: ProcessRef, workingDir?: string): string[] {
  return [
    '-t',
    String(init.pid),
    '-m',
    '-u',
    '-i',
    '-n',
    '-p',
    '-r',
    workingDir ? `--wd=${workingDir}` : '-w',
  ];
}

/** A container run that was started: the shim as seen from the host, and the nsenter child when ours. */
export interface StartedRun {
  shim: ProcessRef;
  /** Exits when the shim exits; absent for runs adopted after an operator restart. */
  child?: ChildProcess;
}

/**
 * Starts one container run: container-shim.sh inside the sandbox with `runDir` (host path) prepared
 * (`env`, optional `cgroups`). `runDirInSandbox` is the same directory as the sandbox sees it.
 */
export async function startContainerRun(
  init: ProcessRef,
  runDir: string,
  runDirInSandbox: string,
  workingDir: string,
  argv: string[],
  logMaxBytes: number,
): Promise<StartedRun> {
  shimText ??= readFileSync(join(here, 'container-shim.sh'), 'utf8');
  const out = openSync(join(runDir, 'shim.log'), 'a');
  const child = spawn(
    'nsenter',
    [...enter(init), '--', 'bash', '-c', shimText, 'container-shim', runDirInSandbox, workingDir, ...argv],
    {
      detached: true,
      stdio: ['ignore', out, out],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SPILLWAY_LOG_MAX_BYTES: String(logMaxBytes) },
    },
  );
  closeSync(out);
  child.unref();
  child.on('error', () => undefined);
  const shim = await poll<ProcessRef>('container shim to start', 10_000, () => {
    const started = existsSync(join(runDir, 'started'));
    const [pid] = child.pid ? childrenOf(child.pid) : [];
    const ref = started && pid ? refOf(pid) : undefined;
    if (ref) return ref;
    if (child.exitCode !== null || child.signalCode !== null) {
      // A container that exits at once can take its shim with it before we look: its files tell the rest.
      if (started) return { pid: 0, startTime: 'exited' };
      throw new Error(
        `container shim exited at start (${child.exitCode ?? child.signalCode}); see ${runDir}/shim.log`,
      );
    }
    return undefined;
  });
  return { shim, child };
}

/** What {@link findRun} found of a container run: its shim, or only a shim or `nsenter` still starting. */
export type FoundRun = { shim: ProcessRef } | { starting: ProcessRef } | undefined;

function cmdline(pid: string | number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** The process's pid in its own (innermost) PID namespace: the `$$` a shim in a sandbox writes. */
function innerPid(pid: string | number): number | undefined {
  try {
    const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]!.trim().split(/\s+/).at(-1)) : undefined;
  } catch {
    return undefined;
  }
}

function pidNamespace(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** True when `argv` is a container-shim (or the nsenter starting one) of the run directory `runDirInSandbox`. */
function isShimOf(argv: string[], runDirInSandbox: string): boolean {
  const i = argv.indexOf('container-shim');
  return i > 0 && argv[i + 1] === runDirInSandbox;
}

/**
 * Finds a container run by its identity, through /proc: its shim is the process in the sandbox's PID namespace
 * with the run's directory on its command line and the pid the shim wrote first thing (`shim.pid`, given as
 * `shimPid`; the shim's subshells share its command line, not its pid). Without `shimPid` yet, or with only
 * the host's `nsenter` for it, the run is still starting. This is how a restarted operator finds a run whose
 * `shim.ref` it never wrote (it died between the start and the write).
 */
export function findRun(init: ProcessRef, runDirInSandbox: string, shimPid: number | undefined): FoundRun {
  const ns = pidNamespace(init.pid);
  if (!ns || !isAlive(init)) return undefined;
  let starting: ProcessRef | undefined;
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const argv = cmdline(p);
    if (!isShimOf(argv, runDirInSandbox)) continue;
    if (argv[0] === 'nsenter') {
      if (argv[argv.indexOf('-t') + 1] === String(init.pid)) starting = refOf(Number(p)) ?? starting;
      continue;
    }
    if (pidNamespace(p) !== ns) continue;
    const ref = refOf(Number(p));
    if (ref && shimPid === undefined) starting = ref;
    else if (ref && innerPid(p) === shimPid) return { shim: ref };
  }
  return starting ? { starting } : undefined;
}

/**
 * Waits (up to 10 s) for a run that is still starting to have its shim, or to end: the shim when it started,
 * undefined when the start failed. `shimPid` reads the run's `shim.pid` (written by the shim as it starts).
 */
export async function awaitRun(
  init: ProcessRef,
  runDirInSandbox: string,
  shimPid: () => number | undefined,
): Promise<ProcessRef | undefined> {
  const found = await poll('a starting container shim', 10_000, () => {
    const f = findRun(init, runDirInSandbox, shimPid());
    return f && 'starting' in f ? undefined : (f ?? null);
  }).catch(() => null);
  return found?.shim;
}

/** How a process runs inside a sandbox for exec and exec probes. */
export interface InSandboxCommand {
  init: ProcessRef;
  argv: string[];
  env: { name: string; value: string }[];
  workingDir: string;
  /** Allocate a terminal (through util-linux `script`). */
  tty?: boolean;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Spawns `cmd` inside the sandbox; the caller wires stdio and waits for `exit`. */
export function spawnInSandbox(cmd: InSandboxCommand): ChildProcess {
  const env = cmd.env.map((e) => `${e.name}=${e.value}`);
  // `env -C`: nsenter's own --wd resolves outside the sandbox's root.
  const inner = ['env', '-i', '-C', cmd.workingDir, ...env, ...cmd.argv];
  const argv = cmd.tty ? ['script', '-qfec', inner.map(shellQuote).join(' '), '/dev/null'] : inner;
  return spawn('nsenter', [...enter(cmd.init), '--', ...argv], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** A sandbox process found by scanning /proc (PID 1 or its `unshare`), with the sandbox's UID. */
export interface FoundProcess {
  uid: string;
  ref: ProcessRef;
}

/**
 * Every process running sandbox-init.sh for a sandbox under `sandboxesDir`, found through /proc: this finds
 * sandboxes whose record was never written (an operator that died in the middle of a create).
 */
export function findSandboxProcesses(sandboxesDir: string): FoundProcess[] {
  const found: FoundProcess[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return found;
  }
  const prefix = sandboxesDir.endsWith('/') ? sandboxesDir : `${sandboxesDir}/`;
  for (const p of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf(SANDBOX_INIT_PATH);
    const dir = i >= 0 ? argv[i + 1] : undefined;
    if (!dir?.startsWith(prefix)) continue;
    const ref = refOf(Number(p));
    if (ref) found.push({ uid: dir.slice(prefix.length).split('/')[0]!, ref });
  }
  return found;
}
