/**
 * The CRI v1 messages the local provider exchanges with containerd (docs/architecture.md#providers), as
 * the CRI client (client.ts) takes and gives them.
 *
 * Requests use the proto's own field names (snake_case) so that a reader can hold them against the CRI
 * documentation, and carry only what the provider sets; results are narrowed to the fields the provider reads,
 * int64 nanosecond times as `Date`s (decode.ts turns the raw messages into these).
 */

// ---------------------------------------------------------------------------------------------------------
// Requests (proto field names; only what the provider sets)
// ---------------------------------------------------------------------------------------------------------

export interface KeyValue {
  key: string;
  value: string;
}

export interface Int64Value {
  value: number;
}

export interface SecurityProfile {
  profile_type: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhost_ref?: string;
}

export interface NamespaceOption {
  network?: 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
  pid?: 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
  ipc?: 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
}

export interface LinuxContainerResources {
  cpu_period?: number;
  cpu_quota?: number;
  cpu_shares?: number;
  memory_limit_in_bytes?: number;
  oom_score_adj?: number;
}

export interface PortMapping {
  protocol: 'TCP' | 'UDP' | 'SCTP';
  container_port: number;
  host_port?: number;
  host_ip?: string;
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname: string;
  log_directory: string;
  dns_config?: { servers: string[]; searches: string[]; options: string[] };
  port_mappings?: PortMapping[];
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: {
    cgroup_parent?: string;
    sysctls?: Record<string, string>;
    security_context?: {
      namespace_options?: NamespaceOption;
      run_as_user?: Int64Value;
      run_as_group?: Int64Value;
      readonly_rootfs?: boolean;
      supplemental_groups?: number[];
      privileged?: boolean;
      seccomp?: SecurityProfile;
    };
  };
}

export interface Mount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
  propagation?: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
}

export interface LinuxContainerSecurityContext {
  capabilities?: { add_capabilities: string[]; drop_capabilities: string[] };
  privileged?: boolean;
  namespace_options?: NamespaceOption;
  run_as_user?: Int64Value;
  run_as_group?: Int64Value;
  run_as_username?: string;
  readonly_rootfs?: boolean;
  supplemental_groups?: number[];
  no_new_privs?: boolean;
  seccomp?: SecurityProfile;
}

export interface ContainerConfig {
  metadata: { name: string; attempt: number };
  image: { image: string; user_specified_image?: string };
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: KeyValue[];
  mounts?: Mount[];
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  /** Relative to the sandbox's `log_directory`. */
  log_path: string;
  stdin?: boolean;
  stdin_once?: boolean;
  tty?: boolean;
  linux?: { resources?: LinuxContainerResources; security_context?: LinuxContainerSecurityContext };
}

/** Registry credentials of one pull (a docker config's `auths` entry). */
export interface AuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

/** An `ExecRequest`: the command and which of its streams the session carries. */
export interface ExecRequest {
  container_id: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** An `AttachRequest`: which of the container's streams the session carries. */
export interface AttachRequest {
  container_id: string;
  stdin: boolean;
  tty: boolean;
  stdout: boolean;
  stderr: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Results (only the fields read)
// ---------------------------------------------------------------------------------------------------------

export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export type ContainerStateName =
  'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  createdAt: Date;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface PodSandboxStatus extends PodSandbox {
  /** The pod's IPs from CNI, first one first; empty before the network is up or with host networking. */
  ips: string[];
}

export interface Container {
  id: string;
  podSandboxId: string;
  metadata: { name: string; attempt: number };
  image: string;
  imageRef: string;
  state: ContainerStateName;
  createdAt: Date;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number };
  state: ContainerStateName;
  createdAt: Date;
  /** Absent until started. */
  startedAt?: Date;
  /** Absent until exited. */
  finishedAt?: Date;
  exitCode: number;
  image: string;
  imageRef: string;
  /** `OOMKilled`, `Error`, `Completed`, `ContainerCannotRun` (set by the runtime on exit). */
  reason: string;
  message: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  logPath: string;
}

export interface ContainerEvent {
  containerId: string;
  type:
    | 'CONTAINER_CREATED_EVENT'
    | 'CONTAINER_STARTED_EVENT'
    | 'CONTAINER_STOPPED_EVENT'
    | 'CONTAINER_DELETED_EVENT';
  createdAt: Date;
  /** The sandbox's status (containerd sends it with every event). */
  sandbox?: PodSandboxStatus;
  containers: ContainerStatus[];
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
}

export interface RuntimeVersion {
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

/** A usage sample of the CRI stats API (only the values the summary API reports). */
export interface CriUsage {
  /** When the runtime took it. */
  timestamp: Date;
  usageCoreNanoSeconds?: number;
  usageNanoCores?: number;
  workingSetBytes?: number;
  usageBytes?: number;
  rssBytes?: number;
}

export interface CriContainerStats {
  id: string;
  name: string;
  labels: Record<string, string>;
  cpu?: CriUsage;
  memory?: CriUsage;
}

export interface CriPodSandboxStats {
  id: string;
  metadata: PodSandboxMetadata;
  labels: Record<string, string>;
  cpu?: CriUsage;
  memory?: CriUsage;
  /** Cumulative bytes over the sandbox's interfaces, when the runtime reports them. */
  network?: { rxBytes: number; txBytes: number };
  containers: CriContainerStats[];
}
