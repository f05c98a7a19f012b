/**
 * The ECI API as the provider uses it: Alibaba's official SDK (`@alicloud/eci20180808`, signed with
 * ACS3-HMAC-SHA256) behind a client-side token bucket per action, with back-off and retries on throttling, 5xx
 * and network errors (the SDK retries nothing), and errors translated into provider errors (api-errors.ts).
 * Credentials come from `@alicloud/credentials` and live only inside the SDK's credential object: nothing here
 * logs them, and log lines name the action, never the request.
 */
import Credential, { Config as CredentialConfig } from '@alicloud/credentials';
import Eci, {
  CreateContainerGroupRequest,
  DeleteContainerGroupRequest,
  DescribeContainerGroupEventsRequest,
  DescribeContainerGroupsRequest,
  DescribeContainerGroupStatusRequest,
  DescribeContainerLogRequest,
  DescribeMultiContainerGroupMetricRequest,
  DescribeRegionsRequest,
  ExecContainerCommandRequest,
  UpdateContainerGroupRequest,
  type DescribeContainerGroupsResponseBodyContainerGroups,
  type DescribeMultiContainerGroupMetricResponseBodyMonitorDatas,
} from '@alicloud/eci20180808';
import * as OpenApi from '@alicloud/openapi-client';
import type { Logger } from '../../shared/log.ts';
import { classify, toProviderError, type CallContext } from './api-errors.ts';
import { eciEndpoint, rateLimitFor, type EciConfig } from './config.ts';
import type { ContainerGroupSpec } from './mapping.ts';
import type { EciVolume } from './mapping-volumes.ts';
import { TokenBucket } from './rate-limit.ts';

/**
 * The SDK's classes are CommonJS `exports.default`. Node's own ESM loader hands the whole `module.exports` to a
 * default import, bundlers and vitest hand `exports.default`; take whichever is the class.
 */
function cjsDefault<T>(mod: { default: T } | T): T {
  return typeof mod === 'function' ? (mod as T) : (mod as { default: T }).default;
}
const EciClientClass = cjsDefault<typeof Eci.default>(Eci as unknown as typeof Eci.default);
const CredentialClass = cjsDefault<typeof Credential.default>(
  Credential as unknown as typeof Credential.default,
);

/** The SDK client class. */
export type EciClient = InstanceType<typeof Eci.default>;

/** A container group as DescribeContainerGroups returns it. */
export type ContainerGroup = DescribeContainerGroupsResponseBodyContainerGroups;

/** Monitoring data of one group. */
export type GroupMetrics = DescribeMultiContainerGroupMetricResponseBodyMonitorDatas;

/** A tag filter or tag. */
export interface Tag {
  key: string;
  value: string;
}

/** Builds the SDK's credential provider from the configuration. */
export function createCredential(creds: EciConfig['credentials']): InstanceType<typeof Credential.default> {
  switch (creds.type) {
    case 'access_key':
      return new CredentialClass(
        new CredentialConfig({
          type: creds.securityToken ? 'sts' : 'access_key',
          accessKeyId: creds.accessKeyId,
          accessKeySecret: creds.accessKeySecret,
          securityToken: creds.securityToken,
        }),
      );
    case 'oidc_role_arn':
      return new CredentialClass(
        new CredentialConfig({
          type: 'oidc_role_arn',
          roleArn: creds.roleArn,
          oidcProviderArn: creds.oidcProviderArn,
          oidcTokenFilePath: creds.oidcTokenFilePath,
          roleSessionName: creds.roleSessionName,
          stsEndpoint: creds.stsEndpoint,
        }),
      );
    case 'ecs_ram_role':
      return new CredentialClass(new CredentialConfig({ type: 'ecs_ram_role', roleName: creds.roleName }));
  }
}

/** Creates the SDK client for `config` (endpoint, protocol, timeouts, credentials). */
export function createEciClient(config: EciConfig): EciClient {
  return new EciClientClass(
    new OpenApi.Config({
      credential: createCredential(config.credentials),
      regionId: config.regionId,
      endpoint: eciEndpoint(config),
      protocol: config.protocol,
      readTimeout: config.readTimeoutMs,
      connectTimeout: config.connectTimeoutMs,
      userAgent: 'spillway',
    }),
  );
}

/** Counters of what the client did, for metrics, benchmarks and tests. */
export interface ApiStats {
  /** Requests sent per action (retries included). */
  calls: Record<string, number>;
  /** Answers that were throttling errors. */
  throttled: number;
  /** Retries after throttling, 5xx or network errors. */
  retries: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The ECI actions spillway calls, rate-limited and retried. */
export class EciApi {
  readonly stats: ApiStats = { calls: {}, throttled: 0, retries: 0 };
  readonly #client: EciClient;
  readonly #config: EciConfig;
  readonly #log: Logger | undefined;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(config: EciConfig, client: EciClient = createEciClient(config), log?: Logger) {
    this.#config = config;
    this.#client = client;
    this.#log = log;
  }

  /** Creates a group; `clientToken` makes a repeat return the same group. */
  async createContainerGroup(spec: ContainerGroupSpec, ctx: Omit<CallContext, 'action'>): Promise<string> {
    const request = new CreateContainerGroupRequest({ ...spec, regionId: this.#config.regionId });
    const res = await this.#call({ ...ctx, action: 'CreateContainerGroup' }, () =>
      this.#client.createContainerGroup(request),
    );
    const id = res.body?.containerGroupId;
    if (!id) throw new Error('ECI CreateContainerGroup answered without a ContainerGroupId');
    return id;
  }

  /** Deletes a group; ECI's NotFound surfaces as NotFoundError. */
  async deleteContainerGroup(
    id: string,
    clientToken: string,
    ctx: Omit<CallContext, 'action'> = {},
  ): Promise<void> {
    const request = new DeleteContainerGroupRequest({
      regionId: this.#config.regionId,
      containerGroupId: id,
      clientToken,
    });
    await this.#call({ ...ctx, action: 'DeleteContainerGroup' }, () =>
      this.#client.deleteContainerGroup(request),
    );
  }

  /**
   * Replaces the group's volumes (UpdateContainerGroup, IncrementalUpdate: nothing else changes). ECI shows
   * the group `Updating` meanwhile; `clientToken` makes a repeat a no-op.
   */
  async updateVolumes(
    id: string,
    volumes: EciVolume[],
    clientToken: string,
    ctx: Omit<CallContext, 'action'> = {},
  ): Promise<void> {
    const request = new UpdateContainerGroupRequest({
      regionId: this.#config.regionId,
      containerGroupId: id,
      updateType: 'IncrementalUpdate',
      volume: volumes,
      clientToken,
    });
    await this.#call({ ...ctx, action: 'UpdateContainerGroup' }, () =>
      this.#client.updateContainerGroup(request),
    );
  }

  /**
   * The groups carrying all of `tags` whose status changed or that had an event in the last `sinceSecond`
   * seconds, by id, each with a fingerprint of what was reported (status and events), so that a change seen
   * by an earlier, overlapping window can be told apart from a new one: one DescribeContainerGroupStatus
   * (pages of 200) and one DescribeContainerGroupEvents, whatever the number of groups.
   */
  async changedSince(tags: Tag[], sinceSecond: number): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    const add = (id: string | undefined, what: unknown) => {
      if (id) ids.set(id, (ids.get(id) ?? '') + JSON.stringify(what));
    };
    let nextToken: string | undefined;
    do {
      const request = new DescribeContainerGroupStatusRequest({
        regionId: this.#config.regionId,
        tag: tags,
        sinceSecond,
        limit: 200,
        nextToken,
      });
      const res = await this.#call({ action: 'DescribeContainerGroupStatus' }, () =>
        this.#client.describeContainerGroupStatus(request),
      );
      for (const d of res.body?.data ?? []) add(d.containerGroupId, [d.status, d.podStatus]);
      nextToken = res.body?.nextToken || undefined;
    } while (nextToken);
    const request = new DescribeContainerGroupEventsRequest({
      regionId: this.#config.regionId,
      tag: tags,
      sinceSecond,
    });
    const res = await this.#call({ action: 'DescribeContainerGroupEvents' }, () =>
      this.#client.describeContainerGroupEvents(request),
    );
    for (const d of res.body?.data ?? [])
      add(
        d.containerGroupId,
        (d.events ?? []).map((e) => [e.reason, e.message, e.count, e.lastTimestamp]),
      );
    return ids;
  }

  /** Groups by id (at most 20 per call: ECI's limit), with events. */
  async describeByIds(ids: string[]): Promise<ContainerGroup[]> {
    const out: ContainerGroup[] = [];
    for (let i = 0; i < ids.length; i += 20) {
      out.push(...(await this.#describeAll({ containerGroupIds: JSON.stringify(ids.slice(i, i + 20)) })));
    }
    return out;
  }

  /** Every group carrying all of `tags`, following NextToken through every page of 20. */
  async describeByTags(tags: Tag[]): Promise<ContainerGroup[]> {
    return this.#describeAll({ tag: tags });
  }

  async #describeAll(filter: Record<string, unknown>): Promise<ContainerGroup[]> {
    const groups: ContainerGroup[] = [];
    let nextToken: string | undefined;
    do {
      const request = new DescribeContainerGroupsRequest({
        ...filter,
        regionId: this.#config.regionId,
        limit: 20,
        withEvent: true,
        nextToken,
      });
      const res = await this.#call({ action: 'DescribeContainerGroups' }, () =>
        this.#client.describeContainerGroups(request),
      );
      groups.push(...(res.body?.containerGroups ?? []));
      nextToken = res.body?.nextToken || undefined;
    } while (nextToken);
    return groups;
  }

  /** A container's log (ECI keeps the content; there is no follow, so followers poll). */
  async describeContainerLog(
    params: {
      id: string;
      container: string;
      tail?: number;
      sinceSeconds?: number;
      startTime?: string;
      limitBytes?: number;
      timestamps?: boolean;
      previous?: boolean;
    },
    ctx: Omit<CallContext, 'action'> = {},
  ): Promise<string> {
    const request = new DescribeContainerLogRequest({
      regionId: this.#config.regionId,
      containerGroupId: params.id,
      containerName: params.container,
      tail: params.tail,
      sinceSeconds: params.sinceSeconds,
      startTime: params.startTime,
      limitBytes: params.limitBytes,
      timestamps: params.timestamps,
      lastTime: params.previous,
    });
    const res = await this.#call({ ...ctx, action: 'DescribeContainerLog' }, () =>
      this.#client.describeContainerLog(request),
    );
    return res.body?.content ?? '';
  }

  /** Starts a command; returns the session's WebSocket URI. */
  async execContainerCommand(
    params: { id: string; container: string; command: string[]; tty: boolean; stdin: boolean },
    ctx: Omit<CallContext, 'action'> = {},
  ): Promise<string> {
    const request = new ExecContainerCommandRequest({
      regionId: this.#config.regionId,
      containerGroupId: params.id,
      containerName: params.container,
      command: JSON.stringify(params.command),
      TTY: params.tty,
      stdin: params.stdin,
      sync: false,
    });
    const res = await this.#call({ ...ctx, action: 'ExecContainerCommand' }, () =>
      this.#client.execContainerCommand(request),
    );
    const uri = res.body?.webSocketUri;
    if (!uri) throw new Error('ECI ExecContainerCommand answered without a WebSocketUri');
    return uri;
  }

  /** Latest metrics of up to 20 groups per call. */
  async describeMetrics(ids: string[]): Promise<GroupMetrics[]> {
    const out: GroupMetrics[] = [];
    for (let i = 0; i < ids.length; i += 20) {
      const request = new DescribeMultiContainerGroupMetricRequest({
        regionId: this.#config.regionId,
        containerGroupIds: JSON.stringify(ids.slice(i, i + 20)),
      });
      const res = await this.#call({ action: 'DescribeMultiContainerGroupMetric' }, () =>
        this.#client.describeMultiContainerGroupMetric(request),
      );
      out.push(...(res.body?.monitorDatas ?? []));
    }
    return out;
  }

  /** A cheap authenticated call: proves the endpoint answers and the credentials work. */
  async ping(): Promise<void> {
    const request = new DescribeRegionsRequest({ regionId: this.#config.regionId });
    await this.#call({ action: 'DescribeRegions' }, () => this.#client.describeRegions(request), 1);
  }

  #bucket(action: string): TokenBucket {
    let bucket = this.#buckets.get(action);
    if (!bucket) {
      const { qps, burst } = rateLimitFor(this.#config, action);
      bucket = new TokenBucket(qps, burst);
      this.#buckets.set(action, bucket);
    }
    return bucket;
  }

  /**
   * One call through the action's bucket. Throttling pauses the whole bucket for the back-off (so concurrent
   * callers do not each retry into the quota); 5xx and network errors back off this caller only.
   */
  async #call<T>(
    ctx: CallContext,
    fn: () => Promise<T>,
    maxAttempts = this.#config.retry.maxAttempts,
  ): Promise<T> {
    const { baseDelayMs, maxDelayMs } = this.#config.retry;
    const bucket = this.#bucket(ctx.action);
    for (let attempt = 1; ; attempt++) {
      await bucket.take();
      this.stats.calls[ctx.action] = (this.stats.calls[ctx.action] ?? 0) + 1;
      try {
        return await fn();
      } catch (err) {
        const kind = classify(err);
        if (kind === 'throttled') this.stats.throttled++;
        // Full jitter (AWS architecture blog): spreads retries of many callers over the whole window.
        const delay = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        if (kind === 'final' || attempt >= maxAttempts)
          throw toProviderError(err, { ...ctx, retryAfterMs: Math.round(delay) });
        this.stats.retries++;
        this.#log?.debug(
          { action: ctx.action, attempt, kind, delayMs: Math.round(delay) },
          'retrying ECI call',
        );
        if (kind === 'throttled') bucket.pause(delay);
        else await sleep(delay);
      }
    }
  }
}
