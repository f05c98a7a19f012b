/**
 * A small typed client of the Kubernetes Container Runtime Interface (CRI v1) over gRPC: what the local provider
 * asks of containerd (docs/architecture.md#providers). The service definitions are loaded at run time from the
 * CRI proto of `k8s.io/cri-api` (`bin/cri/api.proto`, put there by `bash hack/build-tools.sh cri-api`), so no
 * generated code is checked in.
 *
 * Every call has a deadline. Errors are mapped once here: gRPC NOT_FOUND becomes {@link NotFoundError};
 * UNAVAILABLE (nothing listens on the socket) becomes an error naming the socket; anything else keeps
 * containerd's message with the method it answered.
 *
 * This file holds the proto loading, the client and its error mapping; the request and result types are in
 * types.ts, the decoding of raw messages into results in decode.ts.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NotFoundError } from '../../types.ts';
import {
  containerEventOf,
  containerOf,
  containerStatsOf,
  containerStatusOf,
  num,
  podSandboxStatsOf,
  sandboxOf,
  sandboxStatusOf,
  type Raw,
} from './decode.ts';
import type {
  AttachRequest,
  AuthConfig,
  Container,
  ContainerConfig,
  ContainerEvent,
  ContainerStatus,
  CriContainerStats,
  CriPodSandboxStats,
  ExecRequest,
  ExecSyncResult,
  Image,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxStatus,
  RuntimeVersion,
} from './types.ts';

/** Where the CRI proto lives in a checkout: `<repo>/bin/cri/api.proto`. */
export const DEFAULT_CRI_PROTO = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  '..',
  'bin',
  'cri',
  'api.proto',
);

/** Options of a {@link CriClient}. */
export interface CriClientOptions {
  /** The runtime's socket: a path (`/run/containerd/containerd.sock`) or `unix:///path`. */
  endpoint: string;
  /** The CRI v1 proto; default `bin/cri/api.proto` of this checkout, or `$SPILLWAY_CRI_PROTO`. */
  protoPath?: string;
  /** Deadline of ordinary calls (default 30 s). Pulls get `pullTimeoutMs`; ExecSync its own timeout plus this. */
  timeoutMs?: number;
  /** Deadline of one PullImage (default 10 min: a cold pull of a large image). */
  pullTimeoutMs?: number;
}

type Unary = (
  req: Raw,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r: Raw) => void,
) => void;

/** Loads the CRI services from the proto; cached per path (loading takes ~100 ms). */
const loaded = new Map<
  string,
  { runtime: grpc.ServiceClientConstructor; image: grpc.ServiceClientConstructor }
>();
function services(protoPath: string) {
  const cached = loaded.get(protoPath);
  if (cached) return cached;
  if (!existsSync(protoPath)) {
    throw new Error(
      `the CRI proto ${protoPath} is missing: run \`bash hack/build-tools.sh cri-api\` (or set $SPILLWAY_CRI_PROTO)`,
    );
  }
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    runtime: {
      v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor };
    };
  };
  const out = { runtime: pkg.runtime.v1.RuntimeService, image: pkg.runtime.v1.ImageService };
  loaded.set(protoPath, out);
  return out;
}

/** The CRI v1 services' definitions, for a server (the fake runtime of the unit tests). */
export function criServiceDefinitions(protoPath = defaultProtoPath()): {
  runtime: grpc.ServiceDefinition;
  image: grpc.ServiceDefinition;
} {
  const s = services(protoPath);
  return { runtime: s.runtime.service, image: s.image.service };
}

function defaultProtoPath(): string {
  return process.env['SPILLWAY_CRI_PROTO'] || DEFAULT_CRI_PROTO;
}

/** A socket path or `unix://` URL to the gRPC target and the path for messages. */
function target(endpoint: string): { address: string; socket: string } {
  const socket = endpoint.replace(/^unix:\/\//, '');
  return { address: `unix://${socket}`, socket };
}

/** A CRI v1 client (RuntimeService + ImageService) over one unix socket. */
export class CriClient {
  readonly socket: string;
  readonly #runtime: grpc.Client;
  readonly #image: grpc.Client;
  readonly #timeoutMs: number;
  readonly #pullTimeoutMs: number;

  constructor(options: CriClientOptions) {
    const { runtime, image } = services(options.protoPath ?? defaultProtoPath());
    const { address, socket } = target(options.endpoint);
    this.socket = socket;
    // Large enough for a ListContainers of a full node and ExecSync's 16 MiB of output.
    const channel = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    this.#runtime = new runtime(address, grpc.credentials.createInsecure(), channel);
    this.#image = new image(address, grpc.credentials.createInsecure(), channel);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#pullTimeoutMs = options.pullTimeoutMs ?? 600_000;
  }

  #call(client: grpc.Client, method: string, request: Raw, timeoutMs = this.#timeoutMs): Promise<Raw> {
    const fn = (client as unknown as Record<string, Unary>)[method];
    if (!fn) throw new Error(`the CRI proto has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(this.#error(method, err));
        else resolve(res);
      });
    });
  }

  #error(method: string, err: grpc.ServiceError): Error {
    switch (err.code) {
      case grpc.status.NOT_FOUND:
        return new NotFoundError(`${method}: ${err.details || err.message}`, { cause: err });
      case grpc.status.UNAVAILABLE:
        return new Error(
          `containerd at ${this.socket} is not answering (${err.details || err.message}): is it running? (make cluster-up starts it)`,
          { cause: err },
        );
      case grpc.status.DEADLINE_EXCEEDED:
        return new Error(`containerd at ${this.socket} did not answer ${method} in time`, { cause: err });
      default:
        return Object.assign(new Error(`${method}: ${err.details || err.message}`, { cause: err }), {
          grpcCode: err.code,
        });
    }
  }

  // --- RuntimeService --------------------------------------------------------------------------------

  async version(): Promise<RuntimeVersion> {
    const r = await this.#call(this.#runtime, 'Version', { version: 'v1' });
    return {
      runtimeName: r.runtime_name,
      runtimeVersion: r.runtime_version,
      runtimeApiVersion: r.runtime_api_version,
    };
  }

  /** Creates and starts a sandbox (its network from CNI included); returns its id. */
  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = ''): Promise<string> {
    // CNI set-up and the pause image pull happen inside: give it the pull deadline.
    const r = await this.#call(
      this.#runtime,
      'RunPodSandbox',
      { config, runtime_handler: runtimeHandler },
      this.#pullTimeoutMs,
    );
    return r.pod_sandbox_id;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.#call(this.#runtime, 'StopPodSandbox', { pod_sandbox_id: id }, 2 * this.#timeoutMs);
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.#call(this.#runtime, 'RemovePodSandbox', { pod_sandbox_id: id }, 2 * this.#timeoutMs);
  }

  async podSandboxStatus(id: string): Promise<PodSandboxStatus> {
    const r = await this.#call(this.#runtime, 'PodSandboxStatus', { pod_sandbox_id: id });
    return sandboxStatusOf(r.status ?? {});
  }

  async listPodSandbox(labels: Record<string, string> = {}): Promise<PodSandbox[]> {
    const r = await this.#call(this.#runtime, 'ListPodSandbox', { filter: { label_selector: labels } });
    return ((r.items ?? []) as Raw[]).map(sandboxOf);
  }

  async createContainer(
    sandboxId: string,
    config: ContainerConfig,
    sandboxConfig: PodSandboxConfig,
  ): Promise<string> {
    const r = await this.#call(this.#runtime, 'CreateContainer', {
      pod_sandbox_id: sandboxId,
      // KeyValue.value is `bytes` in cri-api v0.36 (values need not be UTF-8); ours are strings.
      config: {
        ...config,
        envs: (config.envs ?? []).map((e) => ({ key: e.key, value: Buffer.from(e.value) })),
      },
      sandbox_config: sandboxConfig,
    });
    return r.container_id;
  }

  async startContainer(id: string): Promise<void> {
    await this.#call(this.#runtime, 'StartContainer', { container_id: id });
  }

  /** SIGTERM (or the image's stop signal), SIGKILL after `timeoutSeconds`. */
  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    await this.#call(
      this.#runtime,
      'StopContainer',
      { container_id: id, timeout: timeoutSeconds },
      timeoutSeconds * 1000 + this.#timeoutMs,
    );
  }

  async removeContainer(id: string): Promise<void> {
    await this.#call(this.#runtime, 'RemoveContainer', { container_id: id });
  }

  async listContainers(
    filter: { podSandboxId?: string; labels?: Record<string, string> } = {},
  ): Promise<Container[]> {
    const r = await this.#call(this.#runtime, 'ListContainers', {
      filter: { pod_sandbox_id: filter.podSandboxId ?? '', label_selector: filter.labels ?? {} },
    });
    return ((r.containers ?? []) as Raw[]).map(containerOf);
  }

  async containerStatus(id: string): Promise<ContainerStatus> {
    const r = await this.#call(this.#runtime, 'ContainerStatus', { container_id: id });
    return containerStatusOf(r.status ?? {});
  }

  /** Runs `cmd` in a running container and waits for it (probes); the runtime kills it after `timeoutSeconds`. */
  async execSync(id: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
    const r = await this.#call(
      this.#runtime,
      'ExecSync',
      { container_id: id, cmd, timeout: timeoutSeconds },
      timeoutSeconds * 1000 + this.#timeoutMs,
    );
    return {
      stdout: Buffer.from(r.stdout ?? []),
      stderr: Buffer.from(r.stderr ?? []),
      exitCode: num(r.exit_code),
    };
  }

  /** The URL of the runtime's streaming server for one exec session. */
  async exec(request: ExecRequest): Promise<string> {
    return (await this.#call(this.#runtime, 'Exec', request)).url;
  }

  /** The URL of the runtime's streaming server for one attach session. */
  async attach(request: AttachRequest): Promise<string> {
    return (await this.#call(this.#runtime, 'Attach', request)).url;
  }

  /** The URL of the runtime's streaming server for port-forwarding into a sandbox. */
  async portForward(sandboxId: string, ports: number[]): Promise<string> {
    return (await this.#call(this.#runtime, 'PortForward', { pod_sandbox_id: sandboxId, port: ports })).url;
  }

  async containerStats(id: string): Promise<CriContainerStats> {
    const r = await this.#call(this.#runtime, 'ContainerStats', { container_id: id });
    return containerStatsOf(r.stats ?? {});
  }

  async listContainerStats(
    filter: { podSandboxId?: string; labels?: Record<string, string> } = {},
  ): Promise<CriContainerStats[]> {
    const r = await this.#call(this.#runtime, 'ListContainerStats', {
      filter: { pod_sandbox_id: filter.podSandboxId ?? '', label_selector: filter.labels ?? {} },
    });
    return ((r.stats ?? []) as Raw[]).map(containerStatsOf);
  }

  async listPodSandboxStats(labels: Record<string, string> = {}): Promise<CriPodSandboxStats[]> {
    const r = await this.#call(this.#runtime, 'ListPodSandboxStats', { filter: { label_selector: labels } });
    return ((r.stats ?? []) as Raw[]).map(podSandboxStatsOf);
  }

  /** Asks the runtime to reopen a container's log file (after the caller rotated it). */
  async reopenContainerLog(id: string): Promise<void> {
    await this.#call(this.#runtime, 'ReopenContainerLog', { container_id: id });
  }

  /**
   * Follows the runtime's container events (created, started, stopped, deleted) until the returned function is
   * called. `onEnd` is told when the stream ends for any other reason (containerd restarted, or it does not
   * implement events): the caller falls back on polling and subscribes again later.
   */
  containerEvents(onEvent: (event: ContainerEvent) => void, onEnd: (err: Error) => void): () => void {
    const call = (this.#runtime as unknown as Record<string, (req: Raw) => grpc.ClientReadableStream<Raw>>)[
      'GetContainerEvents'
    ]!.call(this.#runtime, {});
    let cancelled = false;
    call.on('data', (r: Raw) => onEvent(containerEventOf(r)));
    call.on('error', (err: grpc.ServiceError) => {
      if (!cancelled) onEnd(this.#error('GetContainerEvents', err));
    });
    call.on('end', () => {
      if (!cancelled) onEnd(new Error(`containerd at ${this.socket} ended the event stream`));
    });
    return () => {
      cancelled = true;
      call.cancel();
    };
  }

  // --- ImageService ----------------------------------------------------------------------------------

  /** The image as the runtime has it, or undefined when it does not have it. */
  async imageStatus(image: string): Promise<Image | undefined> {
    const r = await this.#call(this.#image, 'ImageStatus', { image: { image } });
    if (!r.image || !r.image.id) return undefined;
    return {
      id: r.image.id,
      repoTags: r.image.repo_tags ?? [],
      repoDigests: r.image.repo_digests ?? [],
      size: num(r.image.size),
    };
  }

  /** Pulls `image` (with `auth` for a registry that wants it); returns the image's reference (its id). */
  async pullImage(image: string, auth?: AuthConfig, sandboxConfig?: PodSandboxConfig): Promise<string> {
    const r = await this.#call(
      this.#image,
      'PullImage',
      {
        image: { image },
        ...(auth ? { auth } : {}),
        ...(sandboxConfig ? { sandbox_config: sandboxConfig } : {}),
      },
      this.#pullTimeoutMs,
    );
    return r.image_ref;
  }

  close(): void {
    this.#runtime.close();
    this.#image.close();
  }
}
