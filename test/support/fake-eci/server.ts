/**
 * A fake Alibaba Cloud ECI endpoint (API 2018-08-08) on 127.0.0.1, for tests and benchmarks of the `eci`
 * provider through the official SDK, unchanged. It verifies every request's ACS3-HMAC-SHA256 signature
 * (signature.ts), rejects replayed nonces and stale dates, honours `ClientToken`, simulates the lifecycle
 * (groups.ts), and injects the faults spillway must survive: throttling (`Throttling.User`, by a per-action
 * quota or on demand), 5xx, answers lost after the action was carried out, `OperationDenied.NoStock` for spot,
 * spot release, and listings that lag behind creates. It records every call per
 * action for assertions, like Karpenter's fake cloud provider.
 *
 * ```ts
 * const eci = await FakeEci.start();
 * const provider = new EciProvider(eciTestConfig(eci));   // endpoint 127.0.0.1:PORT, protocol http
 * eci.failNext('CreateContainerGroup', 'Throttling.User');
 * ```
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ACTIONS, EciFault, requestId, type ActionContext } from './actions.ts';
import { runExecSession, type ExecRecord, type ExecSession } from './exec-session.ts';
import { GroupStore, type FakeEciTimings, type FakeGroup } from './groups.ts';
import { verifySignature } from './signature.ts';
import { acceptWebSocket } from './websocket.ts';

export type { FakeGroup, FakeEciTimings } from './groups.ts';
export type { ExecRecord } from './exec-session.ts';

/** Options of {@link FakeEci.start}; everything has a default. */
export interface FakeEciOptions {
  regionId?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
  timings?: Partial<FakeEciTimings>;
}

/** One error answer the fake gave, for assertions. */
export interface RejectedCall {
  action: string;
  code: string;
}

interface Injected {
  code: string;
  status: number;
  message: string;
  remaining: number;
}

/** A server-side token bucket: what ECI's per-API quota does. */
class Quota {
  #tokens: number;
  #last = Date.now();
  readonly qps: number;
  readonly burst: number;
  constructor(qps: number, burst: number) {
    this.qps = qps;
    this.burst = burst;
    this.#tokens = burst;
  }
  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.qps);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

const MAX_CLOCK_SKEW_MS = 15 * 60_000;

/** The fake endpoint. Create it with {@link FakeEci.start}; close it in `afterEach`/`afterAll`. */
export class FakeEci {
  readonly regionId: string;
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  readonly store: GroupStore;
  /** While set, creates of that capacity class fail with `OperationDenied.NoStock`. */
  readonly noStock = { spot: false, onDemand: false };
  /** Every error answer, in order. */
  readonly rejected: RejectedCall[] = [];
  /** Finished exec sessions. */
  readonly execs: ExecRecord[] = [];

  readonly #server: Server;
  readonly #requests = new Map<string, URLSearchParams[]>();
  readonly #injected = new Map<string, Injected[]>();
  readonly #lost = new Map<string, number>();
  readonly #quotas = new Map<string, Quota>();
  readonly #nonces = new Set<string>();
  readonly #clientTokens = new Map<string, { id: string; fingerprint: string }>();
  readonly #sessions = new Map<string, ExecSession>();

  private constructor(options: FakeEciOptions) {
    this.regionId = options.regionId ?? 'cn-hangzhou';
    this.accessKeyId = options.accessKeyId ?? 'LTAI-fake-access-key';
    this.accessKeySecret = options.accessKeySecret ?? 'fake-secret-0123456789';
    this.store = new GroupStore(options.timings);
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('upgrade', (req: IncomingMessage, socket) => this.#upgrade(req, socket));
  }

  /** Starts a fake on 127.0.0.1 and an ephemeral port. */
  static async start(options: FakeEciOptions = {}): Promise<FakeEci> {
    const fake = new FakeEci(options);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject);
      fake.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return fake;
  }

  /** `127.0.0.1:PORT`: what the SDK's `Config.endpoint` takes (with `protocol: 'http'`). */
  get endpoint(): string {
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** How many authenticated calls of `action` arrived (throttled and failed ones included). */
  calls(action: string): number {
    return this.#requests.get(action)?.length ?? 0;
  }

  /** The parameters of every authenticated call of `action`, in order. */
  requests(action: string): URLSearchParams[] {
    return this.#requests.get(action) ?? [];
  }

  /** How many calls were answered with `code` (e.g. `Throttling.User`, `SignatureDoesNotMatch`). */
  rejectedWith(code: string): number {
    return this.rejected.filter((r) => r.code === code).length;
  }

  /**
   * Makes the next `count` calls of `action` fail with `code` (HTTP 400, or `status`; use 500/503 with
   * `InternalError`/`ServiceUnavailable` for server errors).
   */
  failNext(
    action: string,
    code: string,
    options: { count?: number; status?: number; message?: string } = {},
  ): void {
    const list = this.#injected.get(action) ?? [];
    list.push({
      code,
      status: options.status ?? 400,
      message: options.message ?? `injected ${code}`,
      remaining: options.count ?? 1,
    });
    this.#injected.set(action, list);
  }

  /**
   * Carries out the next `count` calls of `action`, then loses their answers: the connection closes without a
   * response, as when the network fails after ECI acted (the group exists; the client saw a socket hang-up).
   */
  loseNextResponses(action: string, count = 1): void {
    this.#lost.set(action, (this.#lost.get(action) ?? 0) + count);
  }

  /** Enforces a per-action quota like ECI's: beyond it, calls fail with `Throttling.User`. */
  setQuota(action: string, qps: number, burst = qps): void {
    this.#quotas.set(action, new Quota(qps, burst));
  }

  /** Every group that exists now. */
  groups(): FakeGroup[] {
    return [...this.store.groups.values()];
  }

  /** The group tagged with pod UID `uid` (spillway's `spillway.dev/uid` tag). */
  groupByUid(uid: string): FakeGroup | undefined {
    return this.groups().find((g) => g.tags.some((t) => t.Key === 'spillway.dev/uid' && t.Value === uid));
  }

  /** Announces a spot release of group `id` (a `SpotToBeReleased` event); expires it later when asked to. */
  releaseSpot(id: string, expireAfterMs?: number): void {
    this.store.releaseSpot(this.#group(id), expireAfterMs);
  }

  /** Reclaims group `id` now (status Expired). */
  expire(id: string): void {
    this.store.expire(this.#group(id));
  }

  /** Makes container `name` of group `id` exit with `exitCode`. */
  exitContainer(id: string, name: string, exitCode: number): void {
    this.store.exitContainer(this.#group(id), name, exitCode);
  }

  /** Appends lines (split on `\n`) to a container's log. */
  appendLog(id: string, container: string, text: string): void {
    const c = this.#group(id).containers.find((x) => x.name === container);
    if (!c) throw new Error(`no container ${container} in ${id}`);
    for (const line of text.replace(/\n$/, '').split('\n')) c.logs.push({ time: new Date(), text: line });
  }

  /** Stops the server and every timer. */
  async close(): Promise<void> {
    this.store.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #group(id: string): FakeGroup {
    const g = this.store.groups.get(id);
    if (!g) throw new Error(`no fake ECI group ${id}`);
    return g;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake-eci');
    const action = String(req.headers['x-acs-action'] ?? url.searchParams.get('Action') ?? '');
    const id = requestId();
    const answer = (status: number, body: Record<string, unknown>) => {
      res.writeHead(status, { 'content-type': 'application/json;charset=utf-8' });
      res.end(JSON.stringify({ RequestId: id, ...body }));
    };
    const fail = (status: number, code: string, message: string) => {
      this.rejected.push({ action, code });
      answer(status, { Code: code, Message: message, HostId: this.endpoint, Recommend: '' });
    };
    const verified = verifySignature(
      {
        method: req.method ?? '',
        pathname: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks),
      },
      (ak) => (ak === this.accessKeyId ? this.accessKeySecret : undefined),
    );
    if ('code' in verified) return fail(verified.status, verified.code, verified.message);
    const nonce = String(req.headers['x-acs-signature-nonce'] ?? '');
    if (!nonce || this.#nonces.has(nonce))
      return fail(400, 'SignatureNonceUsed', 'The request signature nonce has been used.');
    this.#nonces.add(nonce);
    const date = Date.parse(String(req.headers['x-acs-date'] ?? ''));
    if (!Number.isFinite(date) || Math.abs(date - Date.now()) > MAX_CLOCK_SKEW_MS) {
      return fail(400, 'InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.');
    }
    if (req.headers['x-acs-version'] !== '2018-08-08')
      return fail(400, 'InvalidVersion', 'Specified parameter Version is not valid.');
    const handler = ACTIONS[action];
    if (!handler) return fail(400, 'InvalidAction.NotFound', `Specified api ${action} is not found.`);
    const list = this.#requests.get(action) ?? [];
    list.push(url.searchParams);
    this.#requests.set(action, list);
    const injected = this.#injected.get(action)?.[0];
    if (injected) {
      if (--injected.remaining <= 0) this.#injected.get(action)!.shift();
      return fail(injected.status, injected.code, injected.message);
    }
    if (this.#quotas.get(action)?.take() === false) {
      return fail(400, 'Throttling.User', 'Request was denied due to user flow control.');
    }
    try {
      const body = handler(url.searchParams, this.#context());
      const lost = this.#lost.get(action) ?? 0;
      if (lost > 0) {
        this.#lost.set(action, lost - 1);
        this.rejected.push({ action, code: 'ResponseLost' });
        res.destroy();
        return;
      }
      answer(200, body);
    } catch (err) {
      if (err instanceof EciFault) return fail(err.status, err.code, err.message);
      fail(500, 'InternalError', String(err));
    }
  }

  #context(): ActionContext {
    return {
      store: this.store,
      regionId: this.regionId,
      noStock: this.noStock,
      clientTokens: this.#clientTokens,
      openExec: (group, container, command, tty) => {
        const token = randomBytes(16).toString('hex');
        this.#sessions.set(token, { groupId: group.id, container, command, tty });
        return `ws://${this.endpoint}/exec/${token}`;
      },
    };
  }

  #upgrade(req: IncomingMessage, socket: import('node:stream').Duplex): void {
    const token = /^\/exec\/([0-9a-f]+)$/.exec(req.url ?? '')?.[1];
    const session = token === undefined ? undefined : this.#sessions.get(token);
    if (!session) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    // A session URI is single-use, like ECI's.
    this.#sessions.delete(token!);
    const peer = acceptWebSocket(req, socket);
    if (peer) runExecSession(session, peer, (record) => this.execs.push(record));
  }
}
