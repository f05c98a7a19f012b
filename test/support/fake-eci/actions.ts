/**
 * The ECI 2018-08-08 actions the fake endpoint implements, each a function of the request parameters that
 * returns the response body or throws an {@link EciFault} (an ECI error code). Only the subset spillway calls:
 * CreateContainerGroup, UpdateContainerGroup, DeleteContainerGroup, DescribeContainerGroups,
 * DescribeContainerGroupStatus, DescribeContainerGroupEvents, DescribeContainerLog, ExecContainerCommand,
 * DescribeMultiContainerGroupMetric and DescribeRegions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describeGroup, unflatten, type FakeGroup, type GroupStore } from './groups.ts';

/** An ECI error answer: HTTP status, error code, message. */
export class EciFault extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What an action can see of the fake beyond its parameters. */
export interface ActionContext {
  store: GroupStore;
  regionId: string;
  /** Spot or on-demand creates fail with `OperationDenied.NoStock` while set. */
  noStock: { spot: boolean; onDemand: boolean };
  /** ClientToken → the group it created or updated and a fingerprint of the parameters. */
  clientTokens: Map<string, { id: string; fingerprint: string }>;
  /** Registers an exec session and returns its WebSocket URI. */
  openExec(group: FakeGroup, container: string, command: string[], tty: boolean): string;
}

type Params = URLSearchParams;
type Action = (params: Params, ctx: ActionContext) => Record<string, unknown>;

const MAX_PAGE = 20;

function required(params: Params, name: string): string {
  const v = params.get(name);
  if (v === null || v === '')
    throw new EciFault(
      400,
      `MissingParameter.${name}`,
      `The input parameter "${name}" that is mandatory for processing this request is not supplied.`,
    );
  return v;
}

function groupOf(params: Params, ctx: ActionContext): FakeGroup {
  const id = required(params, 'ContainerGroupId');
  const g = ctx.store.groups.get(id);
  if (!g)
    throw new EciFault(
      404,
      'InvalidContainerGroup.NotFound',
      `The specified container group ${id} does not exist.`,
    );
  return g;
}

function checkRegion(params: Params, ctx: ActionContext): void {
  const region = required(params, 'RegionId');
  if (region !== ctx.regionId)
    throw new EciFault(400, 'InvalidRegionId.NotFound', `The region ${region} does not exist.`);
}

const createContainerGroup: Action = (params, ctx) => {
  checkRegion(params, ctx);
  for (const name of [
    'SecurityGroupId',
    'VSwitchId',
    'ContainerGroupName',
    'Container.1.Name',
    'Container.1.Image',
  ]) {
    required(params, name);
  }
  const token = params.get('ClientToken');
  if (token !== null && (token.length > 64 || !/^[\x20-\x7e]*$/.test(token))) {
    throw new EciFault(
      400,
      'InvalidParameter.ClientToken',
      'ClientToken must be ASCII and at most 64 characters',
    );
  }
  const earlier = replayed(params, ctx);
  if (earlier) return { ContainerGroupId: earlier };
  const spot = (params.get('SpotStrategy') ?? 'NoSpot') !== 'NoSpot';
  if (spot ? ctx.noStock.spot : ctx.noStock.onDemand) {
    throw new EciFault(
      403,
      'OperationDenied.NoStock',
      'Sales of this resource are temporarily suspended in the specified zone.',
    );
  }
  if (params.get('SpotStrategy') === 'SpotWithPriceLimit' && !params.get('SpotPriceLimit')) {
    throw new EciFault(
      400,
      'MissingParameter.SpotPriceLimit',
      'SpotPriceLimit is required with SpotWithPriceLimit',
    );
  }
  const group = ctx.store.create(unflatten(params), ctx.regionId);
  if (token !== null) ctx.clientTokens.set(token, { id: group.id, fingerprint: fingerprintOf(params) });
  return { ContainerGroupId: group.id };
};

function fingerprintOf(params: Params): string {
  return createHash('sha256')
    .update(JSON.stringify([...params].filter(([k]) => k !== 'ClientToken').sort()))
    .digest('hex');
}

/** The group id a request with this ClientToken already made; a different request with it is an error. */
function replayed(params: Params, ctx: ActionContext): string | undefined {
  const token = params.get('ClientToken');
  const earlier = token === null ? undefined : ctx.clientTokens.get(token);
  if (!earlier) return undefined;
  if (earlier.fingerprint !== fingerprintOf(params)) {
    throw new EciFault(
      400,
      'IdempotentParameterMismatch',
      'The request uses the same client token as a previous, but non-identical request.',
    );
  }
  return earlier.id;
}

const updateContainerGroup: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const group = groupOf(params, ctx);
  if (replayed(params, ctx)) return {};
  const type = params.get('UpdateType') ?? 'RenewUpdate';
  if (type !== 'RenewUpdate' && type !== 'IncrementalUpdate')
    throw new EciFault(400, 'InvalidParameter.UpdateType', `UpdateType ${type} is not valid`);
  if (group.status !== 'Pending' && group.status !== 'Running')
    throw new EciFault(
      403,
      'IncorrectStatus',
      `The container group ${group.id} is ${group.status}; only Pending or Running groups can be updated.`,
    );
  const request = unflatten([...params].filter(([k]) => k !== 'ClientToken'));
  ctx.store.update(group, request);
  const token = params.get('ClientToken');
  if (token !== null) ctx.clientTokens.set(token, { id: group.id, fingerprint: fingerprintOf(params) });
  return {};
};

const deleteContainerGroup: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const group = groupOf(params, ctx);
  if (group.status !== 'Terminating') ctx.store.delete(group);
  return {};
};

function tagFilters(params: Params): { Key: string; Value?: string }[] {
  const filters: { Key: string; Value?: string }[] = [];
  for (let i = 1; params.has(`Tag.${i}.Key`); i++) {
    const value = params.get(`Tag.${i}.Value`);
    filters.push({ Key: params.get(`Tag.${i}.Key`)!, ...(value !== null && { Value: value }) });
  }
  return filters;
}

/** The groups a Describe* request selects by `ContainerGroupIds` (at most 20) and tags. */
function selected(params: Params, ctx: ActionContext): FakeGroup[] {
  let ids: string[] | undefined;
  const rawIds = params.get('ContainerGroupIds');
  if (rawIds) {
    try {
      ids = JSON.parse(rawIds) as string[];
    } catch {
      throw new EciFault(400, 'InvalidParameter.ContainerGroupIds', 'ContainerGroupIds must be a JSON array');
    }
    if (!Array.isArray(ids) || ids.length > MAX_PAGE) {
      throw new EciFault(400, 'InvalidParameter.ContainerGroupIds', `at most ${MAX_PAGE} ContainerGroupIds`);
    }
  }
  const tags = tagFilters(params);
  const listedBefore = Date.now() - ctx.store.timings.listingLagMs;
  return [...ctx.store.groups.values()].filter(
    (g) =>
      g.creationTime.getTime() <= listedBefore &&
      (!ids || ids.includes(g.id)) &&
      tags.every((f) =>
        g.tags.some((t) => t.Key === f.Key && (f.Value === undefined || t.Value === f.Value)),
      ),
  );
}

/** One page of `items` by `Limit` (default and maximum `max`) and `NextToken` (an offset here). */
function paged<T>(params: Params, items: T[], max: number): { page: T[]; next: string } {
  const limit = Number(params.get('Limit') ?? max);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new EciFault(400, 'InvalidParameter.Limit', `Limit must be between 1 and ${max}`);
  }
  const start = Number(params.get('NextToken') || 0);
  if (!Number.isInteger(start) || start < 0)
    throw new EciFault(400, 'InvalidParameter.NextToken', 'bad NextToken');
  return {
    page: items.slice(start, start + limit),
    next: start + limit < items.length ? String(start + limit) : '',
  };
}

/** The `SinceSecond` window's start in ms, or 0 for none. */
function since(params: Params): number {
  const raw = params.get('SinceSecond');
  if (raw === null) return 0;
  const s = Number(raw);
  if (!Number.isInteger(s) || s < 1)
    throw new EciFault(400, 'InvalidParameter.SinceSecond', 'SinceSecond must be a positive integer');
  return Date.now() - s * 1000;
}

const describeContainerGroups: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const status = params.get('Status');
  const name = params.get('ContainerGroupName');
  const matching = selected(params, ctx).filter(
    (g) => (!status || g.status === status) && (!name || g.name === name),
  );
  const { page, next } = paged(params, matching, MAX_PAGE);
  const withEvent = params.get('WithEvent') === 'true';
  return {
    TotalCount: matching.length,
    NextToken: next,
    ContainerGroups: page.map((g) => describeGroup(g, withEvent, ctx.regionId)),
  };
};

/** Status changes within `SinceSecond`, 200 per page: what a poller asks every second. */
const describeContainerGroupStatus: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const from = since(params);
  const matching = selected(params, ctx).filter((g) => g.changedAt.getTime() >= from);
  const { page, next } = paged(params, matching, 200);
  return {
    TotalCount: matching.length,
    NextToken: next,
    Data: page.map((g) => ({
      ContainerGroupId: g.id,
      Name: g.name,
      Status: g.status,
      PodStatus: {
        Phase: g.status,
        ...(g.intranetIp && { PodIp: g.intranetIp }),
        ContainerStatuses: g.containers.map((c) => ({
          Name: c.name,
          Ready: c.ready,
          RestartCount: c.restartCount,
          State: { State: c.state.State, Reason: c.state.Reason },
        })),
      },
    })),
  };
};

/** Events whose last occurrence is within `SinceSecond`, by group (the answer has no pages). */
const describeContainerGroupEvents: Action = (params, ctx) => {
  checkRegion(params, ctx);
  // Event timestamps have whole seconds: an event of this second counts as now.
  const from = Math.floor(since(params) / 1000) * 1000;
  const data = selected(params, ctx).flatMap((g) => {
    const events = g.events.filter((e) => Date.parse(e.LastTimestamp) >= from);
    return events.length > 0 ? [{ ContainerGroupId: g.id, Name: g.name, Events: events }] : [];
  });
  return { TotalCount: data.length, Data: data };
};

/** RFC 3339 with nanoseconds, as container runtimes write log timestamps. */
function nanoTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

const describeContainerLog: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const group = groupOf(params, ctx);
  const name = required(params, 'ContainerName');
  const c = [...group.containers, ...group.initContainers].find((x) => x.name === name);
  if (!c) throw new EciFault(404, 'InvalidContainer.NotFound', `container ${name} not found in ${group.id}`);
  let lines = params.get('LastTime') === 'true' ? (c.previousLogs ?? []) : c.logs;
  const since = params.get('SinceSeconds');
  const startTime = params.get('StartTime');
  if (since !== null) lines = lines.filter((l) => l.time.getTime() >= Date.now() - Number(since) * 1000);
  else if (startTime !== null) lines = lines.filter((l) => l.time.getTime() >= Date.parse(startTime));
  const tail = params.get('Tail');
  if (tail !== null) lines = Number(tail) === 0 ? [] : lines.slice(-Number(tail));
  const stamps = params.get('Timestamps') === 'true';
  let content = lines.map((l) => `${stamps ? `${nanoTime(l.time)} ` : ''}${l.text}\n`).join('');
  const limit = params.get('LimitBytes');
  if (limit !== null) content = Buffer.from(content).subarray(0, Number(limit)).toString();
  return { ContainerName: name, Content: content };
};

const execContainerCommand: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const group = groupOf(params, ctx);
  const name = required(params, 'ContainerName');
  const c = group.containers.find((x) => x.name === name);
  if (!c) throw new EciFault(404, 'InvalidContainer.NotFound', `container ${name} not found in ${group.id}`);
  if (c.state.State !== 'Running')
    throw new EciFault(400, 'IncorrectStatus', `container ${name} is not running`);
  let command: unknown;
  try {
    command = JSON.parse(required(params, 'Command'));
  } catch {
    throw new EciFault(400, 'InvalidParameter.Command', 'Command must be a JSON array of strings');
  }
  if (!Array.isArray(command) || command.some((a) => typeof a !== 'string')) {
    throw new EciFault(400, 'InvalidParameter.Command', 'Command must be a JSON array of strings');
  }
  return { WebSocketUri: ctx.openExec(group, name, command as string[], params.get('TTY') === 'true') };
};

const describeMultiContainerGroupMetric: Action = (params, ctx) => {
  checkRegion(params, ctx);
  const ids = JSON.parse(required(params, 'ContainerGroupIds')) as string[];
  const now = Date.now();
  const datas = ids.flatMap((id) => {
    const g = ctx.store.groups.get(id);
    if (!g || g.status !== 'Running') return [];
    const uptimeNs = (now - g.creationTime.getTime()) * 1e6;
    const cpu = { UsageNanoCores: 100_000_000, UsageCoreNanoSeconds: Math.round(uptimeNs / 10), Limit: 1000 };
    const memory = { WorkingSet: 64 * 2 ** 20, UsageBytes: 80 * 2 ** 20, Rss: 48 * 2 ** 20 };
    const containers = g.containers.map((c) => ({ Name: c.name, CPU: cpu, Memory: memory }));
    const n = containers.length;
    return [
      {
        ContainerGroupId: id,
        Records: [
          {
            Timestamp: new Date(now).toISOString(),
            CPU: {
              ...cpu,
              UsageNanoCores: cpu.UsageNanoCores * n,
              UsageCoreNanoSeconds: cpu.UsageCoreNanoSeconds * n,
            },
            Memory: {
              WorkingSet: memory.WorkingSet * n,
              UsageBytes: memory.UsageBytes * n,
              Rss: memory.Rss * n,
            },
            Network: { Interfaces: [{ Name: 'eth0', RxBytes: 1000, TxBytes: 2000 }] },
            Containers: containers,
          },
        ],
      },
    ];
  });
  return { MonitorDatas: datas };
};

const describeRegions: Action = (_params, ctx) => ({
  Regions: [
    {
      RegionId: ctx.regionId,
      RegionEndpoint: `eci.${ctx.regionId}.aliyuncs.com`,
      Zones: [`${ctx.regionId}-a`],
    },
  ],
});

/** The implemented actions, by name (the `x-acs-action` header). */
export const ACTIONS: Readonly<Record<string, Action>> = {
  CreateContainerGroup: createContainerGroup,
  UpdateContainerGroup: updateContainerGroup,
  DeleteContainerGroup: deleteContainerGroup,
  DescribeContainerGroups: describeContainerGroups,
  DescribeContainerGroupStatus: describeContainerGroupStatus,
  DescribeContainerGroupEvents: describeContainerGroupEvents,
  DescribeContainerLog: describeContainerLog,
  ExecContainerCommand: execContainerCommand,
  DescribeMultiContainerGroupMetric: describeMultiContainerGroupMetric,
  DescribeRegions: describeRegions,
};

/** A request id in ECI's format. */
export function requestId(): string {
  const h = randomBytes(16).toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
