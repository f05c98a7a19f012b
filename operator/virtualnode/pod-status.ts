/**
 * From what a provider reports ({@link SandboxStatus}) to the Pod status a kubelet would write: phase,
 * conditions, container statuses, IPs, start time and QoS class. Pure functions; the pod controller calls
 * them and patches the result only when a user-visible field changed.
 */
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from '@kubernetes/client-node';
import type { ContainerReport, ContainerState, SandboxStatus } from '../providers/types.ts';

/** Conditions the virtual node owns; others on the Pod (PodScheduled, DisruptionTarget, gates) are kept. */
const ownedConditions = ['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready'];

function toState(state: ContainerState | undefined): V1ContainerState | undefined {
  if (!state) return undefined;
  switch (state.kind) {
    case 'waiting':
      return { waiting: { reason: state.reason, message: state.message } };
    case 'running':
      return { running: { startedAt: state.startedAt } };
    case 'terminated':
      return {
        terminated: {
          exitCode: state.exitCode,
          signal: state.signal,
          reason: state.reason,
          message: state.message,
          startedAt: state.startedAt,
          finishedAt: state.finishedAt,
          containerID: undefined,
        },
      };
  }
}

/**
 * The state of a container that never ran, or is still shown waiting, in a pod that has ended (Failed or
 * Succeeded): terminated, as a kubelet writes it, so that the container states agree with the phase (`kubectl get
 * pods` shows the pod's reason, not ContainerCreating). A pod the node refused (UnsupportedPodSpec,
 * ProviderFailed...) carries that reason with exit code 128, a container runtime's "could not start"; otherwise
 * the kubelet's ContainerStatusUnknown with 137.
 */
export function neverRanState(
  report: Pick<SandboxStatus, 'reason' | 'message'>,
  now: Date,
): V1ContainerState {
  return {
    terminated: report.reason
      ? { exitCode: 128, reason: report.reason, message: report.message, finishedAt: now }
      : {
          exitCode: 137,
          reason: 'ContainerStatusUnknown',
          message: 'The container could not be located when the pod was terminated',
          finishedAt: now,
        },
  };
}

function containerStatuses(
  specs: V1Container[] | undefined,
  reports: ContainerReport[],
  waitingReason: string,
  ended: V1ContainerState | undefined,
  previous: V1ContainerStatus[] | undefined,
): V1ContainerStatus[] {
  // One status per container in the spec, in spec order, even before the provider reports it.
  return (specs ?? []).map((c) => {
    const r = reports.find((x) => x.name === c.name);
    // Once written, a never-ran termination keeps its time: re-deriving it must not patch the pod again.
    const before = previous?.find((x) => x.name === c.name)?.state;
    const over = ended && before?.terminated ? before : ended;
    if (!r) {
      return {
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        ready: false,
        started: false,
        restartCount: 0,
        state: over ?? { waiting: { reason: waitingReason } },
      };
    }
    return {
      name: c.name,
      image: r.image ?? c.image ?? '',
      imageID: r.imageID ?? '',
      containerID: r.containerID,
      ready: r.ready,
      started: r.started,
      restartCount: r.restartCount,
      state: (r.state.kind === 'waiting' ? over : undefined) ?? toState(r.state),
      lastState: toState(r.lastState) ?? {},
    };
  });
}

/** Guaranteed, Burstable or BestEffort, by the rules of the Kubernetes QoS classes. */
export function qosClass(pod: V1Pod): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  const all = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of all) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    if (Object.keys(req).length > 0 || Object.keys(lim).length > 0) any = true;
    for (const r of ['cpu', 'memory']) {
      const limit = lim[r];
      const request = req[r] ?? limit;
      if (limit === undefined || request !== limit) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

function condition(
  type: string,
  ok: boolean,
  previous: V1PodCondition[] | undefined,
  now: Date,
  reason?: string,
): V1PodCondition {
  const status = ok ? 'True' : 'False';
  const prev = previous?.find((c) => c.type === type);
  return {
    type,
    status,
    // lastTransitionTime moves only when the status changes, as users and controllers expect.
    lastTransitionTime: prev?.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : now,
    ...(ok || !reason ? {} : { reason }),
  };
}

/**
 * The Pod status for `pod` given the provider's report. `hostIP` is the virtual node's address.
 * Keeps conditions the node does not own (PodScheduled, DisruptionTarget, readiness gates).
 */
export function podStatusFrom(
  pod: V1Pod,
  report: SandboxStatus,
  hostIP: string,
  now = new Date(),
): V1PodStatus {
  const prev = pod.status?.conditions;
  const terminal = report.phase === 'Succeeded' || report.phase === 'Failed';
  const ended = terminal ? neverRanState(report, now) : undefined;
  const inits = containerStatuses(
    pod.spec?.initContainers,
    report.initContainers,
    'PodInitializing',
    ended,
    pod.status?.initContainerStatuses,
  );
  const mains = containerStatuses(
    pod.spec?.containers,
    report.containers,
    inits.every((s) => s.state?.terminated?.exitCode === 0 || s.started)
      ? 'ContainerCreating'
      : 'PodInitializing',
    ended,
    pod.status?.containerStatuses,
  );
  // Native sidecars (init containers with restartPolicy Always) keep running beside the containers.
  const sidecars = new Set(
    (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always').map((c) => c.name),
  );
  // As the kubelet: a pod once initialized stays so (a main container has run) while a sidecar restarts or after
  // its sidecars were stopped; before that, a sidecar counts once started, a regular init container once done.
  const initialized =
    report.phase === 'Succeeded' ||
    report.containers.some((c) => c.state.kind !== 'waiting' || c.lastState !== undefined) ||
    inits.every((s) => (sidecars.has(s.name) ? s.started === true : s.state?.terminated?.exitCode === 0));
  // A sidecar's readiness counts for the pod's, as a main container's does.
  const containersReady =
    !terminal &&
    mains.length > 0 &&
    mains.every((s) => s.ready) &&
    inits.every((s) => !sidecars.has(s.name) || s.ready);
  const gatesReady = (pod.spec?.readinessGates ?? []).every(
    (g) => prev?.find((c) => c.type === g.conditionType)?.status === 'True',
  );
  const sandboxReady = report.phase === 'Running' || (report.podIP !== undefined && !terminal);
  const derived: V1PodCondition[] = [
    condition('PodReadyToStartContainers', sandboxReady, prev, now),
    condition('Initialized', initialized, prev, now, 'ContainersNotInitialized'),
    condition(
      'ContainersReady',
      containersReady,
      prev,
      now,
      terminal ? 'PodCompleted' : 'ContainersNotReady',
    ),
    condition(
      'Ready',
      containersReady && gatesReady,
      prev,
      now,
      terminal ? 'PodCompleted' : 'ContainersNotReady',
    ),
  ];
  const reported = (report.conditions ?? []).map((c): V1PodCondition => ({
    type: c.type,
    status: c.status,
    reason: c.reason,
    message: c.message,
    lastTransitionTime:
      c.lastTransitionTime ?? condition(c.type, c.status === 'True', prev, now).lastTransitionTime,
  }));
  const byType = new Map<string, V1PodCondition>();
  for (const c of prev ?? []) if (!ownedConditions.includes(c.type)) byType.set(c.type, c);
  for (const c of [...derived, ...reported]) byType.set(c.type, c);
  if (!byType.has('PodScheduled')) byType.set('PodScheduled', condition('PodScheduled', true, prev, now));

  const podIPs = report.podIPs ?? (report.podIP ? [report.podIP] : []);
  return {
    phase: report.phase,
    reason: report.reason,
    message: report.message,
    conditions: [...byType.values()],
    hostIP,
    hostIPs: [{ ip: hostIP }],
    podIP: report.podIP,
    podIPs: podIPs.map((ip) => ({ ip })),
    startTime: report.startTime ?? pod.status?.startTime ?? now,
    initContainerStatuses: inits,
    containerStatuses: mains,
    qosClass: pod.status?.qosClass ?? qosClass(pod),
  };
}

/** The status of a pod the node has accepted but the provider has not reported yet. */
export function pendingStatus(pod: V1Pod, hostIP: string, now = new Date()): V1PodStatus {
  return podStatusFrom(
    pod,
    {
      key: {
        uid: pod.metadata?.uid ?? '',
        namespace: pod.metadata?.namespace ?? '',
        name: pod.metadata?.name ?? '',
      },
      phase: 'Pending',
      initContainers: [],
      containers: [],
    },
    hostIP,
    now,
  );
}

/** A terminal Failed status with `reason` (e.g. UnsupportedPodSpec, ProviderFailed) and a message. */
export function failedStatus(
  pod: V1Pod,
  hostIP: string,
  reason: string,
  message: string,
  now = new Date(),
): V1PodStatus {
  return podStatusFrom(
    pod,
    {
      key: { uid: '', namespace: '', name: '' },
      phase: 'Failed',
      reason,
      message,
      initContainers: [],
      containers: [],
    },
    hostIP,
    now,
  );
}

/**
 * A stable string of the fields a user sees, so that the controller patches only on change and never
 * because of a timestamp it re-derived.
 */
export function statusFingerprint(status: V1PodStatus | undefined): string {
  if (!status) return '';
  const cond = (status.conditions ?? []).map((c) => `${c.type}=${c.status}:${c.reason ?? ''}`).sort();
  const cs = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])].map((s) =>
    JSON.stringify([s.name, s.ready, s.started, s.restartCount, s.state, s.lastState, s.containerID]),
  );
  // The apiserver keeps timestamps to the second: compare them at that precision.
  return JSON.stringify([status.phase, status.reason, status.message, status.podIP, cond, cs]).replace(
    /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z/g,
    '$1Z',
  );
}
