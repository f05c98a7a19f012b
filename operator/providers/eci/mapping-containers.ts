/**
 * Pod containers → ECI `Container`/`InitContainer` parameters: command, args, resolved env, ports, workingDir,
 * resources, volume mounts, securityContext, probes and lifecycle hooks. Pure: what cannot be expressed is
 * pushed to `causes` (the pod is rejected) or `warnings` (it runs, with the difference named).
 */
import type {
  V1Container,
  V1ContainerPort,
  V1LifecycleHandler,
  V1Pod,
  V1Probe,
} from '@kubernetes/client-node';
import type { PodSpecCause, ResolvedEnvVar } from '../types.ts';
import { containerNeeds } from './specs.ts';

/** An ECI probe (liveness/readiness). */
export interface EciProbe {
  exec?: { command: string[] };
  httpGet?: { path?: string; port: number; scheme?: string };
  tcpSocket?: { port: number };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

/** An ECI environment variable: a value, or a field reference ECI resolves itself (`status.podIP`). */
export interface EciEnvVar {
  key: string;
  value?: string;
  fieldRef?: { fieldPath: string };
}

/** An ECI container, with the SDK's camelCase field names. */
export interface EciContainer {
  name: string;
  image: string;
  command?: string[];
  arg?: string[];
  workingDir?: string;
  environmentVar?: EciEnvVar[];
  port?: { port: number; protocol: string }[];
  cpu?: number;
  memory?: number;
  gpu?: number;
  imagePullPolicy?: string;
  volumeMount?: {
    name: string;
    mountPath: string;
    readOnly?: boolean;
    subPath?: string;
    mountPropagation?: string;
  }[];
  securityContext?: { capability?: { add: string[] }; runAsUser?: number; readOnlyRootFilesystem?: boolean };
  securityContextRunAsGroup?: number;
  securityContextRunAsNonRoot?: boolean;
  livenessProbe?: EciProbe;
  readinessProbe?: EciProbe;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  terminationMessagePath?: string;
  terminationMessagePolicy?: string;
  [lifecycleField: `lifecycle${string}`]: unknown;
}

/** Where problems go while mapping. */
export interface MappingSink {
  causes: PodSpecCause[];
  warnings: string[];
}

/** Env vars ECI fills in itself, so that their value is the instance's, not a guess made before it existed. */
const ECI_FIELD_REFS = new Set(['status.podIP']);

function env(
  c: V1Container,
  resolved: ResolvedEnvVar[] | undefined,
  path: string,
  sink: MappingSink,
): EciEnvVar[] {
  const fieldRefs = new Map<string, string>();
  for (const e of c.env ?? []) {
    const fp = e.valueFrom?.fieldRef?.fieldPath;
    if (fp && ECI_FIELD_REFS.has(fp)) fieldRefs.set(e.name, fp);
  }
  const fromRef = (key: string): EciEnvVar | undefined => {
    const fp = fieldRefs.get(key);
    return fp ? { key, fieldRef: { fieldPath: fp } } : undefined;
  };
  if (resolved) return resolved.map((e) => fromRef(e.name) ?? { key: e.name, value: e.value });
  // Without resolved inputs only literal values and ECI's own field references can be passed on.
  return (c.env ?? []).flatMap((e, i): EciEnvVar[] => {
    const ref = fromRef(e.name);
    if (ref) return [ref];
    if (e.valueFrom) {
      sink.causes.push({
        path: `${path}.env[${i}].valueFrom`,
        message: `env ${e.name} was not resolved before create`,
      });
      return [];
    }
    return [{ key: e.name, value: e.value ?? '' }];
  });
}

function ports(ports: V1ContainerPort[] | undefined, path: string, sink: MappingSink): EciContainer['port'] {
  if (!ports?.length) return undefined;
  return ports.flatMap((p, i) => {
    if (p.hostPort)
      sink.causes.push({
        path: `${path}.ports[${i}].hostPort`,
        message: 'hostPort cannot be used in a sandbox; remove it',
      });
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP') {
      sink.causes.push({
        path: `${path}.ports[${i}].protocol`,
        message: `ECI supports TCP and UDP ports, not ${protocol}`,
      });
      return [];
    }
    return [{ port: p.containerPort, protocol }];
  });
}

/** A probe/handler port: a number, or the name of one of the container's ports. */
function portOf(c: V1Container, port: number | string | undefined, path: string, sink: MappingSink): number {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  const named = c.ports?.find((p) => p.name === port);
  if (!named)
    sink.causes.push({ path, message: `port "${String(port)}" is not a named port of container ${c.name}` });
  return named?.containerPort ?? 0;
}

function probe(
  c: V1Container,
  p: V1Probe | undefined,
  path: string,
  sink: MappingSink,
): EciProbe | undefined {
  if (!p) return undefined;
  const timing = {
    initialDelaySeconds: p.initialDelaySeconds,
    periodSeconds: p.periodSeconds,
    timeoutSeconds: p.timeoutSeconds,
    successThreshold: p.successThreshold,
    failureThreshold: p.failureThreshold,
  };
  if (p.exec) return { exec: { command: p.exec.command ?? [] }, ...timing };
  if (p.httpGet) {
    if (p.httpGet.host)
      sink.warnings.push(`${path}.httpGet.host is ignored: ECI probes the instance's own address`);
    if (p.httpGet.httpHeaders?.length)
      sink.warnings.push(`${path}.httpGet.httpHeaders are ignored: ECI probes send no custom headers`);
    const port = portOf(c, p.httpGet.port, `${path}.httpGet.port`, sink);
    return { httpGet: { path: p.httpGet.path, port, scheme: p.httpGet.scheme }, ...timing };
  }
  if (p.tcpSocket)
    return { tcpSocket: { port: portOf(c, p.tcpSocket.port, `${path}.tcpSocket.port`, sink) }, ...timing };
  sink.causes.push({
    path,
    message: 'ECI probes support exec, httpGet and tcpSocket only (not grpc); use one of those',
  });
  return undefined;
}

function lifecycle(c: V1Container, path: string, sink: MappingSink): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const hooks: [string, V1LifecycleHandler | undefined][] = [
    ['PostStart', c.lifecycle?.postStart],
    ['PreStop', c.lifecycle?.preStop],
  ];
  for (const [hook, h] of hooks) {
    if (!h) continue;
    const at = `${path}.lifecycle.${hook === 'PostStart' ? 'postStart' : 'preStop'}`;
    const prefix = `lifecycle${hook}Handler`;
    if (h.exec) out[`${prefix}Exec`] = h.exec.command ?? [];
    else if (h.httpGet) {
      out[`${prefix}HttpGetHost`] = h.httpGet.host;
      out[`${prefix}HttpGetPath`] = h.httpGet.path;
      out[`${prefix}HttpGetPort`] = portOf(c, h.httpGet.port, `${at}.httpGet.port`, sink);
      out[`${prefix}HttpGetScheme`] = h.httpGet.scheme;
      if (h.httpGet.httpHeaders?.length) out[`${prefix}HttpGetHttpHeader`] = h.httpGet.httpHeaders;
    } else if (h.tcpSocket) {
      out[`${prefix}TcpSocketHost`] = h.tcpSocket.host;
      out[`${prefix}TcpSocketPort`] = portOf(c, h.tcpSocket.port, `${at}.tcpSocket.port`, sink);
    } else
      sink.causes.push({
        path: at,
        message:
          'ECI lifecycle hooks support exec, httpGet and tcpSocket only; use exec: [sleep, N] instead of sleep',
      });
  }
  return out;
}

function security(pod: V1Pod, c: V1Container, path: string, sink: MappingSink): Partial<EciContainer> {
  const sc = c.securityContext;
  const psc = pod.spec?.securityContext;
  if (sc?.privileged)
    sink.causes.push({
      path: `${path}.securityContext.privileged`,
      message: 'privileged containers cannot run in a sandbox',
    });
  if (sc?.capabilities?.drop?.length) {
    sink.warnings.push(`${path}.securityContext.capabilities.drop is ignored: ECI cannot drop capabilities`);
  }
  const runAsUser = sc?.runAsUser ?? psc?.runAsUser;
  const add = sc?.capabilities?.add ?? [];
  const ctx = {
    ...(add.length > 0 && { capability: { add } }),
    ...(runAsUser !== undefined && { runAsUser }),
    ...(sc?.readOnlyRootFilesystem !== undefined && { readOnlyRootFilesystem: sc.readOnlyRootFilesystem }),
  };
  const group = sc?.runAsGroup ?? psc?.runAsGroup;
  const nonRoot = sc?.runAsNonRoot ?? psc?.runAsNonRoot;
  return {
    ...(Object.keys(ctx).length > 0 && { securityContext: ctx }),
    ...(group !== undefined && { securityContextRunAsGroup: group }),
    ...(nonRoot !== undefined && { securityContextRunAsNonRoot: nonRoot }),
  };
}

/**
 * Maps one container. `init` drops what ECI's InitContainer lacks (probes, lifecycle, stdin/tty): Kubernetes
 * forbids probes on ordinary init containers anyway, and native sidecars are rejected by the caller.
 */
export function mapContainer(
  pod: V1Pod,
  c: V1Container,
  resolved: ResolvedEnvVar[] | undefined,
  path: string,
  init: boolean,
  sink: MappingSink,
): EciContainer {
  if (!c.image) sink.causes.push({ path: `${path}.image`, message: 'an image is required' });
  const needs = containerNeeds(c);
  const mounts = (c.volumeMounts ?? []).map((m, i) => {
    if (m.subPathExpr)
      sink.causes.push({
        path: `${path}.volumeMounts[${i}].subPathExpr`,
        message: 'subPathExpr is not supported on ECI; use subPath',
      });
    return {
      name: m.name,
      mountPath: m.mountPath,
      readOnly: m.readOnly,
      subPath: m.subPath,
      mountPropagation: m.mountPropagation,
    };
  });
  const base: EciContainer = {
    name: c.name,
    image: c.image ?? '',
    ...(c.command?.length && { command: c.command }),
    ...(c.args?.length && { arg: c.args }),
    ...(c.workingDir && { workingDir: c.workingDir }),
    environmentVar: env(c, resolved, path, sink),
    port: ports(c.ports, path, sink),
    ...(needs.cpu > 0 && { cpu: needs.cpu }),
    ...(needs.memory > 0 && { memory: needs.memory }),
    ...(needs.gpu > 0 && { gpu: needs.gpu }),
    imagePullPolicy: c.imagePullPolicy,
    ...(mounts.length > 0 && { volumeMount: mounts }),
    ...security(pod, c, path, sink),
    terminationMessagePath: c.terminationMessagePath,
    terminationMessagePolicy: c.terminationMessagePolicy,
  };
  if (c.volumeDevices?.length)
    sink.causes.push({
      path: `${path}.volumeDevices`,
      message: 'raw block devices are not supported on ECI',
    });
  if (init) {
    delete base.securityContextRunAsGroup;
    delete base.securityContextRunAsNonRoot;
    return base;
  }
  if (c.startupProbe)
    sink.warnings.push(
      `${path}.startupProbe is ignored: ECI has no startup probes (raise the liveness probe's initialDelaySeconds)`,
    );
  return {
    ...base,
    livenessProbe: probe(c, c.livenessProbe, `${path}.livenessProbe`, sink),
    readinessProbe: probe(c, c.readinessProbe, `${path}.readinessProbe`, sink),
    ...lifecycle(c, path, sink),
    ...(c.stdin && { stdin: true }),
    ...(c.stdinOnce && { stdinOnce: true }),
    ...(c.tty && { tty: true }),
  };
}
