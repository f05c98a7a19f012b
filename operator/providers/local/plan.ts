/**
 * From a pod and its resolved inputs to the CRI requests that run it, as a kubelet's kuberuntime builds them:
 * pure functions, no I/O. The sandbox config (metadata, labels, hostname, DNS per dnsPolicy, port mappings, the
 * pod's security context), each container's config (command/args over the image's Entrypoint/Cmd, env,
 * workingDir, mounts, securityContext, resources as cgroup limits) and the pod's `/etc/hosts`.
 */
import type { V1Container, V1Pod, V1PodSecurityContext, V1SeccompProfile } from '@kubernetes/client-node';
import { InvalidPodSpecError, type ResolvedPodInputs, type SandboxKey } from '../types.ts';
import { localUnsupported } from './rules.ts';
import { parseQuantity } from '../../../api/quantity.ts';
import type {
  ContainerConfig,
  LinuxContainerResources,
  Mount,
  PodSandboxConfig,
  PortMapping,
  SecurityProfile,
} from './cri/types.ts';

/** The label every sandbox and container of a local node carries: how `list()` finds this node's pods. */
export const NODE_LABEL = 'spillway.dev/node';
/** The kubelet's labels, which crictl and tools read. */
export const POD_UID_LABEL = 'io.kubernetes.pod.uid';
export const POD_NAME_LABEL = 'io.kubernetes.pod.name';
export const POD_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const CONTAINER_NAME_LABEL = 'io.kubernetes.container.name';

/** The cluster facts a sandbox's DNS needs. */
export interface ClusterDNS {
  /** The cluster DNS Service's ClusterIP (kube-dns), e.g. `10.96.0.10`. */
  nameserver: string;
  /** The cluster domain, e.g. `cluster.local`. */
  domain: string;
  /** The host's resolv.conf, for dnsPolicy Default. */
  hostResolvConf: string;
}

/** Where a pod's files are on the host, for its mounts. */
export interface PodPaths {
  /** `<podDir>/volumes/<name>`: a volume's directory. */
  volume: (name: string) => string;
  /** `<podDir>/etc/hosts`. */
  hosts: string;
  /** The file a container attempt's termination message goes to. */
  terminationMessage: (container: string, attempt: number) => string;
  /** The sandbox's log directory (`<container>/<attempt>.log` below it). */
  logDirectory: string;
}

/** A CPU quantity (`500m`, `2`, `0.5`, `1e3`) in millicores. */
export function milliCPU(q: string): number {
  return Math.round(parseQuantity(q) * 1000);
}

/** A memory quantity (`64Mi`, `1G`, `1e9`, `128974848`) in bytes. */
export function bytes(q: string): number {
  return Math.round(parseQuantity(q));
}

/** The kubelet's CPU period (100 ms) and the smallest shares and quota it sets. */
const CPU_PERIOD = 100_000;
const MIN_SHARES = 2;
const MIN_QUOTA = 1000;

/**
 * Linux resources of a container as the kubelet computes them (`pkg/kubelet/kuberuntime`): shares from the CPU
 * request (or the limit when only that is set; the minimum 2 otherwise), CFS quota over a 100 ms period from
 * the CPU limit, and the memory limit in bytes.
 */
export function linuxResources(c: Pick<V1Container, 'resources'>): LinuxContainerResources {
  const requests = c.resources?.requests ?? {};
  const limits = c.resources?.limits ?? {};
  const cpuRequest = requests['cpu'] ?? limits['cpu'];
  const out: LinuxContainerResources = {
    cpu_shares: cpuRequest
      ? Math.max(MIN_SHARES, Math.floor((milliCPU(String(cpuRequest)) * 1024) / 1000))
      : MIN_SHARES,
  };
  if (limits['cpu'] !== undefined) {
    out.cpu_period = CPU_PERIOD;
    out.cpu_quota = Math.max(MIN_QUOTA, Math.floor((milliCPU(String(limits['cpu'])) * CPU_PERIOD) / 1000));
  }
  if (limits['memory'] !== undefined) out.memory_limit_in_bytes = bytes(String(limits['memory']));
  return out;
}

/** A seccomp profile in CRI terms; RuntimeDefault when the pod names none (the default of this provider). */
function seccomp(profile: V1SeccompProfile | undefined): SecurityProfile {
  if (profile?.type === 'Unconfined') return { profile_type: 'Unconfined' };
  if (profile?.type === 'Localhost')
    return { profile_type: 'Localhost', localhost_ref: profile.localhostProfile ?? '' };
  return { profile_type: 'RuntimeDefault' };
}

const supplementalGroups = (sc: V1PodSecurityContext | undefined): number[] => [
  ...(sc?.fsGroup !== undefined ? [sc.fsGroup] : []),
  ...(sc?.supplementalGroups ?? []),
];

/** The pod's hostname: `spec.hostname`, else its name cut to 63 characters (as the kubelet does). */
export function podHostname(pod: V1Pod): string {
  const name = pod.spec?.hostname ?? pod.metadata?.name ?? 'pod';
  return name.slice(0, 63).replace(/[-.]+$/, '');
}

/** The sandbox's DNS for the pod's dnsPolicy and dnsConfig, as the kubelet computes it (containerd writes resolv.conf). */
export function dnsConfig(
  pod: V1Pod,
  dns: ClusterDNS,
): { servers: string[]; searches: string[]; options: string[] } {
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  const ns = pod.metadata?.namespace ?? 'default';
  let servers: string[] = [];
  let searches: string[] = [];
  let options: string[] = [];
  if (policy === 'ClusterFirst' || policy === 'ClusterFirstWithHostNet') {
    servers = [dns.nameserver];
    searches = [`${ns}.svc.${dns.domain}`, `svc.${dns.domain}`, dns.domain];
    options = ['ndots:5'];
  } else if (policy === 'Default') {
    for (const line of dns.hostResolvConf.split('\n')) {
      const [word, ...rest] = line.trim().split(/\s+/);
      if (word === 'nameserver' && rest[0]) servers.push(rest[0]);
      else if (word === 'search' || word === 'domain') searches = rest;
      else if (word === 'options') options.push(...rest);
    }
  }
  const config = pod.spec?.dnsConfig;
  // dnsConfig adds to what the policy gave (None: it is all there is); an option set twice takes the last value.
  servers = [...new Set([...servers, ...(config?.nameservers ?? [])])].slice(0, 3);
  searches = [...new Set([...searches, ...(config?.searches ?? [])])].slice(0, 32);
  const byName = new Map<string, string>();
  for (const o of options) byName.set(o.split(':')[0]!, o);
  for (const o of config?.options ?? []) {
    if (o.name) byName.set(o.name, o.value === undefined ? o.name : `${o.name}:${o.value}`);
  }
  return { servers, searches, options: [...byName.values()] };
}

/** `/etc/hosts` of a pod: loopback, the pod's own name(s) on its IP, then hostAliases. */
export function hostsFile(pod: V1Pod, podIP: string | undefined, domain: string): string {
  const lines = [
    '# Kubernetes-managed hosts file (spillway local provider).',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  const hostname = podHostname(pod);
  if (podIP) {
    const sub = pod.spec?.subdomain;
    const ns = pod.metadata?.namespace ?? 'default';
    lines.push(
      sub ? `${podIP}\t${hostname}.${sub}.${ns}.svc.${domain}\t${hostname}` : `${podIP}\t${hostname}`,
    );
  }
  const aliases = pod.spec?.hostAliases ?? [];
  if (aliases.length > 0) {
    lines.push('', '# Entries added by HostAliases.');
    for (const a of aliases) if (a.ip) lines.push(`${a.ip}\t${(a.hostnames ?? []).join('\t')}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Refuses what the local provider cannot run (./rules.ts, the same rules admission reads).
 * @throws InvalidPodSpecError listing every such field
 */
export function checkRunnable(key: SandboxKey, pod: V1Pod): void {
  const causes = localUnsupported(pod.spec ?? { containers: [] }, 'spec');
  if (causes.length > 0) {
    throw new InvalidPodSpecError(causes.map((c) => `${c.path}: ${c.message}`).join('; '), { key, causes });
  }
}

/**
 * The pod's cgroup, under which the runtime puts the sandbox's and each container's (cgroupfs driver): what the
 * kubelet's pod cgroup is, and what the runtime's sandbox stats read. Removed with the pod (its directories stay
 * otherwise: the runtime removes only its containers' own).
 */
export function podCgroupParent(nodeName: string, uid: string): string {
  return `/spillway/${nodeName}/pod${uid}`;
}

/** The RunPodSandbox config of a pod. */
export function sandboxConfig(
  key: SandboxKey,
  pod: V1Pod,
  nodeName: string,
  dns: ClusterDNS,
  logDirectory: string,
): PodSandboxConfig {
  const spec = pod.spec ?? { containers: [] };
  const sc = spec.securityContext;
  const ports: PortMapping[] = [];
  for (const c of spec.containers) {
    for (const p of c.ports ?? []) {
      // Only host ports need the runtime (CNI portmap); a container port is reachable on the pod IP anyway.
      if (!p.hostPort) continue;
      ports.push({
        protocol: (p.protocol ?? 'TCP') as PortMapping['protocol'],
        container_port: p.containerPort,
        host_port: p.hostPort,
        host_ip: p.hostIP ?? '',
      });
    }
  }
  return {
    metadata: { name: key.name, uid: key.uid, namespace: key.namespace, attempt: 0 },
    hostname: podHostname(pod),
    log_directory: logDirectory,
    dns_config: dnsConfig(pod, dns),
    port_mappings: ports,
    labels: {
      ...(pod.metadata?.labels ?? {}),
      [NODE_LABEL]: nodeName,
      [POD_UID_LABEL]: key.uid,
      [POD_NAME_LABEL]: key.name,
      [POD_NAMESPACE_LABEL]: key.namespace,
    },
    annotations: {},
    linux: {
      cgroup_parent: podCgroupParent(nodeName, key.uid),
      sysctls: Object.fromEntries((sc?.sysctls ?? []).map((s) => [s.name, s.value])),
      security_context: {
        namespace_options: {
          network: 'POD',
          pid: spec.shareProcessNamespace ? 'POD' : 'CONTAINER',
          ipc: 'POD',
        },
        ...(sc?.runAsUser !== undefined ? { run_as_user: { value: sc.runAsUser } } : {}),
        ...(sc?.runAsGroup !== undefined ? { run_as_group: { value: sc.runAsGroup } } : {}),
        supplemental_groups: supplementalGroups(sc),
        seccomp: seccomp(sc?.seccompProfile),
      },
    },
  };
}

/**
 * `env` with the variables of `c` that the downward API sets from `status.podIP(s)` given the sandbox's addresses:
 * they were resolved before the sandbox had one (the kubelet, too, sets them once the sandbox is up).
 */
export function withPodIPs(
  c: V1Container,
  env: { name: string; value: string }[],
  podIPs: readonly string[],
): { name: string; value: string }[] {
  if (podIPs.length === 0) return env;
  const fields = new Map(
    (c.env ?? []).flatMap((v) => {
      const path = v.valueFrom?.fieldRef?.fieldPath;
      return path === 'status.podIP' || path === 'status.podIPs' ? [[v.name, path] as const] : [];
    }),
  );
  if (fields.size === 0) return env;
  return env.map((e) => {
    const path = fields.get(e.name);
    if (!path) return e;
    return { name: e.name, value: path === 'status.podIP' ? podIPs[0]! : podIPs.join(',') };
  });
}

/** Why a container's config cannot be built (the kubelet's CreateContainerConfigError). */
export class ContainerConfigError extends Error {}

/**
 * The CreateContainer config of one attempt of container `c`.
 * @throws ContainerConfigError the kubelet would refuse it too (runAsNonRoot with runAsUser 0)
 */
export function containerConfig(
  key: SandboxKey,
  pod: V1Pod,
  c: V1Container,
  attempt: number,
  inputs: ResolvedPodInputs,
  nodeName: string,
  paths: PodPaths,
  podIPs: readonly string[] = [],
): ContainerConfig {
  const podSC = pod.spec?.securityContext;
  const sc = c.securityContext;
  const runAsUser = sc?.runAsUser ?? podSC?.runAsUser;
  const runAsGroup = sc?.runAsGroup ?? podSC?.runAsGroup;
  if ((sc?.runAsNonRoot ?? podSC?.runAsNonRoot) && runAsUser === 0) {
    throw new ContainerConfigError(
      `container's runAsUser breaks non-root policy (pod: "${key.name}_${key.namespace}(${key.uid})", container: ${c.name})`,
    );
  }
  const env = withPodIPs(
    c,
    inputs.env?.[c.name] ?? (c.env ?? []).map((v) => ({ name: v.name, value: v.value ?? '' })),
    podIPs,
  );
  const materialised = new Set(
    (pod.spec?.volumes ?? [])
      .filter((v) => v.configMap || v.secret || v.downwardAPI || v.projected)
      .map((v) => v.name),
  );
  const mounts: Mount[] = (c.volumeMounts ?? []).map((m) => ({
    container_path: m.mountPath,
    host_path: m.subPath ? `${paths.volume(m.name)}/${m.subPath}` : paths.volume(m.name),
    // The kubelet mounts configMap, secret, downwardAPI and projected volumes read-only whatever the mount says.
    readonly: Boolean(m.readOnly) || materialised.has(m.name),
  }));
  if (!mounts.some((m) => m.container_path === '/etc/hosts')) {
    mounts.push({ container_path: '/etc/hosts', host_path: paths.hosts, readonly: false });
  }
  const messagePath = c.terminationMessagePath ?? '/dev/termination-log';
  if (!mounts.some((m) => m.container_path === messagePath)) {
    mounts.push({
      container_path: messagePath,
      host_path: paths.terminationMessage(c.name, attempt),
      readonly: false,
    });
  }
  return {
    metadata: { name: c.name, attempt },
    image: { image: c.image ?? '', user_specified_image: c.image ?? '' },
    ...(c.command ? { command: c.command } : {}),
    ...(c.args ? { args: c.args } : {}),
    working_dir: c.workingDir ?? '',
    envs: env.map((e) => ({ key: e.name, value: e.value })),
    mounts,
    labels: {
      [NODE_LABEL]: nodeName,
      [POD_UID_LABEL]: key.uid,
      [POD_NAME_LABEL]: key.name,
      [POD_NAMESPACE_LABEL]: key.namespace,
      [CONTAINER_NAME_LABEL]: c.name,
    },
    annotations: {},
    log_path: `${c.name}/${attempt}.log`,
    stdin: c.stdin ?? false,
    stdin_once: c.stdinOnce ?? false,
    tty: c.tty ?? false,
    linux: {
      resources: linuxResources(c),
      security_context: {
        capabilities: {
          add_capabilities: sc?.capabilities?.add ?? [],
          drop_capabilities: sc?.capabilities?.drop ?? [],
        },
        privileged: false,
        namespace_options: {
          network: 'POD',
          pid: pod.spec?.shareProcessNamespace ? 'POD' : 'CONTAINER',
          ipc: 'POD',
        },
        ...(runAsUser !== undefined ? { run_as_user: { value: runAsUser } } : {}),
        ...(runAsGroup !== undefined ? { run_as_group: { value: runAsGroup } } : {}),
        readonly_rootfs: sc?.readOnlyRootFilesystem ?? false,
        supplemental_groups: supplementalGroups(podSC),
        no_new_privs: sc?.allowPrivilegeEscalation === false,
        seccomp: seccomp(sc?.seccompProfile ?? podSC?.seccompProfile),
      },
    },
  };
}
