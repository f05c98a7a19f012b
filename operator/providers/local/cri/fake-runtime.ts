/**
 * A FAKE container runtime for unit tests: an in-process gRPC server on a unix socket in a temp directory that
 * answers the subset of CRI v1 the local provider calls, keeps sandboxes, containers and images in memory, and
 * records every request. Containers do not run anything: one "runs" from StartContainer until a test ends it
 * ({@link FakeRuntime.exit}) or StopContainer does; {@link FakeRuntime.exitOnStart} makes commands end at once.
 * Never used outside tests; the real runtime is containerd (test/support/containerd.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { criServiceDefinitions } from './client.ts';
import type { Raw } from './decode.ts';

/** A sandbox as the fake keeps it. */
export interface FakeSandbox {
  id: string;
  config: Raw;
  runtimeHandler: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  createdAt: bigint;
  ip: string;
}

/** A container as the fake keeps it. */
export interface FakeContainer {
  id: string;
  sandboxId: string;
  config: Raw;
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED';
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  reason: string;
  imageRef: string;
}

const now = () => BigInt(Date.now()) * 1_000_000n;
const id = () => randomBytes(32).toString('hex');

/** The fake runtime; `await FakeRuntime.start()`, then point a CriClient at `endpoint`. */
export class FakeRuntime {
  readonly endpoint: string;
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly containers = new Map<string, FakeContainer>();
  /** Image references the fake has (pulled or pre-loaded), reference → image id. */
  readonly images = new Map<string, string>();
  /** Every request, in order: `{method, request}`. */
  readonly requests: { method: string; request: Raw }[] = [];
  /** Images whose pull fails with this message (a missing image: `not found`). */
  readonly pullFailures = new Map<string, string>();
  /** Credentials a pull of an image must carry (`user:password`), by image reference. */
  readonly requiredAuth = new Map<string, string>();
  /** Decides, at StartContainer, whether a container ends at once and with which code (default: it runs). */
  exitOnStart: (config: Raw) => number | undefined = () => undefined;
  /** Called before each method; a thrown error (with a grpc `code`) becomes the call's error. */
  failHook: ((method: string, request: Raw) => void) | undefined;
  readonly #server: grpc.Server;
  readonly #dir: string;
  readonly #events = new Set<grpc.ServerWritableStream<Raw, Raw>>();
  #nextIP = 2;

  private constructor(server: grpc.Server, dir: string) {
    this.#server = server;
    this.#dir = dir;
    this.endpoint = join(dir, 'cri.sock');
  }

  static async start(protoPath?: string): Promise<FakeRuntime> {
    const dir = mkdtempSync(join(tmpdir(), 'fake-cri-'));
    const server = new grpc.Server();
    const fake = new FakeRuntime(server, dir);
    const defs = criServiceDefinitions(protoPath);
    server.addService(defs.runtime, fake.#handlers(Object.keys(defs.runtime)));
    server.addService(defs.image, fake.#handlers(Object.keys(defs.image)));
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${fake.endpoint}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    return fake;
  }

  async stop(): Promise<void> {
    for (const call of this.#events) call.end();
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** Requests of one method. */
  calls(method: string): Raw[] {
    return this.requests.filter((r) => r.method === method).map((r) => r.request);
  }

  /** Ends a running container (by id, or by container name when unique) with `exitCode`. */
  exit(idOrName: string, exitCode: number, reason?: string): void {
    const c =
      this.containers.get(idOrName) ??
      [...this.containers.values()].find(
        (x) => x.config.metadata?.name === idOrName && x.state === 'CONTAINER_RUNNING',
      );
    if (!c) throw new Error(`fake runtime: no container ${idOrName}`);
    this.#finish(c, exitCode, reason);
  }

  /** Containers of one name, oldest attempt first. */
  containersNamed(name: string): FakeContainer[] {
    return [...this.containers.values()]
      .filter((c) => c.config.metadata?.name === name)
      .sort((a, b) => (a.config.metadata?.attempt ?? 0) - (b.config.metadata?.attempt ?? 0));
  }

  #finish(c: FakeContainer, exitCode: number, reason?: string): void {
    c.state = 'CONTAINER_EXITED';
    c.exitCode = exitCode;
    c.finishedAt = now();
    c.reason = reason ?? (exitCode === 0 ? 'Completed' : 'Error');
    this.#emit(c, 'CONTAINER_STOPPED_EVENT');
  }

  #emit(c: FakeContainer, type: string): void {
    const sandbox = this.sandboxes.get(c.sandboxId);
    for (const call of this.#events) {
      call.write({
        container_id: c.id,
        container_event_type: type,
        created_at: String(now()),
        ...(sandbox ? { pod_sandbox_status: this.#sandboxStatus(sandbox) } : {}),
        containers_statuses: [this.#containerStatus(c)],
      });
    }
  }

  #sandboxStatus(s: FakeSandbox): Raw {
    return {
      id: s.id,
      metadata: s.config.metadata,
      state: s.state,
      created_at: String(s.createdAt),
      network: { ip: s.state === 'SANDBOX_READY' ? s.ip : '' },
      labels: s.config.labels ?? {},
      annotations: s.config.annotations ?? {},
      runtime_handler: s.runtimeHandler,
    };
  }

  #containerStatus(c: FakeContainer): Raw {
    return {
      id: c.id,
      metadata: c.config.metadata,
      state: c.state,
      created_at: String(c.createdAt),
      started_at: String(c.startedAt),
      finished_at: String(c.finishedAt),
      exit_code: c.exitCode,
      image: c.config.image,
      image_ref: c.imageRef,
      reason: c.reason,
      labels: c.config.labels ?? {},
      annotations: c.config.annotations ?? {},
      log_path: c.config.log_path ?? '',
    };
  }

  #container(raw: Raw): Raw {
    const c = raw as FakeContainer;
    return {
      id: c.id,
      pod_sandbox_id: c.sandboxId,
      metadata: c.config.metadata,
      image: c.config.image,
      image_ref: c.imageRef,
      state: c.state,
      created_at: String(c.createdAt),
      labels: c.config.labels ?? {},
      annotations: c.config.annotations ?? {},
    };
  }

  #handlers(methods: string[]): grpc.UntypedServiceImplementation {
    const impl: Record<string, (request: Raw) => Raw> = {
      Version: () => ({
        version: '0.1.0',
        runtime_name: 'fake',
        runtime_version: '0.0.1',
        runtime_api_version: 'v1',
      }),
      RunPodSandbox: (r) => {
        const s: FakeSandbox = {
          id: id(),
          config: r.config,
          runtimeHandler: r.runtime_handler,
          state: 'SANDBOX_READY',
          createdAt: now(),
          ip: `10.250.0.${this.#nextIP++}`,
        };
        this.sandboxes.set(s.id, s);
        return { pod_sandbox_id: s.id };
      },
      StopPodSandbox: (r) => {
        const s = this.sandboxes.get(r.pod_sandbox_id);
        if (!s) return {};
        for (const c of this.containers.values()) {
          if (c.sandboxId === s.id && c.state === 'CONTAINER_RUNNING') this.#finish(c, 137);
        }
        s.state = 'SANDBOX_NOTREADY';
        return {};
      },
      RemovePodSandbox: (r) => {
        for (const c of [...this.containers.values()]) {
          if (c.sandboxId === r.pod_sandbox_id) this.containers.delete(c.id);
        }
        this.sandboxes.delete(r.pod_sandbox_id);
        return {};
      },
      PodSandboxStatus: (r) => ({ status: this.#sandboxStatus(this.#sandbox(r.pod_sandbox_id)) }),
      ListPodSandbox: (r) => ({
        items: [...this.sandboxes.values()]
          .filter((s) => matches(s.config.labels, r.filter?.label_selector))
          .map((s) => {
            const { network: _network, ...rest } = this.#sandboxStatus(s);
            return rest;
          }),
      }),
      CreateContainer: (r) => {
        const s = this.#sandbox(r.pod_sandbox_id);
        if (s.state !== 'SANDBOX_READY')
          throw grpcError(grpc.status.FAILED_PRECONDITION, 'sandbox not ready');
        const image = String(r.config?.image?.image ?? '');
        const imageRef = this.images.get(image);
        if (!imageRef) throw grpcError(grpc.status.NOT_FOUND, `image "${image}" not present`);
        const c: FakeContainer = {
          id: id(),
          sandboxId: s.id,
          config: r.config,
          state: 'CONTAINER_CREATED',
          createdAt: now(),
          startedAt: 0n,
          finishedAt: 0n,
          exitCode: 0,
          reason: '',
          imageRef,
        };
        this.containers.set(c.id, c);
        this.#emit(c, 'CONTAINER_CREATED_EVENT');
        return { container_id: c.id };
      },
      StartContainer: (r) => {
        const c = this.#containerById(r.container_id);
        if (c.state !== 'CONTAINER_CREATED')
          throw grpcError(grpc.status.UNKNOWN, 'container already started');
        c.state = 'CONTAINER_RUNNING';
        c.startedAt = now();
        this.#emit(c, 'CONTAINER_STARTED_EVENT');
        const code = this.exitOnStart(c.config);
        if (code !== undefined) setImmediate(() => this.#finish(c, code));
        return {};
      },
      StopContainer: (r) => {
        const c = this.#containerById(r.container_id);
        if (c.state === 'CONTAINER_RUNNING') this.#finish(c, 137);
        return {};
      },
      RemoveContainer: (r) => {
        const c = this.containers.get(r.container_id);
        if (c) {
          this.containers.delete(c.id);
          this.#emit(c, 'CONTAINER_DELETED_EVENT');
        }
        return {};
      },
      ListContainers: (r) => ({
        containers: [...this.containers.values()]
          .filter((c) => !r.filter?.pod_sandbox_id || c.sandboxId === r.filter.pod_sandbox_id)
          .filter((c) => matches(c.config.labels, r.filter?.label_selector))
          .map((c) => this.#container(c)),
      }),
      ContainerStatus: (r) => ({ status: this.#containerStatus(this.#containerById(r.container_id)) }),
      ExecSync: (r) => {
        const c = this.#containerById(r.container_id);
        if (c.state !== 'CONTAINER_RUNNING') throw grpcError(grpc.status.UNKNOWN, 'container is not running');
        const cmd = (r.cmd ?? []) as string[];
        const code = cmd[0] === 'false' ? 1 : 0;
        return { stdout: Buffer.from(''), stderr: Buffer.from(''), exit_code: code };
      },
      ListPodSandboxStats: () => ({ stats: [] }),
      ContainerStats: (r) => ({ stats: { attributes: { id: r.container_id } } }),
      ImageStatus: (r) => {
        const ref = this.images.get(String(r.image?.image ?? ''));
        return ref ? { image: { id: ref, repo_tags: [r.image.image], size: '1000' } } : {};
      },
      PullImage: (r) => {
        const image = String(r.image?.image ?? '');
        const failure = this.pullFailures.get(image);
        if (failure) throw grpcError(grpc.status.UNKNOWN, failure);
        const needed = this.requiredAuth.get(image);
        if (needed) {
          const a = r.auth ?? {};
          const given = a.auth ? Buffer.from(a.auth, 'base64').toString() : `${a.username}:${a.password}`;
          if (given !== needed) throw grpcError(grpc.status.UNKNOWN, `pull ${image}: 401 Unauthorized`);
        }
        const ref = this.images.get(image) ?? `sha256:${id()}`;
        this.images.set(image, ref);
        return { image_ref: ref };
      },
    };
    const out: grpc.UntypedServiceImplementation = {};
    for (const method of methods) {
      if (method === 'GetContainerEvents') {
        out[method] = (call: grpc.ServerWritableStream<Raw, Raw>) => {
          this.#events.add(call);
          call.on('cancelled', () => this.#events.delete(call));
        };
        continue;
      }
      const fn = impl[method];
      out[method] = (call: grpc.ServerUnaryCall<Raw, Raw>, callback: grpc.sendUnaryData<Raw>) => {
        this.requests.push({ method, request: call.request });
        try {
          if (!fn) throw grpcError(grpc.status.UNIMPLEMENTED, `fake runtime: ${method} not implemented`);
          this.failHook?.(method, call.request);
          callback(null, fn(call.request));
        } catch (err) {
          callback(err as grpc.ServiceError);
        }
      };
    }
    return out;
  }

  #sandbox(sandboxId: string): FakeSandbox {
    const s = this.sandboxes.get(sandboxId);
    if (!s) throw grpcError(grpc.status.NOT_FOUND, `sandbox ${sandboxId} not found`);
    return s;
  }

  #containerById(containerId: string): FakeContainer {
    const c = this.containers.get(containerId);
    if (!c) throw grpcError(grpc.status.NOT_FOUND, `container ${containerId} not found`);
    return c;
  }
}

function matches(
  labels: Record<string, string> | undefined,
  selector: Record<string, string> | undefined,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

/** An error the server sends with a gRPC status code. */
export function grpcError(code: grpc.status, details: string): Error {
  return Object.assign(new Error(details), { code, details });
}
