/**
 * From a pod and its resolved inputs to what a local sandbox runs: pure functions, no I/O. The argv, the
 * environment and the mounts of each container; `/etc/resolv.conf` per dnsPolicy and `/etc/hosts`, as a
 * kubelet writes them. The runtime turns a {@link SandboxPlan} into processes and mounts.
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { InvalidPodSpecError, type ResolvedPodInputs, type SandboxKey } from '../types.ts';
import { localUnsupported } from './rules.ts';
import { parseQuantity } from '../../../api/quantity.ts';

/** The cluster facts a sandbox's DNS files need. */
export interface ClusterDNS {
  /** The cluster DNS Service's ClusterIP (kube-dns), e.g. `10.96.0.10`. */
  nameserver: string;
  /** The cluster domain, e.g. `cluster.local`. */
  domain: string;
  /** The host's resolv.conf, for dnsPolicy Default. */
  hostResolvConf: string;
}

/** One bind mount of a volume (or a file of it) into a container's view of the sandbox. */
export interface PlannedMount {
  volume: string;
  /** Path inside the volume (`subPath`), empty for the whole volume. */
  subPath: string;
  mountPath: string;
  readOnly: boolean;
}

/** How one container runs. */
export interface PlannedContainer {
  name: string;
  image: string;
  argv: string[];
  workingDir: string;
  env: { name: string; value: string }[];
  mounts: PlannedMount[];
  startupProbe?: V1Probe;
  livenessProbe?: V1Probe;
  readinessProbe?: V1Probe;
  /** CPU limit in millicores and memory limit in bytes, when set. */
  limits: { milliCPU?: number; memoryBytes?: number };
}

/** Everything the runtime needs to build one sandbox. */
export interface SandboxPlan {
  hostname: string;
  initContainers: PlannedContainer[];
  containers: PlannedContainer[];
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  terminationGracePeriodSeconds: number;
  /** Volume names in the pod; the ones without materialised files (emptyDir) start empty. */
  volumes: string[];
}

/** The environment a container runtime adds when the image would have (there is no image here). */
const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A CPU quantity (`500m`, `2`, `0.5`, `1e3`) in millicores. */
export function milliCPU(q: string): number {
  return Math.round(parseQuantity(q) * 1000);
}

/** A memory quantity (`64Mi`, `1G`, `1e9`, `128974848`) in bytes. */
export function bytes(q: string): number {
  return Math.round(parseQuantity(q));
}

function planContainer(c: V1Container, inputs: ResolvedPodInputs, hostname: string): PlannedContainer {
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  const env = [
    { name: 'PATH', value: defaultPath },
    { name: 'HOSTNAME', value: hostname },
    { name: 'HOME', value: '/root' },
  ];
  for (const e of inputs.env?.[c.name] ??
    (c.env ?? []).map((v) => ({ name: v.name, value: v.value ?? '' }))) {
    const at = env.findIndex((x) => x.name === e.name);
    if (at >= 0) env.splice(at, 1);
    env.push(e);
  }
  const mounts = (c.volumeMounts ?? []).map((m) => ({
    volume: m.name,
    subPath: m.subPath ?? '',
    mountPath: m.mountPath,
    readOnly: m.readOnly ?? false,
  }));
  const limits: PlannedContainer['limits'] = {};
  const cpu = c.resources?.limits?.cpu;
  const memory = c.resources?.limits?.memory;
  if (cpu !== undefined) limits.milliCPU = milliCPU(String(cpu));
  if (memory !== undefined) limits.memoryBytes = bytes(String(memory));
  return {
    name: c.name,
    image: c.image ?? '',
    argv,
    workingDir: c.workingDir ?? '/',
    env,
    mounts,
    ...(c.startupProbe ? { startupProbe: c.startupProbe } : {}),
    ...(c.livenessProbe ? { livenessProbe: c.livenessProbe } : {}),
    ...(c.readinessProbe ? { readinessProbe: c.readinessProbe } : {}),
    limits,
  };
}

/**
 * Plans the sandbox of `pod`.
 * @throws InvalidPodSpecError listing every field the local provider cannot run (no command, bad mounts)
 */
export function planSandbox(key: SandboxKey, pod: V1Pod, inputs: ResolvedPodInputs = {}): SandboxPlan {
  const spec = pod.spec ?? { containers: [] };
  // The same rules the admission webhook and the ElasticWorkload controller read (rules.ts): they never disagree.
  const causes = localUnsupported(spec, 'spec');
  if (causes.length > 0) {
    throw new InvalidPodSpecError(causes.map((c) => `${c.path}: ${c.message}`).join('; '), { key, causes });
  }
  const hostname = podHostname(pod);
  const initContainers = (spec.initContainers ?? []).map((c) => planContainer(c, inputs, hostname));
  const containers = spec.containers.map((c) => planContainer(c, inputs, hostname));
  const policy = spec.restartPolicy;
  return {
    hostname,
    initContainers,
    containers,
    restartPolicy: policy === 'Never' || policy === 'OnFailure' ? policy : 'Always',
    terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds ?? 30,
    volumes: (spec.volumes ?? []).map((v) => v.name),
  };
}

/** The pod's hostname: `spec.hostname`, else its name cut to 63 characters (as the kubelet does). */
export function podHostname(pod: V1Pod): string {
  const name = pod.spec?.hostname ?? pod.metadata?.name ?? 'pod';
  return name.slice(0, 63).replace(/[-.]+$/, '');
}

/** `/etc/resolv.conf` of a sandbox for the pod's dnsPolicy and dnsConfig, as the kubelet writes it. */
export function resolvConf(pod: V1Pod, dns: ClusterDNS): string {
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  const ns = pod.metadata?.namespace ?? 'default';
  let nameservers: string[] = [];
  let searches: string[] = [];
  let options: string[] = [];
  if (policy === 'ClusterFirst' || policy === 'ClusterFirstWithHostNet') {
    nameservers = [dns.nameserver];
    searches = [`${ns}.svc.${dns.domain}`, `svc.${dns.domain}`, dns.domain];
    options = ['ndots:5'];
  } else if (policy === 'Default') {
    for (const line of dns.hostResolvConf.split('\n')) {
      const [word, ...rest] = line.trim().split(/\s+/);
      if (word === 'nameserver' && rest[0]) nameservers.push(rest[0]);
      else if (word === 'search' || word === 'domain') searches = rest;
      else if (word === 'options') options.push(...rest);
    }
  }
  const config = pod.spec?.dnsConfig;
  // dnsConfig adds to what the policy gave (None: it is all there is); an option set twice takes the last value.
  nameservers = [...new Set([...nameservers, ...(config?.nameservers ?? [])])].slice(0, 3);
  searches = [...new Set([...searches, ...(config?.searches ?? [])])].slice(0, 32);
  const byName = new Map<string, string>();
  for (const o of options) byName.set(o.split(':')[0]!, o);
  for (const o of config?.options ?? []) {
    if (o.name) byName.set(o.name, o.value === undefined ? o.name : `${o.name}:${o.value}`);
  }
  const lines = [...nameservers.map((n) => `nameserver ${n}`)];
  if (searches.length > 0) lines.push(`search ${searches.join(' ')}`);
  if (byName.size > 0) lines.push(`options ${[...byName.values()].join(' ')}`);
  return lines.join('\n') + '\n';
}

/** `/etc/hosts` of a sandbox: loopback, the pod's own name(s) on its IP, then hostAliases. */
export function hostsFile(pod: V1Pod, podIP: string | undefined, domain: string): string {
  const lines = [
    '# Kubernetes-managed hosts file (spillway local sandbox).',
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
