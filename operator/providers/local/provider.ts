/**
 * The `local` provider (docs/architecture.md#providers): each pod is a sandbox of real processes on this host, with its own
 * network, mount, PID, UTS and IPC namespaces, a veth on `spillway0` and an IP from the node's pod CIDR.
 * Images are not pulled: commands run on the host's filesystem. Needs root.
 *
 * State lives in `<stateDir>/sandboxes/<uid>/` (default `/run/spillway/<node>`): the record, volumes, DNS
 * files and each container's runs and logs. Sandboxes outlive the operator; {@link LocalProvider.start}
 * adopts those whose set-up is complete and intact (./adoption.ts) and removes every trace of the others
 * (processes, veths, leases, cgroups, files): dead ones, and half-built ones an operator killed mid-create left.
 */
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release, arch } from 'node:os';
import { join, normalize } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { componentLogger, type Logger } from '../../shared/log.ts';
import {
  describeKey,
  NotFoundError,
  sandboxKey,
  type ExecResult,
  type ExecStreams,
  type LogOptions,
  type MaterialisedVolume,
  type NodeCapacity,
  type PodSpecCause,
  type PodStats,
  type ResolvedPodInputs,
  type SandboxInstance,
  type SandboxEvent,
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
  type Unsubscribe,
} from '../types.ts';
import { inBatches, setupProblems, type SetupStep } from './adoption.ts';
import {
  ContainerCgroup,
  detectCgroups,
  podCgroupUids,
  removePodCgroups,
  type CgroupMode,
} from './cgroups.ts';
import { readRunLog } from './logs.ts';
import { LocalNetwork } from './network.ts';
import { LOCAL_NODE_CIDR } from './factory.ts';
import { hostsFile, planSandbox, resolvConf, type ClusterDNS } from './plan.ts';
import { findSandboxProcesses, killProcesses, killSandbox, spawnInSandbox, startSandbox } from './runtime.ts';
import { LocalSandbox, type SandboxRecord, type SupervisionOptions } from './sandbox.ts';
import { StatusNotifier } from '../status-notifier.ts';
import { execIn } from './exec.ts';
import { attachToRun } from './attach.ts';
import { dialSandbox } from './port-forward.ts';
import { localUnsupported } from './rules.ts';
import { applyTerminalSizes, firstTerminalSize, sizedCommand } from './tty.ts';
import { isMaterialised, writeVolume } from './volumes.ts';

/** Options of a {@link LocalProvider}. */
export interface LocalProviderOptions {
  /** The virtual node's name: state and cgroups are per node. */
  nodeName: string;
  /** Default `/run/spillway/<nodeName>`. */
  stateDir?: string;
  /** This node's pod CIDR (default `10.250.0.0/24`); the bridge gets its first address. */
  nodeCIDR?: string;
  /** All local sandboxes' pod CIDR, guarded (default `10.250.0.0/16`). */
  podCIDR?: string;
  /** The cluster's service CIDR, guarded (default `10.96.0.0/16`). */
  serviceCIDR?: string;
  bridge?: string;
  /** Cluster DNS ClusterIP (default `10.96.0.10`) and domain (default `cluster.local`). */
  dns?: Partial<Omit<ClusterDNS, 'hostResolvConf'>>;
  supervision?: Partial<SupervisionOptions>;
  /** Capacity overrides (default: this host's CPUs and memory, 110 pods). */
  capacity?: Partial<NodeCapacity>;
  logger?: Logger;
  /** Told after each step of a sandbox's set-up and of a container's start; for tests, which crash there. */
  step?: (name: SetupStep, uid: string) => void;
}

const supervisionDefaults: SupervisionOptions = {
  backoffMs: 10_000,
  maxBackoffMs: 300_000,
  backoffResetMs: 600_000,
  logMaxBytes: 10 * 1024 * 1024,
};

/** A {@link SandboxProvider} running pods as Linux-namespace sandboxes on this host. */
export class LocalProvider implements SandboxProvider {
  readonly name = 'local';
  readonly network: LocalNetwork;
  readonly stateDir: string;
  readonly #options: LocalProviderOptions;
  readonly #dns: ClusterDNS;
  readonly #supervision: SupervisionOptions;
  readonly #log: Logger;
  readonly #sandboxes = new Map<string, LocalSandbox>();
  readonly #deleting = new Map<string, Promise<void>>();
  readonly #creating = new Map<string, { key: SandboxKey; done: Promise<SandboxStatus> }>();
  readonly #eventListeners = new Set<(event: SandboxEvent) => void>();
  readonly #notifier = new StatusNotifier<LocalSandbox>((s) => this.#sandboxes.get(s.key.uid) === s);
  #cgroups: CgroupMode = { version: 0, reason: 'not detected yet' };

  private constructor(options: LocalProviderOptions) {
    this.#options = options;
    this.stateDir = options.stateDir ?? join('/run/spillway', options.nodeName);
    this.network = new LocalNetwork({
      nodeCIDR: options.nodeCIDR ?? LOCAL_NODE_CIDR,
      podCIDR: options.podCIDR ?? '10.250.0.0/16',
      serviceCIDR: options.serviceCIDR ?? '10.96.0.0/16',
      leaseDir: join(this.stateDir, 'leases'),
      ...(options.bridge ? { bridge: options.bridge } : {}),
    });
    this.#dns = {
      nameserver: options.dns?.nameserver ?? '10.96.0.10',
      domain: options.dns?.domain ?? 'cluster.local',
      hostResolvConf: readFileSync('/etc/resolv.conf', 'utf8'),
    };
    this.#supervision = {
      ...supervisionDefaults,
      ...options.supervision,
      ...(options.step ? { step: options.step } : {}),
    };
    this.#log = options.logger ?? componentLogger('local-provider', { node: options.nodeName });
  }

  /**
   * Installs the network guard and the bridge, adopts the sandboxes a previous operator left running, and
   * removes whatever a crash left half-made. Rejects when not root or when the guard cannot be installed.
   */
  static async start(options: LocalProviderOptions): Promise<LocalProvider> {
    const p = new LocalProvider(options);
    await p.network.start();
    p.#cgroups = detectCgroups();
    if (p.#cgroups.version === 0) p.#log.warn({ reason: p.#cgroups.reason }, 'no cgroup limits on this host');
    mkdirSync(join(p.stateDir, 'sandboxes'), { recursive: true });
    await p.#adoptAll();
    return p;
  }

  #sandboxDir(uid: string): string {
    return join(this.stateDir, 'sandboxes', uid);
  }

  #cgroupFor(uid: string) {
    return (container: string) => new ContainerCgroup(this.#cgroups, this.#options.nodeName, uid, container);
  }

  /**
   * Adopts every sandbox whose set-up is complete and still in place (see {@link setupProblems}); removes
   * every trace of the others (dead, half-built by a create that died, or broken since), which the virtual
   * node then creates again, as it does for any pod without a sandbox.
   */
  async #adoptAll(): Promise<void> {
    const root = join(this.stateDir, 'sandboxes');
    const live = new Set<string>();
    const found = readdirSync(root).map((uid) => ({ uid, record: this.#readRecord(uid) }));
    const problems = await inBatches(found, 8, ({ uid, record }) =>
      record ? setupProblems(record, this.#sandboxDir(uid), this.network, this.#cgroupFor(uid)) : undefined,
    );
    for (const [i, { uid, record }] of found.entries()) {
      const wrong = problems[i];
      if (record && wrong?.length === 0) {
        await this.#sandbox(record, this.#sandboxDir(uid)).adopt();
        live.add(uid);
        this.#log.info({ pod: describeKey(record.key) }, 'adopted running sandbox');
        continue;
      }
      await this.#removeTraces(uid, record);
      const why = wrong ?? ['its set-up never finished'];
      this.#log.info({ uid, problems: why }, 'removed the remains of a sandbox that cannot be adopted');
    }
    // Processes of sandboxes whose directory is gone (the operator died while removing one).
    const strays = findSandboxProcesses(root).filter((proc) => !live.has(proc.uid));
    await killProcesses(strays.map((proc) => proc.ref));
    for (const what of await this.network.collect(live)) this.#log.info({ what }, 'removed leftover');
    for (const uid of podCgroupUids(this.#cgroups, this.#options.nodeName)) {
      if (!live.has(uid)) removePodCgroups(this.#cgroups, this.#options.nodeName, uid);
    }
  }

  /** A sandbox's record, or undefined when its set-up never finished (or the file is unreadable). */
  #readRecord(uid: string): SandboxRecord | undefined {
    try {
      return JSON.parse(readFileSync(join(this.#sandboxDir(uid), 'sandbox.json'), 'utf8')) as SandboxRecord;
    } catch {
      return undefined;
    }
  }

  /** Kills whatever is left of a sandbox and removes its veth, lease, cgroups and files. */
  async #removeTraces(uid: string, record: SandboxRecord | undefined): Promise<void> {
    if (record) await killSandbox(record.processes);
    const procs = findSandboxProcesses(join(this.stateDir, 'sandboxes')).filter((p) => p.uid === uid);
    await killProcesses(procs.map((p) => p.ref));
    await this.network.detach(uid);
    removePodCgroups(this.#cgroups, this.#options.nodeName, uid);
    rmSync(this.#sandboxDir(uid), { recursive: true, force: true });
  }

  #sandbox(record: SandboxRecord, dir: string): LocalSandbox {
    const sandbox = new LocalSandbox(
      record,
      dir,
      this.#supervision,
      this.#cgroupFor(record.key.uid),
      () => this.#notifier.changed(sandbox),
      (type, reason, message) => {
        for (const l of this.#eventListeners) l({ key: record.key, type, reason, message });
      },
    );
    this.#sandboxes.set(record.key.uid, sandbox);
    return sandbox;
  }

  async create(pod: V1Pod, inputs: ResolvedPodInputs = {}): Promise<SandboxStatus> {
    const key = sandboxKey(pod);
    const existing = this.#sandboxes.get(key.uid);
    if (existing) return existing.status();
    const inFlight = this.#creating.get(key.uid);
    if (inFlight) return inFlight.done;
    const done = this.#create(key, pod, inputs).finally(() => this.#creating.delete(key.uid));
    this.#creating.set(key.uid, { key, done });
    return done;
  }

  async #create(key: SandboxKey, pod: V1Pod, inputs: ResolvedPodInputs): Promise<SandboxStatus> {
    const plan = planSandbox(key, pod, inputs);
    const dir = this.#sandboxDir(key.uid);
    const step = (name: SetupStep) => this.#options.step?.(name, key.uid);
    await this.#removeTraces(key.uid, undefined); // a create that died half-way leaves nothing to build on
    mkdirSync(join(dir, 'containers'), { recursive: true });
    step('state-dir');
    try {
      const ip = this.network.lease(key.uid);
      step('lease');
      const mounts = this.#writeFiles(dir, pod, inputs, plan.hostname, ip, plan);
      writeFileSync(join(dir, 'mounts'), mounts.map((m) => `${m.source}\0${m.target}\0${m.mode}\0`).join(''));
      step('files');
      const conditions: SandboxRecord['conditions'] = [];
      const cgroup = this.#cgroupFor(key.uid);
      const problems: string[] = [];
      for (const c of [...plan.initContainers, ...plan.containers]) {
        problems.push(...cgroup(c.name).create(c.limits));
      }
      const wantsLimits = [...plan.initContainers, ...plan.containers].some(
        (c) => c.limits.milliCPU || c.limits.memoryBytes,
      );
      if (wantsLimits && (this.#cgroups.version === 0 || problems.length > 0)) {
        const message = `CPU and memory limits are not enforced on this host: ${this.#cgroups.version === 0 ? this.#cgroups.reason : problems.join('; ')}`;
        conditions.push({
          type: 'spillway.dev/ResourceLimitsEnforced',
          status: 'False',
          reason: 'CgroupsUnavailable',
          message,
        });
        // Also an Event on the pod, where `kubectl describe` users look first; asynchronous, like every event.
        queueMicrotask(() => {
          for (const l of this.#eventListeners)
            l({ key, type: 'Warning', reason: 'ResourceLimitsNotEnforced', message });
        });
      }
      step('cgroups');
      const processes = await startSandbox(dir);
      step('namespaces');
      await this.network.attach(key.uid, processes.init, ip, step);
      step('network');
      const now = new Date().toISOString();
      const record: SandboxRecord = {
        key,
        createdAt: now,
        startTime: now,
        pod,
        plan,
        ip,
        processes,
        conditions,
      };
      // Written last and atomically: a sandbox with a record is a complete one (see #adoptAll).
      writeFileSync(join(dir, 'sandbox.json.tmp'), JSON.stringify(record));
      renameSync(join(dir, 'sandbox.json.tmp'), join(dir, 'sandbox.json'));
      step('record');
      const sandbox = this.#sandbox(record, dir);
      sandbox.start();
      return sandbox.status();
    } catch (err) {
      await this.#removeTraces(key.uid, undefined);
      throw err;
    }
  }

  /** Writes volumes and DNS files; returns the bind mounts (sources relative to the sandbox directory). */
  #writeFiles(
    dir: string,
    pod: V1Pod,
    inputs: ResolvedPodInputs,
    hostname: string,
    ip: string,
    plan: ReturnType<typeof planSandbox>,
  ): { source: string; target: string; mode: 'ro' | 'rw' }[] {
    for (const volume of plan.volumes) writeVolume(join(dir, 'volumes', volume), inputs.volumes?.[volume]);
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc', 'resolv.conf'), resolvConf(pod, this.#dns));
    writeFileSync(join(dir, 'etc', 'hosts'), hostsFile(pod, ip, this.#dns.domain));
    writeFileSync(join(dir, 'etc', 'hostname'), hostname + '\n');
    writeFileSync(join(dir, 'hostname'), hostname);
    const mounts: { source: string; target: string; mode: 'ro' | 'rw' }[] = [
      { source: 'etc/resolv.conf', target: '/etc/resolv.conf', mode: 'ro' },
      { source: 'etc/hosts', target: '/etc/hosts', mode: 'ro' },
      { source: 'etc/hostname', target: '/etc/hostname', mode: 'ro' },
    ];
    for (const c of [...plan.initContainers, ...plan.containers]) {
      for (const m of c.mounts) {
        const source = normalize(join('volumes', m.volume, m.subPath));
        if (!source.startsWith(join('volumes', m.volume))) continue;
        if (m.subPath && !existsSync(join(dir, source))) mkdirSync(join(dir, source), { recursive: true });
        mounts.push({ source, target: m.mountPath, mode: m.readOnly ? 'ro' : 'rw' });
      }
    }
    return mounts;
  }

  async delete(key: SandboxKey, options: { gracePeriodSeconds?: number } = {}): Promise<void> {
    const running = this.#deleting.get(key.uid);
    if (running) return running;
    const deleting = this.#delete(key, options.gracePeriodSeconds).finally(() =>
      this.#deleting.delete(key.uid),
    );
    this.#deleting.set(key.uid, deleting);
    return deleting;
  }

  async #delete(key: SandboxKey, gracePeriodSeconds: number | undefined): Promise<void> {
    await this.#creating.get(key.uid)?.done.catch(() => undefined);
    const sandbox = this.#sandboxes.get(key.uid);
    if (!sandbox) {
      if (existsSync(this.#sandboxDir(key.uid))) await this.#removeTraces(key.uid, undefined);
      return;
    }
    const grace = gracePeriodSeconds ?? sandbox.record.plan.terminationGracePeriodSeconds;
    await sandbox.terminate(grace);
    this.#sandboxes.delete(key.uid);
    this.#notifier.forget(sandbox);
    await this.#removeTraces(key.uid, sandbox.record);
  }

  /**
   * Rewrites the files of the named configMap/secret/downwardAPI/projected volumes in place (each file
   * atomically; files no longer listed go), so that the running containers see the new content through their
   * bind mounts. Names of other volumes (emptyDir) or of no volume of the pod are ignored: their files are
   * the containers' own.
   */
  async updateVolumes(key: SandboxKey, volumes: Record<string, MaterialisedVolume>): Promise<void> {
    const sandbox = this.#get(key);
    for (const v of sandbox.record.pod.spec?.volumes ?? []) {
      const files = volumes[v.name];
      if (!files || !isMaterialised(v)) continue;
      writeVolume(join(sandbox.dir, 'volumes', v.name), files);
    }
  }

  async status(key: SandboxKey): Promise<SandboxStatus> {
    return this.#get(key).status();
  }

  async list(): Promise<SandboxInstance[]> {
    const out: SandboxInstance[] = [...this.#sandboxes.values()].map((s) => ({
      key: { ...s.key },
      createdAt: new Date(s.record.createdAt),
      providerID: `local://${s.key.uid}`,
      status: s.status(),
    }));
    for (const [uid] of this.#creating) {
      if (!this.#sandboxes.has(uid))
        out.push({ key: { uid, namespace: '', name: '' }, createdAt: new Date() });
    }
    return out;
  }

  onStatus(listener: (status: SandboxStatus) => void): Unsubscribe {
    return this.#notifier.subscribe(listener);
  }

  /** Events about sandboxes (limits this host cannot enforce; failed liveness and startup probes), recorded on the pods by the virtual node. */
  onEvent(listener: (event: SandboxEvent) => void): Unsubscribe {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  async logs(key: SandboxKey, container: string, options: LogOptions = {}): Promise<Readable> {
    const c = this.#get(key).container(container);
    if (!c) throw new NotFoundError(`container "${container}" not found in pod ${describeKey(key)}`, { key });
    const run = options.previous ? c.run - 1 : c.run;
    if (run < 1) {
      const what = options.previous ? 'previous terminated container' : 'container';
      throw new NotFoundError(
        `${what} "${container}" in pod ${describeKey(key)} not found (it has not run yet)`,
        {
          key,
        },
      );
    }
    return readRunLog(c.runDir(run), options.previous ? { ...options, follow: false } : options);
  }

  async exec(
    key: SandboxKey,
    container: string,
    command: string[],
    streams: ExecStreams,
  ): Promise<ExecResult> {
    const sandbox = this.#get(key);
    const c = sandbox.container(container);
    if (!c) throw new NotFoundError(`container "${container}" not found in pod ${describeKey(key)}`, { key });
    if (!c.running) throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    // `kubectl exec -it`: the command starts at the client's size; resizes go to the terminal `script` made.
    const sizes = streams.tty && streams.resize ? await firstTerminalSize(streams.resize) : undefined;
    const child = spawnInSandbox({
      init: sandbox.record.processes.init,
      argv: sizes?.first ? sizedCommand(command, sizes.first) : command,
      env: c.plan.env,
      workingDir: c.plan.workingDir,
      tty: streams.tty,
    });
    if (sizes && child.pid) void applyTerminalSizes(child.pid, sizes.rest);
    return execIn(child, streams);
  }

  async stats(key: SandboxKey): Promise<PodStats> {
    return this.#stats(this.#get(key), new Date());
  }

  async statsSummary(): Promise<PodStats[]> {
    const now = new Date();
    return [...this.#sandboxes.values()].filter((s) => s.phase === 'Running').map((s) => this.#stats(s, now));
  }

  #stats(s: LocalSandbox, time: Date): PodStats {
    const containers = s.containers.map((c) => {
      const u = c.cgroup.usage();
      const startTime = c.state.kind === 'running' ? c.state.startedAt : time;
      return {
        name: c.plan.name,
        startTime,
        cpu: { usageNanoCores: 0, usageCoreNanoSeconds: u.cpuNanoSeconds },
        memory: { workingSetBytes: u.workingSetBytes, usageBytes: u.memoryBytes },
      };
    });
    const sum = (f: (c: (typeof containers)[number]) => number) => containers.reduce((a, c) => a + f(c), 0);
    return {
      key: { ...s.key },
      time,
      startTime: new Date(s.record.startTime),
      cpu: { usageNanoCores: 0, usageCoreNanoSeconds: sum((c) => c.cpu.usageCoreNanoSeconds) },
      memory: {
        workingSetBytes: sum((c) => c.memory.workingSetBytes),
        usageBytes: sum((c) => c.memory.usageBytes),
      },
      network: netDev(s.record.processes.init.pid),
      containers,
    };
  }

  async capacity(): Promise<NodeCapacity> {
    const custom = this.#options.capacity ?? {};
    return {
      cpu: String(cpus().length),
      memory: `${Math.floor(totalmem() / 1024)}Ki`,
      pods: '110',
      ...custom,
      nodeInfo: {
        operatingSystem: 'linux',
        architecture: arch() === 'x64' ? 'amd64' : arch(),
        kernelVersion: release(),
        osImage: 'spillway local sandboxes (host filesystem)',
        containerRuntimeVersion: 'local://0.1.0',
        ...custom.nodeInfo,
      },
    };
  }

  async ping(): Promise<void> {
    if (!existsSync(`/sys/class/net/${this.network.bridge}`)) {
      throw new Error(`bridge ${this.network.bridge} is gone: sandboxes have no network`);
    }
  }

  async close(): Promise<void> {
    for (const s of this.#sandboxes.values()) s.detach();
    this.#sandboxes.clear();
  }

  /** The local provider's static refusals (./rules.ts); planSandbox refuses the same fields at create. */
  unsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
    return localUnsupported(spec, base);
  }

  /** `kubectl attach`: the container's output from now on (./attach.ts: output only). */
  async attach(key: SandboxKey, container: string, streams: ExecStreams): Promise<ExecResult> {
    const c = this.#get(key).container(container);
    if (!c) throw new NotFoundError(`container "${container}" not found in pod ${describeKey(key)}`, { key });
    if (!c.running) throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    return attachToRun(c.runDir(), streams);
  }

  /** `kubectl port-forward`: a connection to the sandbox's address over the bridge (./port-forward.ts). */
  async portForward(key: SandboxKey, port: number): Promise<Duplex> {
    return dialSandbox(this.#get(key).record.ip, port);
  }

  #get(key: SandboxKey): LocalSandbox {
    const s = this.#sandboxes.get(key.uid);
    if (!s) throw new NotFoundError(`no local sandbox for pod ${describeKey(key)}`, { key });
    return s;
  }
}

/** Bytes received and sent on the sandbox's eth0, read through its PID 1's view of /proc/net/dev. */
function netDev(pid: number): { rxBytes: number; txBytes: number } | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
      .split('\n')
      .find((l) => l.trim().startsWith('eth0:'));
    if (!line) return undefined;
    const f = line.split(':')[1]!.trim().split(/\s+/).map(Number);
    return { rxBytes: f[0]!, txBytes: f[8]! };
  } catch {
    return undefined;
  }
}
