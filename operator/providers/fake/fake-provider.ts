/**
 * The in-memory `fake` provider (docs/architecture.md#providers), for unit tests, integration tests without root, and the
 * burst benchmark. Like Karpenter's fake cloud provider it records calls (`createCalls`, ...), fails on
 * demand (`nextCreateError`, `errorHook`, `failPing`) and resets between tests (`reset()`).
 *
 * It scales to thousands of pods: with `startLatencyMs = 0` a sandbox is Running when `create` returns,
 * with no timer at all; with a latency, every start and scripted exit shares one timer (`Timeline`).
 * Status changes are delivered to `onStatus` listeners in one batch per microtask.
 */
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import {
  describeKey,
  InsufficientCapacityError,
  InvalidPodSpecError,
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
  type SandboxKey,
  type SandboxProvider,
  type SandboxStatus,
  type TerminalSize,
  type Unsubscribe,
} from '../types.ts';
import { StatusNotifier } from '../status-notifier.ts';
import { runBuiltin } from './exec.ts';
import { FakeSandbox, type ContainerScript, type FakeContainer } from './sandbox.ts';
import { Timeline } from './timeline.ts';

export type { ContainerScript } from './sandbox.ts';

/** Methods an error can be injected into through {@link FakeProvider.errorHook}. */
export type FakeMethod =
  | 'create'
  | 'delete'
  | 'status'
  | 'list'
  | 'logs'
  | 'exec'
  | 'attach'
  | 'portForward'
  | 'stats'
  | 'statsSummary'
  | 'capacity'
  | 'ping';

/** Options of a {@link FakeProvider}; every field has a default. */
export interface FakeProviderOptions {
  /** Provider name, the node taint's value (default `fake`). */
  name?: string;
  /** Time from create to Running (default 0: Running at once, no timer). */
  startLatencyMs?: number;
  /** Capacity overrides; `pods` also bounds how many sandboxes `create` accepts. */
  capacity?: Partial<NodeCapacity>;
  /** First two octets of pod IPs (default `10.244`); IPs are handed out in order. */
  podIPPrefix?: string;
  /**
   * Static refusal rules (default: none, the fake runs any spec): `unsupported` answers with them and `create`
   * refuses a pod they name with InvalidPodSpecError, as a real provider does.
   */
  refuse?: (spec: V1PodSpec, base: string) => PodSpecCause[];
}

/** Default capacity: room for the 1000-pod burst benchmark and more. */
export const FAKE_CAPACITY: NodeCapacity = {
  cpu: '1000',
  memory: '4Ti',
  pods: '10000',
  ephemeralStorage: '10Ti',
  nodeInfo: {
    operatingSystem: 'linux',
    architecture: 'amd64',
    kernelVersion: 'fake',
    osImage: 'spillway fake sandbox',
    containerRuntimeVersion: 'fake://1.0.0',
  },
};

/** An in-memory {@link SandboxProvider} with scripting, fault injection and call counts. */
export class FakeProvider implements SandboxProvider {
  readonly name: string;
  /** Time from create to Running, read at each create. */
  startLatencyMs: number;
  /** Thrown by the next `create` (once), before anything is created. */
  nextCreateError: Error | undefined;
  /** Thrown by the next `delete` (once), before anything is deleted. */
  nextDeleteError: Error | undefined;
  /** Asked on every call; an Error it returns is thrown by that call (after the call is counted). */
  errorHook: ((method: FakeMethod, key: SandboxKey | undefined) => Error | undefined) | undefined;
  /** When set, `ping` rejects (with this error when it is one): the node should turn NotReady. */
  failPing: boolean | Error = false;

  createCalls = 0;
  /** Calls of {@link updateVolumes}. */
  volumeUpdates = 0;
  deleteCalls = 0;
  statusCalls = 0;
  listCalls = 0;
  logsCalls = 0;
  execCalls = 0;
  attachCalls = 0;
  /** Calls of {@link portForward}. */
  portForwardCalls = 0;
  /** Every terminal size a `tty` exec received (`kubectl exec -it`: the first size, then each resize). */
  terminalSizes: TerminalSize[] = [];
  statsCalls = 0;
  pingCalls = 0;

  readonly #options: FakeProviderOptions;
  readonly #sandboxes = new Map<string, FakeSandbox>();
  readonly #scripts = new Map<string, ContainerScript>();
  readonly #notifier = new StatusNotifier<FakeSandbox>((s) => this.#sandboxes.get(s.key.uid) === s);
  readonly #timeline = new Timeline();
  #nextIP = 2;

  constructor(options: FakeProviderOptions = {}) {
    this.#options = options;
    this.name = options.name ?? 'fake';
    this.startLatencyMs = options.startLatencyMs ?? 0;
  }

  /** How many sandboxes exist now. */
  get size(): number {
    return this.#sandboxes.size;
  }

  /**
   * Scripts the containers of matching pods, applied when their sandbox is created. `pod` is a pod UID,
   * `namespace/name`, or `*` for every pod; `container` a name or `*`. More specific scripts win.
   */
  script(pod: string, container: string, script: ContainerScript): void {
    this.#scripts.set(`${pod}|${container}`, script);
  }

  /** The sandbox of a UID, for assertions; undefined once deleted. */
  sandbox(uid: string): FakeSandbox | undefined {
    return this.#sandboxes.get(uid);
  }

  /** Makes a running container exit now with `exitCode`, as if its process ended (restart policy applies). */
  exitContainer(key: SandboxKey, container: string, exitCode: number, reason?: string): void {
    const { sandbox, c } = this.#container(key, container);
    sandbox.exit(c, exitCode, new Date(), reason);
    this.#notifier.changed(sandbox);
  }

  /** Appends output to a container's current log (followers see it at once). */
  appendLog(key: SandboxKey, container: string, text: string): void {
    this.#container(key, container).c.log.append(text);
  }

  /** Forgets every sandbox, script, injected error and count; listeners stay subscribed. */
  reset(): void {
    this.#timeline.clear();
    for (const sandbox of this.#sandboxes.values()) sandbox.stop();
    this.#sandboxes.clear();
    this.#scripts.clear();
    this.#notifier.clear();
    this.#nextIP = 2;
    this.startLatencyMs = this.#options.startLatencyMs ?? 0;
    this.nextCreateError = this.nextDeleteError = this.errorHook = undefined;
    this.failPing = false;
    this.volumeUpdates = 0;
    this.createCalls = this.deleteCalls = this.statusCalls = this.listCalls = 0;
    this.logsCalls = this.execCalls = this.attachCalls = this.statsCalls = this.pingCalls = 0;
    this.portForwardCalls = 0;
    this.terminalSizes = [];
  }

  /** The {@link FakeProviderOptions.refuse} rules; none by default. */
  unsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
    return this.#options.refuse?.(spec, base) ?? [];
  }

  async create(pod: V1Pod, inputs: ResolvedPodInputs = {}): Promise<SandboxStatus> {
    const key = sandboxKey(pod);
    this.createCalls++;
    const injected = this.nextCreateError;
    this.nextCreateError = undefined;
    this.#fail('create', key, injected);
    const causes = this.unsupported(pod.spec ?? { containers: [] });
    if (causes.length > 0) {
      throw new InvalidPodSpecError(causes.map((c) => `${c.path}: ${c.message}`).join('; '), { key, causes });
    }
    const existing = this.#sandboxes.get(key.uid);
    if (existing) return existing.status();
    const capacity = Number(this.#options.capacity?.pods ?? FAKE_CAPACITY.pods);
    if (this.#sandboxes.size >= capacity) {
      throw new InsufficientCapacityError(`fake provider is full (${capacity} pods): ${describeKey(key)}`, {
        key,
      });
    }
    const sandbox = new FakeSandbox(key, pod, inputs, this.#allocateIP(), (c) => this.#scriptFor(key, c));
    this.#sandboxes.set(key.uid, sandbox);
    if (this.startLatencyMs <= 0) this.#start(sandbox);
    else sandbox.cancels.push(this.#timeline.schedule(this.startLatencyMs, () => this.#start(sandbox)));
    this.#notifier.changed(sandbox);
    return sandbox.status();
  }

  /** Deletes at once: fake processes need no grace period, so `gracePeriodSeconds` is ignored. */
  /** Replaces the named volumes' files; {@link volumeUpdates} counts the calls. */
  async updateVolumes(key: SandboxKey, volumes: Record<string, MaterialisedVolume>): Promise<void> {
    const sandbox = this.sandbox(key.uid);
    if (!sandbox) throw new NotFoundError(`no fake sandbox for ${key.namespace}/${key.name}`, { key });
    this.volumeUpdates++;
    sandbox.inputs.volumes = { ...sandbox.inputs.volumes, ...volumes };
  }

  async delete(key: SandboxKey, _options?: { gracePeriodSeconds?: number }): Promise<void> {
    this.deleteCalls++;
    const injected = this.nextDeleteError;
    this.nextDeleteError = undefined;
    this.#fail('delete', key, injected);
    const sandbox = this.#sandboxes.get(key.uid);
    if (!sandbox) return; // already gone: delete is idempotent
    for (const cancel of sandbox.cancels) cancel();
    sandbox.stop();
    this.#sandboxes.delete(key.uid);
    this.#notifier.forget(sandbox);
  }

  async status(key: SandboxKey): Promise<SandboxStatus> {
    this.statusCalls++;
    this.#fail('status', key);
    return this.#sandbox(key).status();
  }

  async list(): Promise<SandboxInstance[]> {
    this.listCalls++;
    this.#fail('list', undefined);
    return [...this.#sandboxes.values()].map((s) => ({
      key: { ...s.key },
      createdAt: s.createdAt,
      providerID: s.providerID,
      status: s.status(),
    }));
  }

  onStatus(listener: (status: SandboxStatus) => void): Unsubscribe {
    return this.#notifier.subscribe(listener);
  }

  async logs(key: SandboxKey, container: string, options: LogOptions = {}): Promise<Readable> {
    this.logsCalls++;
    this.#fail('logs', key);
    const { c } = this.#container(key, container);
    if (!options.previous) return c.log.read(options);
    if (!c.previousLog) {
      throw new NotFoundError(
        `previous terminated container "${container}" in pod ${describeKey(key)} not found`,
        {
          key,
        },
      );
    }
    return c.previousLog.read(options);
  }

  async exec(
    key: SandboxKey,
    container: string,
    command: string[],
    streams: ExecStreams,
  ): Promise<ExecResult> {
    this.execCalls++;
    this.#fail('exec', key);
    const { sandbox, c } = this.#container(key, container);
    if (!c.running) throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    if (streams.resize) streams = { ...streams, resize: this.#recordSizes(streams.resize) };
    if (c.script.exec) return c.script.exec(command, streams);
    return runBuiltin(command, streams, { hostname: key.name, env: sandbox.inputs.env?.[container] ?? [] });
  }

  /**
   * Streams the container's output from now on to `stdout` until it stops or the client leaves; with `stdin: true`
   * in the container's spec, the client's input is echoed into that output.
   */
  async attach(key: SandboxKey, container: string, streams: ExecStreams): Promise<ExecResult> {
    this.attachCalls++;
    this.#fail('attach', key);
    const { sandbox, c } = this.#container(key, container);
    if (!c.running) throw new Error(`container "${container}" of pod ${describeKey(key)} is not running`);
    const output = c.log.read({ follow: true, tailLines: 0 });
    // A container with `stdin: true` reads what an attached client types; the fake's echo it to their output, as
    // `cat` would, so that `kubectl attach -i` sees its input come back.
    const spec = [...(sandbox.pod.spec?.initContainers ?? []), ...(sandbox.pod.spec?.containers ?? [])].find(
      (x) => x.name === container,
    );
    if (streams.stdin && spec?.stdin)
      streams.stdin.on('data', (chunk: Buffer) => c.log.append(chunk.toString()));
    streams.signal?.addEventListener('abort', () => output.destroy());
    output.on('data', (chunk: Buffer) => streams.stdout.write(chunk));
    await new Promise((resolve) => output.once('close', resolve));
    return { exitCode: c.state.kind === 'terminated' ? c.state.exitCode : 0 };
  }

  /**
   * A connection to `port` of the sandbox: the fake's containers serve an echo (what is written comes back) on
   * every `containerPort` they declare; any other port is refused as a closed port is.
   */
  async portForward(key: SandboxKey, port: number): Promise<Duplex> {
    this.portForwardCalls++;
    this.#fail('portForward', key);
    const sandbox = this.#sandbox(key);
    const serving = sandbox.containers.find(
      (c) => c.running && this.#declaredPorts(sandbox, c.name).includes(port),
    );
    if (!serving) throw new Error(`dial tcp ${sandbox.podIP}:${port}: connect: connection refused`);
    return new PassThrough();
  }

  /** Records each size as it arrives, whether or not the command reads them, and passes them on. */
  #recordSizes(sizes: AsyncIterable<TerminalSize>): AsyncIterable<TerminalSize> {
    const out = new PassThrough({ objectMode: true });
    void (async () => {
      for await (const size of sizes) {
        this.terminalSizes.push(size);
        out.write(size);
      }
    })()
      .catch(() => undefined)
      .finally(() => out.end());
    return out;
  }

  #declaredPorts(sandbox: FakeSandbox, container: string): number[] {
    const spec = sandbox.pod.spec?.containers.find((c) => c.name === container);
    return (spec?.ports ?? []).map((p) => p.containerPort);
  }

  async stats(key: SandboxKey): Promise<PodStats> {
    this.statsCalls++;
    this.#fail('stats', key);
    return this.#sandbox(key).stats();
  }

  async statsSummary(): Promise<PodStats[]> {
    this.#fail('statsSummary', undefined);
    const now = new Date();
    return [...this.#sandboxes.values()].filter((s) => s.phase === 'Running').map((s) => s.stats(now));
  }

  async capacity(): Promise<NodeCapacity> {
    this.#fail('capacity', undefined);
    const custom = this.#options.capacity ?? {};
    return { ...FAKE_CAPACITY, ...custom, nodeInfo: { ...FAKE_CAPACITY.nodeInfo, ...custom.nodeInfo } };
  }

  async ping(): Promise<void> {
    this.pingCalls++;
    this.#fail('ping', undefined);
    if (this.failPing) {
      throw this.failPing instanceof Error
        ? this.failPing
        : new Error('fake provider: ping failed (failPing is set)');
    }
  }

  async close(): Promise<void> {
    this.#timeline.clear();
  }

  #fail(method: FakeMethod, key: SandboxKey | undefined, injected?: Error): void {
    const err = injected ?? this.errorHook?.(method, key);
    if (err) throw err;
  }

  #sandbox(key: SandboxKey): FakeSandbox {
    const sandbox = this.#sandboxes.get(key.uid);
    if (!sandbox) throw new NotFoundError(`no fake sandbox for pod ${describeKey(key)}`, { key });
    return sandbox;
  }

  #container(key: SandboxKey, name: string): { sandbox: FakeSandbox; c: FakeContainer } {
    const sandbox = this.#sandbox(key);
    const c = sandbox.container(name);
    if (!c) throw new NotFoundError(`container "${name}" not found in pod ${describeKey(key)}`, { key });
    return { sandbox, c };
  }

  #scriptFor(key: SandboxKey, container: string): ContainerScript {
    const pods = ['*', `${key.namespace}/${key.name}`, key.uid];
    const merged: ContainerScript = {};
    for (const c of ['*', container]) {
      for (const p of pods) Object.assign(merged, this.#scripts.get(`${p}|${c}`));
    }
    return merged;
  }

  #start(sandbox: FakeSandbox): void {
    const now = new Date();
    for (const { container, afterMs } of sandbox.start(now)) {
      const exit = () => {
        sandbox.exit(container, container.script.exitCode ?? 0, new Date());
        this.#notifier.changed(sandbox);
      };
      if (afterMs <= 0) sandbox.exit(container, container.script.exitCode ?? 0, now);
      else sandbox.cancels.push(this.#timeline.schedule(afterMs, exit));
    }
    this.#notifier.changed(sandbox);
  }

  #allocateIP(): string {
    const n = this.#nextIP++;
    // A range of its own, apart from kwok's 10.244/16 and the local provider's: fake addresses are never dialled.
    const prefix = this.#options.podIPPrefix ?? '10.253';
    return `${prefix}.${(n >> 8) & 0xff}.${n & 0xff}`;
  }
}
