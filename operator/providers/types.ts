/**
 * The `SandboxProvider` plug-in interface (docs/architecture.md#provider-contract): what the virtual node asks of a backend that runs
 * pods as sandboxed instances (`eci`, `local`, `fake`). Modelled on virtual-kubelet's `PodLifecycleHandler`
 * + `PodNotifier` and Karpenter's `CloudProvider`: small, level-based, with a contract on every method.
 *
 * Identity: an instance is keyed by the pod's UID, never by namespace/name alone. A pod deleted and
 * re-created under the same name is a different pod; and a `create` retried after an operator crash must
 * find the instance it already made (by UID tag, client token or name) instead of making a second one.
 *
 * The provider reports *what happened* ({@link SandboxStatus}); the virtual node derives the Pod status,
 * conditions and events from it. A provider never talks to the Kubernetes API: it holds no client, and is built
 * from its own configuration by its factory (`factory.ts`, `<name>/factory.ts`).
 */
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import type { PodSpecCause } from './errors.ts';
import type { Duplex, Readable, Writable } from 'node:stream';

export * from './errors.ts';

/** The identity of a sandbox: the pod's UID, plus its namespace/name for messages and tags. */
export interface SandboxKey {
  uid: string;
  namespace: string;
  name: string;
}

/** Builds the key of a pod; throws when the pod has no UID (it was never stored by the apiserver). */
export function sandboxKey(pod: V1Pod): SandboxKey {
  const { uid, namespace, name } = pod.metadata ?? {};
  if (!uid || !name)
    throw new Error(`pod ${namespace ?? ''}/${name ?? '?'} has no metadata.uid: not a stored pod`);
  return { uid, namespace: namespace ?? 'default', name };
}

/** `namespace/name (uid)`: how errors and logs name a sandbox. */
export function describeKey(key: SandboxKey): string {
  return `${key.namespace}/${key.name} (${key.uid})`;
}

/**
 * What the pod controller resolved before `create`, so that a provider never reads ConfigMaps, Secrets or
 * the downward API itself (it has no Kubernetes client, and the node must see the same values it reports).
 */
export interface ResolvedPodInputs {
  /**
   * The full environment of each container (init containers included), keyed by container name, in the
   * order a kubelet would set it: `envFrom`, then `env` (valueFrom resolved), then Service link variables.
   */
  env?: Record<string, ResolvedEnvVar[]>;
  /** Volume contents, keyed by volume name. Volumes not listed (emptyDir) are created empty by the provider. */
  volumes?: Record<string, MaterialisedVolume>;
  /**
   * The pod's `imagePullSecrets`, keyed by Secret name: the bytes of each Secret's `.dockerconfigjson` (or
   * `.dockercfg`). A Secret that is missing or of another type is absent; images are then pulled without it.
   */
  imagePullSecrets?: Record<string, Buffer>;
}

/** One environment variable with its final value. */
export interface ResolvedEnvVar {
  name: string;
  value: string;
}

/** The files of a configMap/secret/downwardAPI/projected volume, relative to the volume root. */
export interface MaterialisedVolume {
  files: { path: string; content: Buffer; mode?: number }[];
}

/** A ServiceAccount for a provider's sidecars, and where they reach the apiserver. */
export interface SidecarIdentity {
  namespace: string;
  name: string;
  expirationSeconds: number;
  /** The apiserver URL instances reach; default: the addresses behind the `default/kubernetes` Service. */
  apiServer?: string;
}

/** A token of the {@link SidecarIdentity}, with what a kubeconfig needs besides it. */
export interface SidecarCredentials {
  token: string;
  expiresAt: Date;
  /** The apiserver URL. */
  server: string;
  /** The cluster CA bundle (PEM) that verifies it. */
  caPem: string;
}

/** Pod phase as the provider sees it; same meaning as `PodStatus.phase`. */
export type SandboxPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';

/** The state of one container, as a tagged union so that the impossible combinations cannot be written. */
export type ContainerState =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: Date }
  | {
      kind: 'terminated';
      exitCode: number;
      signal?: number;
      /** `Completed`, `Error`, `OOMKilled`, ... as a kubelet would write it. */
      reason: string;
      message?: string;
      startedAt?: Date;
      finishedAt: Date;
    };

/** One container's status as the provider reports it; mapped to `V1ContainerStatus` by the virtual node. */
export interface ContainerReport {
  name: string;
  state: ContainerState;
  /** The state before the last restart; absent until the container has restarted once. */
  lastState?: ContainerState;
  restartCount: number;
  /** Ready as far as the provider knows (it passed its readiness probe, or has none and is running). */
  ready: boolean;
  /** Started: running and past its startup probe. */
  started: boolean;
  image?: string;
  imageID?: string;
  /** `<runtime>://<id>`, e.g. `fake://3f2a…`, `eci://eci-xxxx/nginx`. */
  containerID?: string;
}

/** A pod condition the provider wants on the Pod, beyond the ones the node derives from container states. */
export interface ReportedCondition {
  /** e.g. `PodScheduled` (False while ECI is still looking for stock), or a provider-specific type. */
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: Date;
}

/**
 * The pod status pieces a provider reports. The virtual node maps it to a `V1PodStatus`: it derives
 * `Initialized`/`ContainersReady`/`Ready` from the container reports, adds `hostIP`, `qosClass` and
 * `PodScheduled`, and lets {@link conditions} add to or override the derived conditions by type.
 */
export interface SandboxStatus {
  key: SandboxKey;
  phase: SandboxPhase;
  /** Pod-level reason/message, e.g. `ProviderFailed`, `Evicted` with the spot release notice. */
  reason?: string;
  message?: string;
  podIP?: string;
  /** All pod IPs (dual stack); the first equals `podIP`. */
  podIPs?: string[];
  /** When the provider accepted the pod; `PodStatus.startTime`. */
  startTime?: Date;
  initContainers: ContainerReport[];
  containers: ContainerReport[];
  conditions?: ReportedCondition[];
}

/** An instance as `list()` returns it, enough to find orphans (instances whose pod is gone). */
export interface SandboxInstance {
  key: SandboxKey;
  /** When the instance was created; the garbage collector leaves instances younger than 30 s alone. */
  createdAt: Date;
  /** The provider's own id (ECI container group id), for logs and support requests. */
  providerID?: string;
  /**
   * The instance's status as the listing read it. Every provider fills it when it has it (all of
   * `eci`, `local` and `fake` do): the virtual node adopts instances after a restart from the listing alone,
   * so a restart costs the listing's calls, not one `status()` call per instance. Absent for an instance
   * still being created; the node then asks `status()`.
   */
  status?: SandboxStatus;
}

/** Options of `logs()`: the query parameters of the kubelet's `/containerLogs` (kubectl logs flags). */
export interface LogOptions {
  /** Keep the stream open and send new lines until the container stops or the reader goes away. */
  follow?: boolean;
  /** Only the last N lines (before following). */
  tailLines?: number;
  /** Prefix each line with its RFC 3339 timestamp (nanosecond precision) and a space. */
  timestamps?: boolean;
  /** Only lines newer than this many seconds. */
  sinceSeconds?: number;
  /** Only lines at or after this time (kubectl --since-time); ignored when `sinceSeconds` is set. */
  sinceTime?: Date;
  /** The logs of the previous, terminated instance of the container (after a restart). */
  previous?: boolean;
  /** Stop after this many bytes (the stream ends, even when following). */
  limitBytes?: number;
}

/** A terminal size, as the `resize` stream of `kubectl exec -t` sends it. */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The streams of an exec/attach session, already connected to the client. The provider copies the
 * process's output into `stdout`/`stderr` and `stdin` into the process; it may end `stdout`/`stderr`
 * itself, or leave them for the caller to end after the returned promise settles.
 */
export interface ExecStreams {
  /** The client's stdin (`kubectl exec -i`); ends when the client closes its stdin. */
  stdin?: Readable;
  /** The process's stdout (with a TTY, stdout and stderr both go here). */
  stdout: Writable;
  /** The process's stderr; absent with a TTY or when the client did not ask for it. */
  stderr?: Writable;
  /** Whether the client asked for a terminal (`-t`). */
  tty: boolean;
  /** Terminal size changes, first one included, when `tty` is set. */
  resize?: AsyncIterable<TerminalSize>;
  /** Aborted when the client goes away: stop the process (exec) or detach (attach). */
  signal?: AbortSignal;
}

/** The result of an exec: the process's exit code (0 for success). */
export interface ExecResult {
  exitCode: number;
}

/** CPU usage, named like the kubelet summary API (`stats/summary`). */
export interface CpuStats {
  /** Current usage, in nano-cores (1 core = 1e9). */
  usageNanoCores: number;
  /** Cumulative usage since the container or sandbox started, in core-nanoseconds. */
  usageCoreNanoSeconds: number;
}

/** Memory usage, named like the kubelet summary API. */
export interface MemoryStats {
  /** What metrics-server and HPA read. */
  workingSetBytes: number;
  usageBytes?: number;
  rssBytes?: number;
}

/** One container's usage. */
export interface ContainerStats {
  name: string;
  startTime: Date;
  cpu?: CpuStats;
  memory?: MemoryStats;
}

/** One sandbox's usage at `time`; mapped to a PodStats entry of `/stats/summary` and to `/metrics/resource`. */
export interface PodStats {
  key: SandboxKey;
  /** When the numbers were sampled. */
  time: Date;
  startTime: Date;
  cpu?: CpuStats;
  memory?: MemoryStats;
  network?: { rxBytes: number; txBytes: number };
  containers: ContainerStats[];
}

/** What the virtual node registers as its capacity and identity. */
export interface NodeCapacity {
  /** Resource quantities as Kubernetes writes them (`'1000'`, `'4Ti'`); allocatable equals capacity. */
  cpu: string;
  memory: string;
  pods: string;
  ephemeralStorage?: string;
  /** Other resources, e.g. `{'nvidia.com/gpu': '8'}`. */
  extended?: Record<string, string>;
  /** `Node.status.nodeInfo` pieces the provider knows. */
  nodeInfo: {
    operatingSystem: string;
    architecture: string;
    kernelVersion: string;
    osImage: string;
    containerRuntimeVersion: string;
  };
  /** Extra Node labels, e.g. `topology.kubernetes.io/zone`, `topology.kubernetes.io/region`. */
  labels?: Record<string, string>;
}

/** Something the provider has to say about one instance, for the pod's Events (e.g. ECI's SpotToBeReleased). */
export interface SandboxEvent {
  key: SandboxKey;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /**
   * When the provider last saw it happen (ECI's `LastTimestamp`), for providers whose events outlive the
   * operator process: after a restart the virtual node compares it with the Events it already recorded
   * and does not record the same occurrence twice. Absent: the event happened when it was delivered.
   */
  timestamp?: Date;
}

/** Stops a subscription made with {@link SandboxProvider.onStatus}. */
export type Unsubscribe = () => void;

/**
 * A backend that runs pods as sandboxed instances. All methods are safe to call concurrently for
 * different pods; the virtual node never runs two lifecycle calls (create/delete) for one UID at once.
 * Errors are the typed errors of `./errors.ts` where a controller must branch, plain `Error`s otherwise.
 */
export interface SandboxProvider {
  /** The provider's name (`eci`, `local`, `fake`): the value of the node's `virtual-kubelet.io/provider` taint. */
  readonly name: string;

  /**
   * True when the provider's own events (`onEvent`) already are the container lifecycle Events a kubelet records
   * (Pulling, Pulled, Created, Started, Killing, BackOff...), as ECI's agent reports them: the node records those
   * and derives none from container states, so that none is recorded twice. Default false: the node derives them.
   */
  readonly reportsContainerEvents?: boolean;

  /**
   * Creates the instance for `pod`, keyed by its UID. Resolves once the provider has accepted it (it exists
   * and `list()` shows it); it does not wait for the containers to run: that arrives through `onStatus`.
   *
   * Idempotent: when an instance for this UID already exists (a retry, or a create replayed after an
   * operator crash) it resolves with that instance's status and makes no second instance.
   * @throws InvalidPodSpecError the spec cannot run on this provider; retrying is useless
   * @throws InsufficientCapacityError no capacity now; retry later or fall back to another unit
   * @throws ThrottledError rate-limited; retry after `retryAfterMs`
   */
  create(pod: V1Pod, inputs?: ResolvedPodInputs): Promise<SandboxStatus>;

  /**
   * Optional: every field of `spec` this provider can never run, decided from the spec alone (pure: no I/O, no
   * resolved inputs), each with what to change; empty when it may run. The same rules are registered by provider
   * name in `./rules.ts`, where the ElasticWorkload controller (which has no provider) evaluates a unit's pod
   * template before it scales the unit. `create` still refuses such a pod (InvalidPodSpecError): the backstop.
   * @param base the path of `spec` in the object the user wrote (default `spec`)
   */
  unsupported?(spec: V1PodSpec, base?: string): PodSpecCause[];

  /**
   * Deletes the instance of `key`, giving its containers `gracePeriodSeconds` between SIGTERM and SIGKILL
   * (provider default when absent). Resolves when the instance is gone. May be called again, also
   * concurrently with an earlier call still running; NotFound is not an error for delete: it resolves.
   * After it resolves, `status` throws NotFoundError and `list` no longer shows the instance.
   */
  delete(key: SandboxKey, options?: { gracePeriodSeconds?: number }): Promise<void>;

  /**
   * The current status of the instance, read from the provider (not a cached guess), for start-up
   * reconciliation and for the periodic resync that backs up `onStatus`.
   * @throws NotFoundError no instance for this UID
   */
  status(key: SandboxKey): Promise<SandboxStatus>;

  /**
   * Every instance this provider runs for this node, including those whose pod no longer exists: the
   * orphan collector deletes those older than 30 s. Must not miss instances that are still starting.
   * Each instance carries the status the listing read ({@link SandboxInstance.status}) when it has one.
   */
  list(): Promise<SandboxInstance[]>;

  /**
   * Subscribes to status changes. The provider calls `listener` asynchronously (never inside `create`)
   * with the full status whenever anything in it changes: phase, a container state, readiness, IPs.
   * It may repeat an unchanged status; the node compares. Providers that cannot push must poll
   * internally, often enough for a p99 propagation of 1 s (docs/architecture.md#performance-targets). A listener must not throw.
   */
  onStatus(listener: (status: SandboxStatus) => void): Unsubscribe;

  /**
   * Optional: subscribes to the provider's own events about instances (each delivered once), which the node
   * records as Events on the pods. A listener must not throw.
   */
  onEvent?(listener: (event: SandboxEvent) => void): Unsubscribe;

  /**
   * The logs of one container as a byte stream. Rejects before any byte when the instance or container
   * does not exist (NotFoundError) so that the kubelet API can still answer 404; with `previous` and no
   * previous instance it rejects with NotFoundError too. With `follow`, the stream ends when the container
   * terminates, the instance is deleted, or `limitBytes` is reached; destroying the stream stops following.
   */
  logs(key: SandboxKey, container: string, options?: LogOptions): Promise<Readable>;

  /**
   * Runs `command` in a running container, wired to `streams`, and resolves with its exit code when it
   * ends (a non-zero exit code resolves; it is not an error). Stops the process when `streams.signal`
   * aborts. Rejects with NotFoundError when the instance or container does not exist, with a plain
   * Error when the container is not running.
   */
  exec(key: SandboxKey, container: string, command: string[], streams: ExecStreams): Promise<ExecResult>;

  /**
   * Attaches `streams` to the main process of a running container (`kubectl attach`): output from now on,
   * stdin into the process when the container has `stdin: true`. Resolves when the container stops or
   * `streams.signal` aborts. Optional: without it the kubelet API answers 501 Not Implemented.
   */
  attach?(key: SandboxKey, container: string, streams: ExecStreams): Promise<ExecResult>;

  /**
   * Opens a TCP connection to `port` inside the instance's network namespace (`kubectl port-forward`), as if from
   * the pod itself: the kubelet API joins it to the client's data stream. Ending the returned stream's writable
   * side half-closes the connection. Optional: without it the kubelet API answers 501 Not Implemented.
   * @throws NotFoundError no instance for this UID
   * @throws Error the connection cannot be made (nothing listens, the sandbox is not running); its message
   * reaches the user
   */
  portForward?(key: SandboxKey, port: number): Promise<Duplex>;

  /**
   * Replaces the files of the instance's materialised volumes (configMap, secret, downwardAPI, projected), as a
   * kubelet's periodic volume sync does: the virtual node calls it to refresh projected service-account tokens
   * before they expire and to carry ConfigMap/Secret changes. Volumes not named keep their files. Optional:
   * a provider without it keeps the files it was created with (tokens then live as long as their bound pod).
   * @throws NotFoundError no instance for this UID
   */
  updateVolumes?(key: SandboxKey, volumes: Record<string, MaterialisedVolume>): Promise<void>;

  /**
   * The ServiceAccount the provider's own sidecars authenticate as (ECI's kube-proxy), when it has any. The
   * virtual node then mints tokens for it, bound to its Node, before the first create and again at 80 % of
   * their lifetime, and hands each to {@link setSidecarCredentials}.
   */
  sidecarIdentity?(): SidecarIdentity | undefined;

  /** Takes the first and every renewed sidecar credential; running instances get the new token in place. */
  setSidecarCredentials?(credentials: SidecarCredentials): Promise<void>;

  /**
   * Resource usage of one instance now.
   * @throws NotFoundError no instance for this UID
   */
  stats(key: SandboxKey): Promise<PodStats>;

  /** Resource usage of every running instance of this node, in one call (metrics-server scrapes it). */
  statsSummary(): Promise<PodStats[]>;

  /** Capacity and identity of the virtual node; read at registration and on each node status update. */
  capacity(): Promise<NodeCapacity>;

  /**
   * Checks that the provider can serve calls (its API answers, its credentials work). Rejects when it
   * cannot; the node turns NotReady after pings keep failing. Cheap: called every node status period.
   */
  ping(): Promise<void>;

  /** Stops background work (polling, timers). Instances keep running; a new provider finds them by UID. */
  close(): Promise<void>;
}
