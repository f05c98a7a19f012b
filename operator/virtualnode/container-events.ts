/**
 * The container lifecycle Events a kubelet records (`kubectl describe pod`, `kubectl events`), derived from what
 * the provider reports: reasons, types and messages as the kubelet's `pkg/kubelet/events` and kuberuntime write
 * them (Pulling, Pulled, Created, Started, Failed, BackOff, Unhealthy, Killing), so that users, alerts and tools
 * that grep them work unchanged on a virtual node.
 *
 * A provider reports states, not actions: when the node writes a Pod status, it compares the container states of
 * the status it last wrote (after a restart: the one on the Pod) with the new report, and each transition is the
 * Event a kubelet would have recorded when it made that change itself. Comparing against what was written is what
 * keeps a restart from recording every container's Started again.
 */
import type { V1ContainerStatus, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { ContainerReport, SandboxStatus } from '../providers/types.ts';

/** One Event for the pod, about one of its containers (`fieldPath`), as the kubelet records it. */
export interface ContainerEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** `spec.containers{name}` or `spec.initContainers{name}`: the kubelet's involvedObject.fieldPath. */
  fieldPath: string;
}

/** What the comparison needs of one container, from a provider report or from a Pod's status. */
export interface ContainerView {
  name: string;
  state: 'waiting' | 'running' | 'terminated';
  reason?: string;
  message?: string;
  exitCode?: number;
  restartCount: number;
  ready: boolean;
  containerID?: string;
  startedAt?: Date;
}

/** Waiting reasons a kubelet records as a `Failed` Warning `Error: <reason>` when a container enters them. */
const FAILED_WAITING_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'CreateContainerError',
  'CreateContainerConfigError',
  'RunContainerError',
]);

/** The views of a provider report's containers, init containers first. */
export function viewsFromReport(report: SandboxStatus): ContainerView[] {
  const view = (r: ContainerReport): ContainerView => {
    const s = r.state;
    return {
      name: r.name,
      state: s.kind,
      ...(s.kind !== 'running' && { reason: s.reason, message: s.message }),
      ...(s.kind === 'terminated' && { exitCode: s.exitCode }),
      ...(s.kind === 'running' && { startedAt: s.startedAt }),
      restartCount: r.restartCount,
      ready: r.ready,
      containerID: r.containerID,
    };
  };
  return [...report.initContainers, ...report.containers].map(view);
}

/** The views of what a Pod's status says (what the node wrote before a restart), init containers first. */
export function viewsFromPodStatus(status: V1PodStatus | undefined): ContainerView[] {
  const view = (s: V1ContainerStatus): ContainerView => {
    const state = s.state?.running ? 'running' : s.state?.terminated ? 'terminated' : 'waiting';
    return {
      name: s.name,
      state,
      reason: s.state?.waiting?.reason ?? s.state?.terminated?.reason,
      message: s.state?.waiting?.message ?? s.state?.terminated?.message,
      exitCode: s.state?.terminated?.exitCode,
      restartCount: s.restartCount,
      ready: s.ready,
      containerID: s.containerID,
    };
  };
  return [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])].map(view);
}

/** Formats a duration as Go's `time.Duration.String()` does for the kubelet's messages (`842ms`, `1.5s`, `2m3s`). */
export function goDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms < 1000) return `${Math.round(ms * 1000) / 1000}ms`;
  const totalSeconds = ms / 1000;
  const minutes = Math.floor(totalSeconds / 60);
  const seconds = Math.round((totalSeconds - minutes * 60) * 1000) / 1000;
  return minutes > 0 ? `${minutes}m${seconds}s` : `${seconds}s`;
}

/** The kubelet's `format.Pod`: `name_namespace(uid)`. */
function formatPod(pod: V1Pod): string {
  return `${pod.metadata?.name ?? ''}_${pod.metadata?.namespace ?? ''}(${pod.metadata?.uid ?? ''})`;
}

/** Whether the container has had an instance at all (created once: running, or ended after creation). */
function hasRun(v: ContainerView | undefined): boolean {
  return v !== undefined && (v.state !== 'waiting' || v.restartCount > 0 || Boolean(v.containerID));
}

/**
 * The Events that moving from `before` to `report` means for `pod`, in the order a kubelet records them.
 * `before` holds what the node knew (empty for a pod it never reported).
 */
export function containerEvents(
  pod: V1Pod,
  before: readonly ContainerView[],
  report: SandboxStatus,
): ContainerEvent[] {
  const inits = new Set((pod.spec?.initContainers ?? []).map((c) => c.name));
  const specOf = (name: string) =>
    [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);
  const events: ContainerEvent[] = [];
  for (const a of viewsFromReport(report)) {
    const b = before.find((v) => v.name === a.name);
    const fieldPath = `spec.${inits.has(a.name) ? 'initContainers' : 'containers'}{${a.name}}`;
    const image = specOf(a.name)?.image ?? '';
    const add = (type: ContainerEvent['type'], reason: string, message: string) =>
      events.push({ type, reason, message, fieldPath });
    const startError = a.state === 'terminated' && a.reason === 'StartError';
    const start = () => {
      add('Normal', 'Created', `Created container: ${a.name}`);
      // A start the runtime refused (containerd's StartError, exit code 128) is a Failed, not a Started.
      if (startError)
        add(
          'Warning',
          'Failed',
          `Error: ${a.message || `failed to start container (exit code ${a.exitCode})`}`,
        );
      else add('Normal', 'Started', `Started container ${a.name}`);
    };
    const firstRun = !hasRun(b) && hasRun(a);
    const restarted = hasRun(b) && a.restartCount > b!.restartCount && a.state !== 'waiting';
    if (firstRun) {
      add('Normal', 'Pulling', `Pulling image "${image}"`);
      const took = a.startedAt && report.startTime ? a.startedAt.getTime() - report.startTime.getTime() : 0;
      const d = goDuration(Math.max(0, took));
      add('Normal', 'Pulled', `Successfully pulled image "${image}" in ${d} (${d} including waiting)`);
      start();
    } else if (restarted) {
      add('Normal', 'Pulled', `Container image "${image}" already present on machine`);
      start();
    } else if (startError && b?.reason !== 'StartError') {
      add(
        'Warning',
        'Failed',
        `Error: ${a.message || `failed to start container (exit code ${a.exitCode})`}`,
      );
    }
    const newReason = a.state === 'waiting' && (b?.state !== 'waiting' || b.reason !== a.reason);
    if (newReason && a.reason === 'CrashLoopBackOff') {
      add('Warning', 'BackOff', `Back-off restarting failed container ${a.name} in pod ${formatPod(pod)}`);
    } else if (newReason && a.reason && FAILED_WAITING_REASONS.has(a.reason)) {
      if (a.reason === 'ImagePullBackOff') add('Normal', 'BackOff', `Back-off pulling image "${image}"`);
      // A pull that failed: the kubelet tells the attempt and its error before the reason.
      if (a.reason === 'ErrImagePull') {
        add('Normal', 'Pulling', `Pulling image "${image}"`);
        add('Warning', 'Failed', `Failed to pull image "${image}": ${a.message || 'the pull failed'}`);
      }
      add('Warning', 'Failed', `Error: ${a.reason}`);
    }
    const sameRun = b?.state === 'running' && a.state === 'running' && a.restartCount === b.restartCount;
    if (sameRun && b.ready && !a.ready && specOf(a.name)?.readinessProbe) {
      add('Warning', 'Unhealthy', `Readiness probe failed: container ${a.name} stopped passing its probe`);
    }
  }
  return events;
}

/** The `Killing` Events of a graceful delete: one per container that is running, as the kubelet stops it. */
export function killingEvents(pod: V1Pod, known: readonly ContainerView[]): ContainerEvent[] {
  const inits = new Set((pod.spec?.initContainers ?? []).map((c) => c.name));
  return known
    .filter((v) => v.state === 'running')
    .map((v) => ({
      type: 'Normal' as const,
      reason: 'Killing',
      message: `Stopping container ${v.name}`,
      fieldPath: `spec.${inits.has(v.name) ? 'initContainers' : 'containers'}{${v.name}}`,
    }));
}

/**
 * The Pod status of a pod whose container config cannot be built (a missing env reference): Pending, that
 * container waiting with `CreateContainerConfigError` and the kubelet's message, the others still creating.
 */
export function withContainerWaiting(
  status: V1PodStatus,
  container: string,
  reason: string,
  message: string,
): V1PodStatus {
  const set = (list: V1ContainerStatus[] | undefined) =>
    list?.map((s) => (s.name === container ? { ...s, state: { waiting: { reason, message } } } : s));
  return {
    ...status,
    initContainerStatuses: set(status.initContainerStatuses),
    containerStatuses: set(status.containerStatuses),
  };
}
