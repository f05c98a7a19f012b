/**
 * The `local` provider (docs/architecture.md#providers): each pod runs from its images in a sandbox of the
 * container runtime on this host (containerd, through the CRI v1 API; runc by default, or the RuntimeClass handler
 * of `runtimeHandler`), with its network from the CNI plugins on the bridge `spillway0`, behind the network guard.
 * Needs root (the guard and the bridge).
 *
 * State lives in the runtime (sandboxes and containers, labelled with this node and the pod's UID) and in
 * `<stateDir>/pods/<namespace>_<name>_<uid>/` (default `/run/spillway/<node>`): the pod's record, its volumes, its
 * `/etc/hosts`, termination messages and the containers' CRI log files (`logs/<container>/<attempt>.log`).
 * Sandboxes outlive the operator. The record is written last, once the sandbox runs with its network and files:
 * {@link LocalProvider.start} adopts the sandboxes whose record names them, and removes every other sandbox of
 * this node (a create killed half-way) and every directory without a sandbox; the virtual node creates those pods
 * again. Containers are supervised level-based from the runtime's view (./pod-worker.ts), so a container that a
 * killed operator created but never started is removed and created again, never run twice.
 */
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { arch, cpus, release, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { componentLogger, type Logger } from '../../shared/log.ts';
import {
  describeKey,
  isNotFound,
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
  type SandboxEvent,
  type SandboxInstance,
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
  type Unsubscribe,
} from '../types.ts';
import { StatusNotifier } from '../status-notifier.ts';
import { CriClient } from './cri/client.ts';
import { containerLogFile, readContainerLog } from './cri/logs.ts';
import { UsageSampler, type StartTimes } from './cri/stats.ts';
import { attachOverSpdy, execOverSpdy, portForwardOverSpdy } from './cri/streaming.ts';
import { LOCAL_NODE_CIDR } from './factory.ts';
import { inCIDR, LocalNetwork } from './network.ts';
import {
  checkRunnable,
  hostsFile,
  NODE_LABEL,
  podCgroupParent,
  POD_UID_LABEL,
  sandboxConfig,
  type ClusterDNS,
  type PodPaths,
} from './plan.ts';
import { PodWorker, type ContainerStep, type PodRecord, type SupervisionOptions } from './pod-worker.ts';
import { localUnsupported } from './rules.ts';
import { isMaterialised, makeEmptyDir, writeVolume } from './volumes.ts';

/** The steps of a create, each reported once done (tests crash the operator there); `record` completes it. */
export const CREATE_STEPS = ['state-dir', 'sandbox', 'record'] as const;
/** A step of a create or of a container's start. */
export type SetupStep = (typeof CREATE_STEPS)[number] | ContainerStep;

/** Options of a {@link LocalProvider}. */
export interface LocalProviderOptions {
  /** The virtual node's name: sandboxes are labelled with it, state is per node. */
  nodeName: string;
  /** The CRI socket of the container runtime (containerd's `containerd.sock`). */
  criEndpoint: string;
  /** The CRI v1 proto (default: `bin/cri/api.proto` of this checkout, or `$SPILLWAY_CRI_PROTO`). */
  criProto?: string;
  /** The RuntimeClass handler sandboxes run with (default `runc`; e.g. `kata`, `runsc` where installed). */
  runtimeHandler?: string;
  /** Default `/run/spillway/<nodeName>`. */
  stateDir?: string;
  /** This node's pod CIDR (default `10.250.0.0/24`); the bridge gets its first address. */
  nodeCIDR?: string;
  /** All local pods' CIDR, guarded (default `10.250.0.0/16`). */
  podCIDR?: string;
  /** The cluster's service CIDR, guarded (default `10.96.0.0/16`). */
  serviceCIDR?: string;
  bridge?: string;
  /**
   * Whether this provider installs the guard and the bridge (default true). False only where no pod gets an
   * address on this host: unit tests over the fake runtime, which runs no CNI.
   */
  manageNetwork?: boolean;
  /** Cluster DNS ClusterIP (default `10.96.0.10`) and domain (default `cluster.local`). */
  dns?: Partial<Omit<ClusterDNS, 'hostResolvConf'>>;
  supervision?: Partial<SupervisionOptions>;
  /** How often the runtime is listed for changes the event stream may have missed (default 500 ms; 2 s while events flow). */
  pollMs?: number;
  /** Capacity overrides (default: this host's CPUs and memory, 110 pods). */
  capacity?: Partial<NodeCapacity>;
  logger?: Logger;
  /** Told after each step of a create and of a container's start; for tests, which crash there. */
  step?: (name: SetupStep, uid: string) => void;
}

const supervisionDefaults: SupervisionOptions = {
  backoffMs: 10_000,
  maxBackoffMs: 300_000,
  backoffResetMs: 600_000,
};

/** A {@link SandboxProvider} running pods from their images in containerd sandboxes on this host. */
export class LocalProvider implements SandboxProvider {
  readonly name = 'local';
  readonly network: LocalNetwork;
  readonly stateDir: string;
  readonly cri: CriClient;
  readonly #options: LocalProviderOptions;
  readonly #dns: ClusterDNS;
  readonly #supervision: SupervisionOptions;
  readonly #log: Logger;
  readonly #workers = new Map<string, PodWorker>();
  readonly #deleting = new Map<string, Promise<void>>();
  readonly #creating = new Map<string, { key: SandboxKey; done: Promise<SandboxStatus> }>();
  readonly #eventListeners = new Set<(event: SandboxEvent) => void>();
  readonly #notifier = new StatusNotifier<PodWorker>((w) => this.#workers.get(w.key.uid) === w);
  /** What the last poll saw of each sandbox's containers (`id:state` joined), to sync only what changed. */
  #seen = new Map<string, string>();
  #pollTimer: NodeJS.Timeout | undefined;
  #lastPoll = 0;
  #stopEvents: (() => void) | undefined;
  #eventsUp = false;
  #closed = false;
  #runtimeVersion = '';
  readonly #sampler = new UsageSampler();

  private constructor(options: LocalProviderOptions) {
    this.#options = options;
    this.stateDir = options.stateDir ?? join('/run/spillway', options.nodeName);
    this.network = new LocalNetwork({
      nodeCIDR: options.nodeCIDR ?? LOCAL_NODE_CIDR,
      podCIDR: options.podCIDR ?? '10.250.0.0/16',
      serviceCIDR: options.serviceCIDR ?? '10.96.0.0/16',
      ...(options.bridge ? { bridge: options.bridge } : {}),
    });
    this.#dns = {
      nameserver: options.dns?.nameserver ?? '10.96.0.10',
      domain: options.dns?.domain ?? 'cluster.local',
      hostResolvConf: readFileSync('/etc/resolv.conf', 'utf8'),
    };
    this.#supervision = { ...supervisionDefaults, ...options.supervision };
    this.#log = options.logger ?? componentLogger('local-provider', { node: options.nodeName });
    this.cri = new CriClient({
      endpoint: options.criEndpoint,
      ...(options.criProto ? { protoPath: options.criProto } : {}),
    });
  }

  /**
   * Installs the network guard and the bridge, checks that the runtime answers, adopts the sandboxes a previous
   * operator left running, and removes whatever a crash left half-made. Rejects when not root, when the guard
   * cannot be installed, or when the runtime does not answer.
   */
  static async start(options: LocalProviderOptions): Promise<LocalProvider> {
    const p = new LocalProvider(options);
    try {
      if (options.manageNetwork !== false) await p.network.start();
      const v = await p.cri.version();
      p.#runtimeVersion = `${v.runtimeName}://${v.runtimeVersion}`;
      mkdirSync(join(p.stateDir, 'pods'), { recursive: true, mode: 0o700 });
      await p.#adoptAll();
      p.#subscribe();
      p.#schedulePoll();
      return p;
    } catch (err) {
      p.cri.close();
      throw err;
    }
  }

  // --- where things are -------------------------------------------------------------------------------------

  #podDir(key: SandboxKey): string {
    return join(this.stateDir, 'pods', `${key.namespace}_${key.name}_${key.uid}`);
  }

  #paths(key: SandboxKey): PodPaths {
    const dir = this.#podDir(key);
    return {
      volume: (name) => join(dir, 'volumes', name),
      hosts: join(dir, 'etc', 'hosts'),
      terminationMessage: (container, attempt) => join(dir, 'termination', container, String(attempt)),
      logDirectory: join(dir, 'logs'),
    };
  }

  /** The pod directories of `uid` (normally one; a pod renamed under the same UID cannot happen, but be thorough). */
  #dirsOf(uid: string): string[] {
    const root = join(this.stateDir, 'pods');
    try {
      return readdirSync(root)
        .filter((n) => n.endsWith(`_${uid}`))
        .map((n) => join(root, n));
    } catch {
      return [];
    }
  }

  #readRecord(dir: string): PodRecord | undefined {
    try {
      return JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8')) as PodRecord;
    } catch {
      return undefined;
    }
  }

  #worker(record: PodRecord): PodWorker {
    const secrets = (record as PodRecord & { pullSecrets?: string[] }).pullSecrets ?? [];
    const worker: PodWorker = new PodWorker(
      record,
      {
        cri: this.cri,
        nodeName: this.#options.nodeName,
        paths: this.#paths(record.key),
        supervision: this.#supervision,
        log: this.#log,
        changed: () => this.#notifier.changed(worker),
        event: (type, reason, message) => {
          for (const l of this.#eventListeners) l({ key: record.key, type, reason, message });
        },
        ...(this.#options.step ? { step: this.#options.step } : {}),
        sandboxLost: (why) => this.#replaceSandbox(worker, why),
      },
      secrets.map((s) => Buffer.from(s, 'base64')),
    );
    this.#workers.set(record.key.uid, worker);
    return worker;
  }

  // --- adoption ---------------------------------------------------------------------------------------------

  /**
   * Adopts every sandbox of this node whose record names it and which is still ready; removes the others (a
   * create that died before its record, a sandbox the runtime stopped) and every pod directory left without a
   * sandbox. The virtual node then creates the pods that have none, as it does for any pod.
   */
  async #adoptAll(): Promise<void> {
    const sandboxes = await this.cri.listPodSandbox({ [NODE_LABEL]: this.#options.nodeName });
    const adopted = new Set<string>();
    for (const s of sandboxes) {
      const key: SandboxKey = {
        uid: s.labels[POD_UID_LABEL] ?? s.metadata.uid,
        namespace: s.metadata.namespace,
        name: s.metadata.name,
      };
      const record = this.#readRecord(this.#podDir(key));
      if (record && record.sandboxId === s.id && s.state === 'SANDBOX_READY' && !adopted.has(key.uid)) {
        this.#worker(record);
        adopted.add(key.uid);
        this.#log.info({ pod: describeKey(key) }, 'adopted running sandbox');
        continue;
      }
      await this.#removeSandbox(s.id);
      this.#log.info(
        {
          pod: describeKey(key),
          sandbox: s.id,
          why: record ? 'not ready or not its record' : 'its set-up never finished',
        },
        'removed a sandbox that cannot be adopted',
      );
    }
    const root = join(this.stateDir, 'pods');
    for (const name of readdirSync(root)) {
      const uid = name.split('_').pop() ?? '';
      if (!adopted.has(uid)) rmSync(join(root, name), { recursive: true, force: true });
    }
    // And the pod cgroups left without a sandbox: an operator killed between a sandbox's removal and its
    // cgroup's (a delete, a replacement) leaves one that nothing would remove otherwise.
    for (const uid of podCgroupUids(this.#options.nodeName))
      if (!adopted.has(uid)) await removePodCgroups(this.#options.nodeName, uid);
    await Promise.all([...this.#workers.values()].map((w) => w.sync()));
  }

  /** Stops and removes a sandbox; retried a few times, as a container of it may be being removed meanwhile. */
  async #removeSandbox(id: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.cri.stopPodSandbox(id);
        await this.cri.removePodSandbox(id);
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (attempt >= 5) throw err;
        await sleep(200 * attempt);
      }
    }
  }

  /** Removes every sandbox of `uid` on this node and (unless `keepFiles`) the pod's directories. */
  async #removeTraces(uid: string, keepFiles = false): Promise<void> {
    const sandboxes = await this.cri.listPodSandbox({
      [NODE_LABEL]: this.#options.nodeName,
      [POD_UID_LABEL]: uid,
    });
    for (const s of sandboxes) await this.#removeSandbox(s.id);
    if (!keepFiles) for (const dir of this.#dirsOf(uid)) rmSync(dir, { recursive: true, force: true });
    await removePodCgroups(this.#options.nodeName, uid);
  }

  /**
   * Replaces the sandbox of a pod whose sandbox died (its shim was killed, someone removed it), as a kubelet does:
   * a new sandbox with the same files (volumes, logs), and the containers started in it again. Meanwhile the pod
   * is a create in flight (list() shows it, create() waits for it).
   */
  #replaceSandbox(worker: PodWorker, why: string): void {
    const { key, pod, env } = worker.record;
    if (this.#workers.get(key.uid) !== worker || this.#creating.has(key.uid) || this.#deleting.has(key.uid))
      return;
    this.#log.warn({ pod: describeKey(key), why }, 'replacing the sandbox of a pod');
    this.#workers.delete(key.uid);
    this.#notifier.forget(worker);
    const done = this.#create(key, pod, { env }, { replacing: worker.record })
      .catch((err: unknown) => {
        this.#log.error({ pod: describeKey(key), err: String(err) }, 'replacing a sandbox failed');
        throw err;
      })
      .finally(() => this.#creating.delete(key.uid));
    done.catch(() => undefined);
    this.#creating.set(key.uid, { key, done });
  }

  // --- watching the runtime ---------------------------------------------------------------------------------

  /** Follows containerd's container events; on a broken stream, polls alone and subscribes again in 2 s. */
  #subscribe(): void {
    if (this.#closed) return;
    this.#stopEvents = this.cri.containerEvents(
      (event) => {
        this.#eventsUp = true;
        const uid = event.sandbox?.labels[POD_UID_LABEL] ?? event.containers[0]?.labels[POD_UID_LABEL];
        const worker = uid ? this.#workers.get(uid) : undefined;
        if (worker) void worker.sync();
      },
      (err) => {
        this.#eventsUp = false;
        this.#log.debug({ err: err.message }, 'container event stream ended; polling until it is back');
        setTimeout(() => this.#subscribe(), 2000).unref();
      },
    );
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    const every = this.#options.pollMs ?? 500;
    this.#pollTimer = setTimeout(() => {
      const due = !this.#eventsUp || Date.now() - this.#lastPoll >= Math.max(every, 2000);
      (due ? this.#poll() : Promise.resolve()).finally(() => this.#schedulePoll());
    }, every);
    this.#pollTimer.unref();
  }

  /** One listing of this node's containers; syncs the pods whose containers changed. */
  async #poll(): Promise<void> {
    this.#lastPoll = Date.now();
    try {
      const containers = await this.cri.listContainers({ labels: { [NODE_LABEL]: this.#options.nodeName } });
      const now = new Map<string, string>();
      for (const c of containers) {
        const uid = c.labels[POD_UID_LABEL] ?? '';
        now.set(uid, `${now.get(uid) ?? ''}${c.id}:${c.state},`);
      }
      for (const [uid, worker] of this.#workers) {
        if ((now.get(uid) ?? '') !== (this.#seen.get(uid) ?? '')) void worker.sync();
      }
      this.#seen = now;
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'listing the runtime failed');
    }
  }

  // --- lifecycle --------------------------------------------------------------------------------------------

  async create(pod: V1Pod, inputs: ResolvedPodInputs = {}): Promise<SandboxStatus> {
    const key = sandboxKey(pod);
    const existing = this.#workers.get(key.uid);
    if (existing) return existing.status();
    const inFlight = this.#creating.get(key.uid);
    if (inFlight) return inFlight.done;
    checkRunnable(key, pod);
    const done = this.#create(key, pod, inputs).finally(() => this.#creating.delete(key.uid));
    this.#creating.set(key.uid, { key, done });
    return done;
  }

  async #create(
    key: SandboxKey,
    pod: V1Pod,
    inputs: ResolvedPodInputs,
    how: { replacing?: PodRecord } = {},
  ): Promise<SandboxStatus> {
    const step = (name: SetupStep) => this.#options.step?.(name, key.uid);
    // A create that died half-way leaves nothing to build on; a replaced sandbox leaves its files to reuse.
    await this.#removeTraces(key.uid, Boolean(how.replacing));
    const dir = this.#podDir(key);
    const paths = this.#paths(key);
    mkdirSync(paths.logDirectory, { recursive: true });
    mkdirSync(join(dir, 'etc'), { recursive: true });
    if (!how.replacing) {
      for (const v of pod.spec?.volumes ?? []) {
        if (isMaterialised(v)) writeVolume(paths.volume(v.name), inputs.volumes?.[v.name]);
        else makeEmptyDir(paths.volume(v.name));
      }
    }
    step('state-dir');
    const config = sandboxConfig(key, pod, this.#options.nodeName, this.#dns, paths.logDirectory);
    try {
      const sandboxId = await this.cri.runPodSandbox(config, this.#options.runtimeHandler ?? 'runc');
      step('sandbox');
      const status = await this.cri.podSandboxStatus(sandboxId);
      // The guard covers the pod CIDR; an address outside it (a CNI configuration for another network) is refused.
      const podCIDR = this.#options.podCIDR ?? '10.250.0.0/16';
      const outside = status.ips.filter((ip) => ip.includes('.') && !inCIDR(ip, podCIDR));
      if (outside.length > 0) {
        throw new Error(
          `the runtime gave pod ${describeKey(key)} the address ${outside.join(', ')}, outside the guarded ${podCIDR}: fix the CNI configuration (bridge ${this.network.bridge}, subnet ${this.network.nodeCIDR})`,
        );
      }
      writeFileSync(paths.hosts, hostsFile(pod, status.ips[0], this.#dns.domain));
      const pullSecrets = how.replacing
        ? ((how.replacing as PodRecord & { pullSecrets?: string[] }).pullSecrets ?? []).map((b) =>
            Buffer.from(b, 'base64'),
          )
        : (pod.spec?.imagePullSecrets ?? [])
            .map((r) => (r.name ? inputs.imagePullSecrets?.[r.name] : undefined))
            .filter((b): b is Buffer => b !== undefined);
      const record: PodRecord & { pullSecrets: string[] } = {
        key,
        createdAt: new Date().toISOString(),
        pod,
        env: inputs.env ?? {},
        sandboxId,
        sandboxConfig: config,
        ips: status.ips,
        pullSecrets: pullSecrets.map((b) => b.toString('base64')),
      };
      // Written last and atomically: a sandbox with a record is a complete one (see #adoptAll).
      writeFileSync(join(dir, 'record.json.tmp'), JSON.stringify(record), { mode: 0o600 });
      renameSync(join(dir, 'record.json.tmp'), join(dir, 'record.json'));
      step('record');
      const worker = this.#worker(record);
      void worker.sync();
      return worker.status();
    } catch (err) {
      await this.#removeTraces(key.uid, Boolean(how.replacing)).catch(() => undefined);
      throw err;
    }
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
    const worker = this.#workers.get(key.uid);
    if (worker) {
      worker.detach();
      const grace = gracePeriodSeconds ?? worker.record.pod.spec?.terminationGracePeriodSeconds ?? 30;
      // The main containers first, then the native sidecars in reverse order (the kubelet's order).
      await worker.stopContainers(grace);
      this.#workers.delete(key.uid);
      this.#notifier.forget(worker);
    }
    await this.#removeTraces(key.uid);
  }

  /**
   * Writes a new version of the named configMap/secret/downwardAPI/projected volumes (./volumes.ts: the `..data`
   * swap), so that running containers see the new files at once. Other names are ignored.
   */
  async updateVolumes(key: SandboxKey, volumes: Record<string, MaterialisedVolume>): Promise<void> {
    const worker = this.#get(key);
    const paths = this.#paths(key);
    for (const v of worker.record.pod.spec?.volumes ?? []) {
      const files = volumes[v.name];
      if (files && isMaterialised(v)) writeVolume(paths.volume(v.name), files);
    }
  }

  async status(key: SandboxKey): Promise<SandboxStatus> {
    const worker = this.#get(key);
    await worker.refresh();
    return worker.status();
  }

  async list(): Promise<SandboxInstance[]> {
    const sandboxes = await this.cri.listPodSandbox({ [NODE_LABEL]: this.#options.nodeName });
    const out: SandboxInstance[] = [];
    const seen = new Set<string>();
    for (const s of sandboxes) {
      const uid = s.labels[POD_UID_LABEL] ?? s.metadata.uid;
      if (seen.has(uid)) continue;
      seen.add(uid);
      const worker = this.#workers.get(uid);
      out.push({
        key: { uid, namespace: s.metadata.namespace, name: s.metadata.name },
        createdAt: s.createdAt,
        providerID: `containerd://${s.id}`,
        ...(worker && worker.record.sandboxId === s.id ? { status: worker.status() } : {}),
      });
    }
    // Creates in flight before their sandbox exists.
    for (const [uid, { key }] of this.#creating) {
      if (!seen.has(uid)) out.push({ key: { ...key }, createdAt: new Date() });
    }
    return out;
  }

  onStatus(listener: (status: SandboxStatus) => void): Unsubscribe {
    return this.#notifier.subscribe(listener);
  }

  /** Events the node cannot derive from states: failed liveness and startup probes (Unhealthy, Killing). */
  onEvent(listener: (event: SandboxEvent) => void): Unsubscribe {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  // --- streaming ----------------------------------------------------------------------------------------------

  #container(key: SandboxKey, container: string): PodWorker {
    const worker = this.#get(key);
    if (!worker.has(container)) {
      throw new NotFoundError(`container "${container}" not found in pod ${describeKey(key)}`, { key });
    }
    return worker;
  }

  async logs(key: SandboxKey, container: string, options: LogOptions = {}): Promise<Readable> {
    this.#container(key, container);
    const dir = this.#paths(key).logDirectory;
    const path = await containerLogFile(dir, container, options.previous ?? false, key);
    if (options.previous) return readContainerLog(path, { ...options, follow: false }, undefined, { key });
    const runningId = this.#workers.get(key.uid)?.running(container)?.id;
    return readContainerLog(
      path,
      options,
      {
        running: () => {
          const w = this.#workers.get(key.uid);
          return Boolean(runningId && w?.running(container)?.id === runningId);
        },
      },
      { key },
    );
  }

  /** `kubectl exec`: a CRI Exec session through containerd's streaming server over SPDY (./cri/streaming.ts). */
  async exec(
    key: SandboxKey,
    container: string,
    command: string[],
    streams: ExecStreams,
  ): Promise<ExecResult> {
    const run = this.#running(key, container);
    const url = await this.cri.exec({
      container_id: run,
      cmd: command,
      tty: streams.tty,
      stdin: Boolean(streams.stdin),
      stdout: true,
      stderr: !streams.tty && Boolean(streams.stderr),
    });
    return execOverSpdy(url, streams);
  }

  /** `kubectl attach`: the main process's output, and its stdin when the container has `stdin: true`. */
  async attach(key: SandboxKey, container: string, streams: ExecStreams): Promise<ExecResult> {
    const run = this.#running(key, container);
    const spec = [...(this.#get(key).record.pod.spec?.containers ?? [])].find((c) => c.name === container);
    const stdin = Boolean(streams.stdin) && Boolean(spec?.stdin);
    const url = await this.cri.attach({
      container_id: run,
      stdin,
      tty: streams.tty,
      stdout: true,
      stderr: !streams.tty && Boolean(streams.stderr),
    });
    const attached = stdin ? streams : { ...streams, stdin: undefined };
    return attachOverSpdy(url, attached);
  }

  /** `kubectl port-forward`: a connection to `port` in the pod's network namespace, through the runtime. */
  async portForward(key: SandboxKey, port: number): Promise<Duplex> {
    const worker = this.#get(key);
    const url = await this.cri.portForward(worker.record.sandboxId, [port]);
    return portForwardOverSpdy(url, port);
  }

  /** The id of the running container `container` of the pod. */
  #running(key: SandboxKey, container: string): string {
    const run = this.#container(key, container).running(container);
    if (!run) throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    return run.id;
  }

  // --- node ---------------------------------------------------------------------------------------------------

  async stats(key: SandboxKey): Promise<PodStats> {
    const worker = this.#get(key);
    const all = await this.cri.listPodSandboxStats({ [POD_UID_LABEL]: key.uid });
    const sandbox = all.find((x) => x.id === worker.record.sandboxId);
    if (!sandbox) throw new NotFoundError(`the runtime has no stats of pod ${describeKey(key)}`, { key });
    return this.#sampler.podStats(sandbox, startTimes(worker));
  }

  async statsSummary(): Promise<PodStats[]> {
    const all = await this.cri.listPodSandboxStats({ [NODE_LABEL]: this.#options.nodeName });
    return this.#sampler.summary(all, (s) => {
      const worker = this.#workers.get(s.metadata.uid);
      if (!worker || worker.record.sandboxId !== s.id || worker.status().phase !== 'Running')
        return undefined;
      return startTimes(worker);
    });
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
        osImage: 'spillway local provider (containerd)',
        containerRuntimeVersion: this.#runtimeVersion,
        ...custom.nodeInfo,
      },
    };
  }

  async ping(): Promise<void> {
    await this.cri.version();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pollTimer) clearTimeout(this.#pollTimer);
    this.#stopEvents?.();
    for (const w of this.#workers.values()) w.detach();
    await Promise.all([...this.#workers.values()].map((w) => w.settled()));
    this.#workers.clear();
    this.#notifier.clear();
    this.cri.close();
  }

  /** The local provider's static refusals (./rules.ts); create refuses the same fields. */
  unsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
    return localUnsupported(spec, base);
  }

  #get(key: SandboxKey): PodWorker {
    const w = this.#workers.get(key.uid);
    if (!w) throw new NotFoundError(`no local sandbox for pod ${describeKey(key)}`, { key });
    return w;
  }
}

/** The cgroup hierarchies' roots: `/sys/fs/cgroup` (v2) and each controller's mount under it (v1). */
function cgroupRoots(): string[] {
  try {
    return [
      '/sys/fs/cgroup',
      ...readdirSync('/sys/fs/cgroup', { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => join('/sys/fs/cgroup', e.name)),
    ];
  } catch {
    return [];
  }
}

/** The UIDs of the pod cgroups of node `nodeName` in any hierarchy (`<root>/spillway/<node>/pod<uid>`). */
function podCgroupUids(nodeName: string): Set<string> {
  const uids = new Set<string>();
  const nodeDir = dirname(podCgroupParent(nodeName, 'x'));
  for (const root of cgroupRoots()) {
    let names: string[];
    try {
      names = readdirSync(join(root, nodeDir));
    } catch {
      continue; // no pod of this node in this hierarchy
    }
    for (const name of names) if (name.startsWith('pod')) uids.add(name.slice('pod'.length));
  }
  return uids;
}

/**
 * Removes the cgroup of pod `uid` of node `nodeName` in every hierarchy (cgroup v1: one per controller; v2: one),
 * killing what is left in it; without `uid`, every pod cgroup of the node (its sandboxes are gone: cluster-down).
 * The runtime removes its containers' cgroups but not their parent, which is the pod's.
 */
async function removePodCgroups(nodeName: string, uid?: string): Promise<void> {
  const parents = uid
    ? [podCgroupParent(nodeName, uid)]
    : [dirname(podCgroupParent(nodeName, 'x')), dirname(dirname(podCgroupParent(nodeName, 'x')))];
  const roots = cgroupRoots();
  for (let attempt = 1; attempt <= 5; attempt++) {
    let left = false;
    for (const root of roots) {
      for (const parent of parents) {
        if (!existsSync(join(root, parent))) continue;
        // A pod's whole cgroup goes: what a dead shim left in it (its containers' cgroups, a stray process) too,
        // as a kubelet destroys a pod's cgroup.
        if (uid || parent === parents[0]) removeCgroupTree(join(root, parent));
        else {
          try {
            rmdirSync(join(root, parent));
          } catch {
            /* another node's pods still have their cgroups */
          }
        }
        left ||= Boolean(uid) && existsSync(join(root, parent));
      }
    }
    if (!left) return;
    await sleep(100 * attempt);
  }
}

/** Kills the processes of a cgroup directory and of those below it, and removes the directories, deepest first. */
function removeCgroupTree(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
    }
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmdirSync(dir);
  } catch {
    /* gone, or still busy: retried by the caller */
  }
}

/** When a pod and its running containers started, which the stats API does not say. */
function startTimes(worker: PodWorker): StartTimes {
  const containers: Record<string, Date> = {};
  for (const c of worker.status().containers)
    if (c.state.kind === 'running') containers[c.name] = c.state.startedAt;
  return { sandbox: new Date(worker.record.createdAt), containers };
}

/**
 * Stops and removes every sandbox the local provider of `nodeName` left in the runtime, and its state directory:
 * what `make cluster-down` does for the local nodes of the cluster it stops (an operator killed without its
 * shutdown leaves its pods running, as it should). Returns how many sandboxes went.
 */
export async function removeLocalSandboxes(options: {
  nodeName: string;
  criEndpoint: string;
  criProto?: string;
  stateDir?: string;
}): Promise<number> {
  const cri = new CriClient({
    endpoint: options.criEndpoint,
    ...(options.criProto ? { protoPath: options.criProto } : {}),
  });
  try {
    const sandboxes = await cri.listPodSandbox({ [NODE_LABEL]: options.nodeName });
    for (const s of sandboxes) {
      await cri.stopPodSandbox(s.id).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      await cri.removePodSandbox(s.id).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      await removePodCgroups(options.nodeName, s.labels[POD_UID_LABEL] ?? s.metadata.uid);
    }
    await removePodCgroups(options.nodeName);
    rmSync(join(options.stateDir ?? join('/run/spillway', options.nodeName), 'pods'), {
      recursive: true,
      force: true,
    });
    return sandboxes.length;
  } finally {
    cri.close();
  }
}
