/**
 * ECI container group → SandboxStatus: phase, container states, restart counts, IntranetIp → podIP, and the
 * conditions ECI's events imply (a spot `SpotToBeReleased` notice becomes `DisruptionTarget`, so the workload
 * replaces the pod before ECI reclaims the instance). Pure, so the poller and `status()` agree.
 */
import type {
  ContainerReport,
  ContainerState,
  ReportedCondition,
  SandboxKey,
  SandboxPhase,
  SandboxStatus,
} from '../types.ts';
import type { ContainerGroup } from './client.ts';
import { KUBE_PROXY_CONTAINER, TAGS } from './mapping.ts';
import { PodReason } from '../../../api/reasons.ts';

/** An ECI event, as DescribeContainerGroups with WithEvent returns it. */
export interface EciEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  count: number;
  lastTimestamp?: Date;
}

/** The event that announces a spot release, 3–5 minutes ahead. */
export const SPOT_RELEASE_EVENT = 'SpotToBeReleased';

/** The key of a group, from its tags; undefined when it is not one of spillway's. */
export function keyOfGroup(g: ContainerGroup): SandboxKey | undefined {
  const tag = (k: string) => g.tags?.find((t) => t.key === k)?.value;
  const uid = tag(TAGS.uid);
  if (!uid) return undefined;
  return {
    uid,
    namespace: tag(TAGS.namespace) ?? 'default',
    name: tag(TAGS.pod) ?? g.containerGroupName ?? uid,
  };
}

const date = (s: string | undefined) => {
  if (!s) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
};

/** The group's events, oldest first. */
export function eventsOf(g: ContainerGroup): EciEvent[] {
  return (g.events ?? []).map((e) => ({
    type: e.type === 'Warning' ? 'Warning' : 'Normal',
    reason: e.reason ?? '',
    message: e.message ?? '',
    count: e.count ?? 1,
    ...(date(e.lastTimestamp) && { lastTimestamp: date(e.lastTimestamp) }),
  }));
}

interface RawState {
  state?: string;
  reason?: string;
  detailStatus?: string;
  message?: string;
  exitCode?: number;
  signal?: number;
  startTime?: string;
  finishTime?: string;
}

/** One ECI container state → the provider's tagged union. */
export function containerState(s: RawState | undefined): ContainerState {
  switch (s?.state) {
    case 'Running':
      return { kind: 'running', startedAt: date(s.startTime) ?? new Date(0) };
    case 'Terminated': {
      const exitCode = s.exitCode ?? 0;
      return {
        kind: 'terminated',
        exitCode,
        ...(s.signal ? { signal: s.signal } : {}),
        reason: s.reason || (exitCode === 0 ? 'Completed' : 'Error'),
        ...(s.message && { message: s.message }),
        ...(date(s.startTime) && { startedAt: date(s.startTime) }),
        finishedAt: date(s.finishTime) ?? new Date(0),
      };
    }
    default:
      return {
        kind: 'waiting',
        reason: s?.reason || s?.detailStatus || 'ContainerCreating',
        ...(s?.message && { message: s.message }),
      };
  }
}

interface RawContainer {
  name?: string;
  image?: string;
  currentState?: RawState;
  previousState?: RawState;
  restartCount?: number;
  ready?: boolean;
}

function report(groupId: string | undefined, c: RawContainer): ContainerReport {
  const state = containerState(c.currentState);
  return {
    name: c.name ?? '',
    state,
    ...(c.previousState?.state && { lastState: containerState(c.previousState) }),
    restartCount: c.restartCount ?? 0,
    ready: state.kind === 'running' && (c.ready ?? true),
    started: state.kind === 'running',
    ...(c.image && { image: c.image }),
    containerID: `eci://${groupId ?? ''}/${c.name ?? ''}`,
  };
}

const PHASES: Record<string, SandboxPhase> = {
  Scheduling: 'Pending',
  Pending: 'Pending',
  Running: 'Running',
  Restarting: 'Running',
  Updating: 'Running',
  // A group being deleted still runs its containers until they stop.
  Terminating: 'Running',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  ScheduleFailed: 'Failed',
  Expired: 'Failed',
};

/** Whether a group has been announced for spot release. */
export function spotReleaseNotice(g: ContainerGroup): EciEvent | undefined {
  return eventsOf(g).find((e) => e.reason === SPOT_RELEASE_EVENT);
}

/** Maps a group to the status the virtual node turns into a Pod status. */
export function groupToStatus(g: ContainerGroup, key: SandboxKey): SandboxStatus {
  const phase = PHASES[g.status ?? ''] ?? 'Unknown';
  const ips = [g.intranetIp, g.ipv6Address].filter((ip): ip is string => !!ip);
  const conditions: ReportedCondition[] = [];
  const notice = spotReleaseNotice(g);
  if (notice) {
    conditions.push({
      type: 'DisruptionTarget',
      status: 'True',
      reason: 'SpotInstanceReclaim',
      message: `ECI will reclaim this spot instance: ${notice.message}`,
      ...(notice.lastTimestamp && { lastTransitionTime: notice.lastTimestamp }),
    });
  }
  let reason: string | undefined;
  let message: string | undefined;
  if (g.status === 'Expired') {
    reason = notice ? 'SpotInstanceReclaimed' : 'Expired';
    message = notice ? 'ECI reclaimed the spot instance' : 'the ECI instance expired';
  } else if (g.status === 'ScheduleFailed' || g.status === 'Failed') {
    const last = eventsOf(g)
      .filter((e) => e.type === 'Warning')
      .at(-1);
    reason = /NoStock/i.test(`${last?.reason ?? ''} ${last?.message ?? ''}`)
      ? PodReason.InsufficientCapacity
      : PodReason.ProviderFailed;
    message = last ? `${last.reason}: ${last.message}` : `ECI reports the instance ${g.status}`;
  }
  const visible = (c: RawContainer) => c.name !== KUBE_PROXY_CONTAINER;
  return {
    key,
    phase,
    ...(reason && { reason }),
    ...(message && { message }),
    ...(ips[0] && { podIP: ips[0], podIPs: ips }),
    ...(date(g.creationTime) && { startTime: date(g.creationTime) }),
    initContainers: (g.initContainers ?? []).filter(visible).map((c) => report(g.containerGroupId, c)),
    containers: (g.containers ?? []).filter(visible).map((c) => report(g.containerGroupId, c)),
    ...(conditions.length > 0 && { conditions }),
  };
}
