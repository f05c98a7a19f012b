/**
 * The container groups of the fake ECI endpoint and their lifecycle: Scheduling → Pending → Running, then
 * Succeeded/Failed by restart policy when containers exit, Expired after a spot release. Timings are options
 * (default a few milliseconds) so that tests wait for behaviour, never for the clock.
 */
import { randomBytes } from 'node:crypto';

/** How long each lifecycle step takes, in milliseconds. */
export interface FakeEciTimings {
  /** Scheduling → Pending (the IP is assigned at Pending). */
  schedulingMs: number;
  /** Pending → Running. */
  pendingMs: number;
  /** Delete → gone; 0 removes the group at once, otherwise it shows Terminating until then. */
  deleteMs: number;
  /**
   * How long a new group stays out of the Describe* listings (ECI's listings are eventually consistent): a
   * create whose answer was lost cannot be found by tag during this time.
   */
  listingLagMs: number;
}

/** Default timings: fast, but asynchronous like the real service. */
export const DEFAULT_TIMINGS: FakeEciTimings = {
  schedulingMs: 5,
  pendingMs: 5,
  deleteMs: 0,
  listingLagMs: 0,
};

/** A container state as ECI's `CurrentState`/`PreviousState` shows it. */
export interface FakeContainerState {
  State: 'Waiting' | 'Running' | 'Terminated';
  Reason?: string;
  DetailStatus?: string;
  ExitCode?: number;
  StartTime?: string;
  FinishTime?: string;
  Message?: string;
}

/** One log line, with the time ECI received it. */
export interface FakeLogLine {
  time: Date;
  text: string;
}

/** A container of a fake group. */
export interface FakeContainer {
  name: string;
  image: string;
  state: FakeContainerState;
  previous?: FakeContainerState;
  restartCount: number;
  ready: boolean;
  logs: FakeLogLine[];
  previousLogs?: FakeLogLine[];
}

/** An ECI event on a group, as `DescribeContainerGroups` with `WithEvent=true` returns it. */
export interface FakeEvent {
  Type: 'Normal' | 'Warning';
  Reason: string;
  Message: string;
  Name: string;
  Count: number;
  FirstTimestamp: string;
  LastTimestamp: string;
}

/** A fake ECI instance. `request` is the CreateContainerGroup request, unflattened, for assertions. */
export interface FakeGroup {
  id: string;
  name: string;
  status: string;
  creationTime: Date;
  tags: { Key: string; Value: string }[];
  request: Record<string, unknown>;
  restartPolicy: string;
  spotStrategy: string;
  intranetIp?: string;
  zoneId: string;
  vSwitchId: string;
  containers: FakeContainer[];
  initContainers: FakeContainer[];
  events: FakeEvent[];
  /** When the group's status or a container's state last changed (DescribeContainerGroupStatus' SinceSecond). */
  changedAt: Date;
  /** UpdateContainerGroup requests applied, unflattened, oldest first. */
  updates: Record<string, unknown>[];
  timers: NodeJS.Timeout[];
  succeededTime?: string;
  failedTime?: string;
  expiredTime?: string;
}

/**
 * Turns the SDK's flattened parameters (`Container.1.Command.2=x`) back into objects and arrays, the shape
 * ECI's server sees. Numeric segments are 1-based array indices.
 */
export function unflatten(params: Iterable<[string, string]>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of params) {
    const parts = key.split('.');
    let node: Record<string, unknown> | unknown[] = root;
    parts.forEach((part, i) => {
      const index = /^\d+$/.test(part) ? Number(part) - 1 : undefined;
      const last = i === parts.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(parts[i + 1]!);
      const slot = index ?? part;
      const container = node as Record<string | number, unknown>;
      if (last) container[slot] = value;
      else {
        container[slot] ??= nextIsIndex ? [] : {};
        node = container[slot] as Record<string, unknown>;
      }
    });
  }
  return root;
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The store of groups and their timers. */
export class GroupStore {
  readonly groups = new Map<string, FakeGroup>();
  timings: FakeEciTimings;
  #nextIp = 10;

  constructor(timings: Partial<FakeEciTimings> = {}) {
    this.timings = { ...DEFAULT_TIMINGS, ...timings };
  }

  /** Creates a group from an unflattened CreateContainerGroup request and starts its lifecycle. */
  create(request: Record<string, unknown>, regionId: string): FakeGroup {
    const list = (v: unknown) => (Array.isArray(v) ? (v as Record<string, unknown>[]) : []);
    const toContainer = (c: Record<string, unknown>): FakeContainer => ({
      name: String(c.Name),
      image: String(c.Image),
      state: { State: 'Waiting', Reason: 'ContainerCreating' },
      restartCount: 0,
      ready: false,
      logs: [],
    });
    const vSwitches = String(request.VSwitchId ?? '').split(',');
    const group: FakeGroup = {
      id: `eci-${randomBytes(10).toString('hex')}`,
      name: String(request.ContainerGroupName),
      status: 'Scheduling',
      creationTime: new Date(),
      tags: list(request.Tag).map((t) => ({ Key: String(t.Key), Value: String(t.Value ?? '') })),
      request,
      restartPolicy: String(request.RestartPolicy ?? 'Always'),
      spotStrategy: String(request.SpotStrategy ?? 'NoSpot'),
      zoneId: `${regionId}-a`,
      vSwitchId: vSwitches[0] ?? '',
      containers: list(request.Container).map(toContainer),
      initContainers: list(request.InitContainer).map(toContainer),
      events: [],
      changedAt: new Date(),
      updates: [],
      timers: [],
    };
    this.groups.set(group.id, group);
    this.#after(group, this.timings.schedulingMs, () => {
      group.status = 'Pending';
      group.changedAt = new Date();
      group.intranetIp = `192.168.${(this.#nextIp >> 8) & 0xff}.${this.#nextIp++ & 0xff}`;
      this.event(group, 'Normal', 'Scheduled', `Successfully assigned to ${group.zoneId}`);
      this.#after(group, this.timings.pendingMs, () => this.#run(group));
    });
    return group;
  }

  /** Deletes a group (at once, or through Terminating when `deleteMs` is set). */
  delete(group: FakeGroup): void {
    for (const t of group.timers) clearTimeout(t);
    group.timers = [];
    if (this.timings.deleteMs <= 0) {
      this.groups.delete(group.id);
      return;
    }
    group.status = 'Terminating';
    group.changedAt = new Date();
    const t = setTimeout(() => this.groups.delete(group.id), this.timings.deleteMs);
    t.unref();
  }

  /** Adds an event, merging repeats like ECI does (count and last timestamp). */
  event(group: FakeGroup, type: FakeEvent['Type'], reason: string, message: string): void {
    const now = iso(new Date());
    const same = group.events.find((e) => e.Reason === reason && e.Message === message);
    if (same) {
      same.Count++;
      same.LastTimestamp = now;
      return;
    }
    group.events.push({
      Type: type,
      Reason: reason,
      Message: message,
      Name: group.id,
      Count: 1,
      FirstTimestamp: now,
      LastTimestamp: now,
    });
  }

  /** Makes a running container exit with `exitCode`; the restart policy decides what follows. */
  exitContainer(group: FakeGroup, name: string, exitCode: number, reason?: string): void {
    const c = group.containers.find((x) => x.name === name);
    if (!c || c.state.State !== 'Running') throw new Error(`container ${name} of ${group.id} is not running`);
    c.state = {
      State: 'Terminated',
      ExitCode: exitCode,
      Reason: reason ?? (exitCode === 0 ? 'Completed' : 'Error'),
      StartTime: c.state.StartTime,
      FinishTime: iso(new Date()),
    };
    c.ready = false;
    group.changedAt = new Date();
    const restart =
      group.restartPolicy === 'Always' || (group.restartPolicy === 'OnFailure' && exitCode !== 0);
    if (restart) {
      c.previous = c.state;
      c.previousLogs = c.logs;
      c.logs = [];
      c.restartCount++;
      c.state = { State: 'Running', StartTime: iso(new Date()) };
      c.ready = true;
      this.event(group, 'Warning', 'BackOff', `Back-off restarting failed container ${name}`);
      return;
    }
    if (group.containers.every((x) => x.state.State === 'Terminated')) {
      const ok = group.containers.every((x) => x.state.ExitCode === 0);
      group.status = ok ? 'Succeeded' : 'Failed';
      if (ok) group.succeededTime = iso(new Date());
      else group.failedTime = iso(new Date());
    }
  }

  /**
   * Announces the release of a spot instance (`SpotToBeReleased`, as ECI does 3–5 minutes ahead), and
   * expires it after `expireAfterMs` when given (otherwise call {@link expire}).
   */
  releaseSpot(group: FakeGroup, expireAfterMs?: number): void {
    this.event(group, 'Warning', 'SpotToBeReleased', 'Spot ECI will be released in 3 minutes');
    if (expireAfterMs !== undefined) this.#after(group, expireAfterMs, () => this.expire(group));
  }

  /** Reclaims the instance: every container terminates and the group becomes Expired. */
  expire(group: FakeGroup): void {
    const now = iso(new Date());
    for (const c of group.containers) {
      if (c.state.State !== 'Terminated') {
        c.state = {
          State: 'Terminated',
          ExitCode: 137,
          Reason: 'Error',
          StartTime: c.state.StartTime,
          FinishTime: now,
        };
        c.ready = false;
      }
    }
    group.status = 'Expired';
    group.changedAt = new Date();
    group.expiredTime = now;
    this.event(group, 'Warning', 'SpotReleased', 'The spot instance was released');
  }

  /**
   * Applies an unflattened UpdateContainerGroup request: its volumes replace the group's (the files containers
   * see change in place; containers keep running), and the group shows `Updating` for `pendingMs`.
   */
  update(group: FakeGroup, request: Record<string, unknown>): void {
    group.updates.push(request);
    if (request.Volume) group.request = { ...group.request, Volume: request.Volume };
    const before = group.status;
    group.status = 'Updating';
    group.changedAt = new Date();
    this.event(group, 'Normal', 'Updated', 'Updated container group');
    this.#after(group, this.timings.pendingMs, () => {
      group.status = before;
      group.changedAt = new Date();
    });
  }

  /** Stops every timer (the server is closing). */
  clear(): void {
    for (const g of this.groups.values()) for (const t of g.timers) clearTimeout(t);
    this.groups.clear();
  }

  #run(group: FakeGroup): void {
    const now = iso(new Date());
    for (const c of group.initContainers) {
      c.state = { State: 'Terminated', ExitCode: 0, Reason: 'Completed', StartTime: now, FinishTime: now };
    }
    for (const c of group.containers) {
      c.state = { State: 'Running', StartTime: now };
      c.ready = true;
      c.logs.push({ time: new Date(), text: `started ${c.name}` });
    }
    group.status = 'Running';
    group.changedAt = new Date();
    this.event(group, 'Normal', 'Started', 'Started container group');
  }

  #after(group: FakeGroup, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      group.timers = group.timers.filter((x) => x !== t);
      if (this.groups.get(group.id) === group) fn();
    }, ms);
    t.unref();
    group.timers.push(t);
  }
}

/** Renders a group as one `ContainerGroups` item of DescribeContainerGroups. */
export function describeGroup(g: FakeGroup, withEvent: boolean, regionId: string): Record<string, unknown> {
  const container = (c: FakeContainer) => ({
    Name: c.name,
    Image: c.image,
    CurrentState: c.state,
    ...(c.previous && { PreviousState: c.previous }),
    RestartCount: c.restartCount,
    Ready: c.ready,
  });
  return {
    ContainerGroupId: g.id,
    ContainerGroupName: g.name,
    Status: g.status,
    CreationTime: iso(g.creationTime),
    RegionId: regionId,
    ZoneId: g.zoneId,
    VSwitchId: g.vSwitchId,
    SecurityGroupId: g.request.SecurityGroupId,
    RestartPolicy: g.restartPolicy,
    SpotStrategy: g.spotStrategy,
    Cpu: Number(g.request.Cpu ?? 0),
    Memory: Number(g.request.Memory ?? 0),
    ...(g.intranetIp && { IntranetIp: g.intranetIp }),
    ...(g.succeededTime && { SucceededTime: g.succeededTime }),
    ...(g.failedTime && { FailedTime: g.failedTime }),
    ...(g.expiredTime && { ExpiredTime: g.expiredTime }),
    Tags: g.tags,
    Volumes: describeVolumes(g.request.Volume),
    Containers: g.containers.map(container),
    InitContainers: g.initContainers.map(container),
    Events: withEvent ? g.events : [],
  };
}

/** The request's volumes in DescribeContainerGroups' flattened shape (`ConfigFileVolumeConfigFileToPaths`, ...). */
function describeVolumes(volumes: unknown): Record<string, unknown>[] {
  if (!Array.isArray(volumes)) return [];
  return (volumes as Record<string, Record<string, unknown> | undefined>[]).map((v) => {
    const files = v.ConfigFileVolume?.ConfigFileToPath;
    return {
      Name: v.Name,
      Type: v.Type,
      ...(Array.isArray(files) && {
        ConfigFileVolumeConfigFileToPaths: (files as Record<string, unknown>[]).map((f) => ({
          Path: f.Path,
          Content: f.Content,
        })),
      }),
      ...(v.EmptyDirVolume?.Medium !== undefined && { EmptyDirVolumeMedium: v.EmptyDirVolume.Medium }),
      ...(v.NFSVolume && {
        NFSVolumeServer: v.NFSVolume.Server,
        NFSVolumePath: v.NFSVolume.Path,
        NFSVolumeReadOnly: v.NFSVolume.ReadOnly === 'true',
      }),
    };
  });
}

/** The files of volume `name` of a group as its last create or update wrote them, decoded. */
export function groupFiles(group: FakeGroup, name: string): Record<string, string> {
  const volumes = (group.request.Volume ?? []) as {
    Name: string;
    ConfigFileVolume?: { ConfigFileToPath: { Path: string; Content: string }[] };
  }[];
  const files = volumes.find((v) => v.Name === name)?.ConfigFileVolume?.ConfigFileToPath ?? [];
  return Object.fromEntries(files.map((f) => [f.Path, Buffer.from(f.Content, 'base64').toString()]));
}
