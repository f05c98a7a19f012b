/**
 * Pod → CreateContainerGroup: the pure decision of what ECI instance runs a pod (docs/eci.md has the table).
 * It takes the pod, what the pod controller resolved, and the provider configuration, and returns the request
 * (SDK field names), the warnings to surface as Events, and the capacity class; or throws InvalidPodSpecError
 * listing every field that cannot run, with what to change.
 */
import { createHash } from 'node:crypto';
import type { V1Pod, V1PodDNSConfig } from '@kubernetes/client-node';
import { CAPACITY_LABEL } from '../../../api/labels.ts';
import { stringify } from 'yaml';
import {
  describeKey,
  InvalidPodSpecError,
  sandboxKey,
  type MaterialisedVolume,
  type ResolvedPodInputs,
  type SidecarCredentials,
} from '../types.ts';
import type { EciConfig } from './config.ts';
import { mapContainer, type EciContainer, type MappingSink } from './mapping-containers.ts';
import { configFileVolume, mapVolumes, type EciVolume } from './mapping-volumes.ts';
import { chooseSpec } from './specs.ts';

/** Tags spillway puts on every instance; `list()` and the orphan collector find instances by them. */
export const TAGS = {
  cluster: 'spillway.dev/cluster',
  node: 'spillway.dev/node',
  namespace: 'spillway.dev/namespace',
  pod: 'spillway.dev/pod',
  uid: 'spillway.dev/uid',
} as const;

/** The name of the kube-proxy sidecar container (hidden from the pod's status). */
export const KUBE_PROXY_CONTAINER = 'spillway-kube-proxy';
/** Pod annotation `"false"`: no kube-proxy sidecar for this pod (it needs no ClusterIPs). */
export const KUBE_PROXY_ANNOTATION = 'spillway.dev/kube-proxy';

const ACK = 'k8s.aliyun.com/';

/** The `k8s.aliyun.com/eci-*` annotations honoured (ACK's names and meanings). */
export const HONOURED_ANNOTATIONS = [
  'eci-use-specs',
  'eci-spot-strategy',
  'eci-spot-price-limit',
  'eci-spot-duration',
  'eci-vswitch',
  'eci-schedule-strategy',
  'eci-security-group',
  'eci-resource-group-id',
  'eci-ram-role-name',
  'eci-image-cache',
  'eci-image-snapshot-id',
  'eci-extra-ephemeral-storage',
  'eci-with-eip',
  'eci-eip-instanceid',
  'eci-ntp-server',
  'eci-core-pattern',
].map((a) => ACK + a);

/** What the pod controller resolved, plus the image pull secrets' `.dockerconfigjson` contents by Secret name. */
export interface EciPodInputs extends ResolvedPodInputs {
  imagePullSecrets?: Record<string, Buffer>;
  /** The kube-proxy sidecar's files when its identity is a minted ServiceAccount token (provider-supplied). */
  kubeProxyFiles?: MaterialisedVolume['files'];
}

/** The CreateContainerGroup request (without RegionId), with the SDK's camelCase field names. */
export interface ContainerGroupSpec {
  containerGroupName: string;
  clientToken: string;
  securityGroupId: string;
  vSwitchId: string;
  scheduleStrategy?: string;
  resourceGroupId?: string;
  restartPolicy: string;
  cpu?: number;
  memory?: number;
  instanceType?: string;
  container: EciContainer[];
  initContainer?: EciContainer[];
  volume?: EciVolume[];
  dnsConfig?: { nameServer?: string[]; search?: string[]; option?: { name: string; value?: string }[] };
  hostAliase?: { ip: string; hostname: string[] }[];
  hostName?: string;
  imageRegistryCredential?: { server: string; userName: string; password: string }[];
  spotStrategy?: string;
  spotPriceLimit?: number;
  spotDuration?: number;
  tag: { key: string; value: string }[];
  terminationGracePeriodSeconds?: number;
  activeDeadlineSeconds?: number;
  shareProcessNamespace?: boolean;
  securityContext?: { sysctl: { name: string; value: string }[] };
  [more: string]: unknown;
}

/** The outcome of mapping a pod. */
export interface ContainerGroupMapping {
  spec: ContainerGroupSpec;
  /** Differences the pod will live with (ignored fields), for a Warning Event. */
  warnings: string[];
  capacityType: 'spot' | 'on-demand';
}

/** The ClientToken of a pod's create: derived from the UID (≤ 64 ASCII), so a replay is idempotent at ECI. */
export function clientToken(uid: string, purpose: 'create' | 'delete' = 'create'): string {
  const prefix = purpose === 'create' ? 'spillway-' : 'spillway-del-';
  const raw = prefix + uid;
  return raw.length <= 64 && /^[\x21-\x7e]+$/.test(raw)
    ? raw
    : prefix +
        createHash('sha256')
          .update(uid)
          .digest('hex')
          .slice(0, 64 - prefix.length);
}

/** ECI group names: 2–128 of `[a-z0-9-]`, starting and ending alphanumeric. */
export function containerGroupName(namespace: string, name: string): string {
  const s = `${namespace}-${name}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .slice(0, 128)
    .replace(/^-+|-+$/g, '');
  return s.length >= 2 ? s : 'spillway-pod';
}

function dnsConfig(pod: V1Pod, config: EciConfig, sink: MappingSink): ContainerGroupSpec['dnsConfig'] {
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  const ns = pod.metadata?.namespace ?? 'default';
  const d = config.clusterDomain;
  let base: NonNullable<ContainerGroupSpec['dnsConfig']> | undefined;
  if (policy === 'ClusterFirst' || policy === 'ClusterFirstWithHostNet') {
    if (config.clusterDNS) {
      base = {
        nameServer: [config.clusterDNS],
        search: [`${ns}.svc.${d}`, `svc.${d}`, d],
        option: [{ name: 'ndots', value: '5' }],
      };
    } else {
      sink.warnings.push(
        'dnsPolicy ClusterFirst: the ECI provider has no clusterDNS configured, so the pod resolves through the VPC DNS only',
      );
    }
  } else if (policy === 'None') base = {};
  const extra: V1PodDNSConfig | undefined = pod.spec?.dnsConfig;
  if (!extra) return base;
  const merged = base ?? {};
  const options = new Map((merged.option ?? []).map((o) => [o.name, o]));
  for (const o of extra.options ?? [])
    options.set(o.name ?? '', { name: o.name ?? '', ...(o.value !== undefined && { value: o.value }) });
  return {
    nameServer: [...(merged.nameServer ?? []), ...(extra.nameservers ?? [])],
    search: [...(merged.search ?? []), ...(extra.searches ?? [])],
    option: [...options.values()],
  };
}

function spot(
  pod: V1Pod,
  config: EciConfig,
  sink: MappingSink,
): Pick<ContainerGroupSpec, 'spotStrategy' | 'spotPriceLimit' | 'spotDuration'> {
  const ann = pod.metadata?.annotations ?? {};
  const wantsSpot = pod.metadata?.labels?.[CAPACITY_LABEL] === 'spot';
  const strategy = ann[`${ACK}eci-spot-strategy`] ?? (wantsSpot ? config.spot.strategy : undefined);
  if (strategy === undefined || strategy === 'NoSpot') return {};
  const at = (a: string) => `metadata.annotations['${ACK}${a}']`;
  if (strategy !== 'SpotAsPriceGo' && strategy !== 'SpotWithPriceLimit') {
    sink.causes.push({
      path: at('eci-spot-strategy'),
      message: `${strategy} is not SpotAsPriceGo, SpotWithPriceLimit or NoSpot`,
    });
    return {};
  }
  const rawLimit = ann[`${ACK}eci-spot-price-limit`];
  const limit = rawLimit !== undefined ? Number(rawLimit) : config.spot.priceLimit;
  if (rawLimit !== undefined && !(Number(rawLimit) > 0))
    sink.causes.push({ path: at('eci-spot-price-limit'), message: `${rawLimit} is not a positive price` });
  if (strategy === 'SpotWithPriceLimit' && limit === undefined) {
    sink.causes.push({
      path: at('eci-spot-price-limit'),
      message: 'SpotWithPriceLimit needs a price limit (USD per hour)',
    });
  }
  const rawDuration = ann[`${ACK}eci-spot-duration`];
  const duration = rawDuration !== undefined ? Number(rawDuration) : config.spot.durationHours;
  if (rawDuration !== undefined && !(duration === 0 || duration === 1))
    sink.causes.push({ path: at('eci-spot-duration'), message: 'must be 0 or 1 (hours)' });
  return {
    spotStrategy: strategy,
    ...(strategy === 'SpotWithPriceLimit' && limit !== undefined && { spotPriceLimit: limit }),
    ...(duration !== undefined && { spotDuration: duration }),
  };
}

/** Pod-level `k8s.aliyun.com/eci-*` annotations, other than specs and spot; unknown ones are warned about. */
function annotations(pod: V1Pod, sink: MappingSink): Partial<ContainerGroupSpec> {
  const ann = pod.metadata?.annotations ?? {};
  const get = (a: string) => ann[ACK + a];
  for (const key of Object.keys(ann)) {
    if (key.startsWith(`${ACK}eci-`) && !HONOURED_ANNOTATIONS.includes(key))
      sink.warnings.push(`annotation ${key} is not supported by spillway and is ignored`);
  }
  const out: Partial<ContainerGroupSpec> = {};
  if (get('eci-vswitch')) out.vSwitchId = get('eci-vswitch');
  const schedule = get('eci-schedule-strategy');
  if (schedule === 'VSwitchOrdered' || schedule === 'VSwitchRandom') out.scheduleStrategy = schedule;
  else if (schedule !== undefined)
    sink.causes.push({
      path: `metadata.annotations['${ACK}eci-schedule-strategy']`,
      message: 'must be VSwitchOrdered or VSwitchRandom',
    });
  if (get('eci-security-group')) out.securityGroupId = get('eci-security-group');
  if (get('eci-resource-group-id')) out.resourceGroupId = get('eci-resource-group-id');
  if (get('eci-ram-role-name')) out.ramRoleName = get('eci-ram-role-name');
  if (get('eci-image-cache') === 'true') out.autoMatchImageCache = true;
  if (get('eci-image-snapshot-id')) out.imageSnapshotId = get('eci-image-snapshot-id');
  const storage = get('eci-extra-ephemeral-storage');
  if (storage !== undefined) {
    const gib = /^(\d+)Gi$/.exec(storage);
    if (gib) out.ephemeralStorage = Number(gib[1]);
    else
      sink.causes.push({
        path: `metadata.annotations['${ACK}eci-extra-ephemeral-storage']`,
        message: 'must be whole GiB, e.g. 50Gi',
      });
  }
  if (get('eci-with-eip') === 'true') out.autoCreateEip = true;
  if (get('eci-eip-instanceid')) out.eipInstanceId = get('eci-eip-instanceid');
  if (get('eci-ntp-server'))
    out.ntpServer = get('eci-ntp-server')!
      .split(',')
      .map((s) => s.trim());
  if (get('eci-core-pattern')) out.corePattern = get('eci-core-pattern');
  return out;
}

function registryCredentials(
  pod: V1Pod,
  inputs: EciPodInputs,
  sink: MappingSink,
): ContainerGroupSpec['imageRegistryCredential'] {
  const out: NonNullable<ContainerGroupSpec['imageRegistryCredential']> = [];
  for (const [i, ref] of (pod.spec?.imagePullSecrets ?? []).entries()) {
    const raw = ref.name ? inputs.imagePullSecrets?.[ref.name] : undefined;
    if (!raw) {
      sink.warnings.push(
        `spec.imagePullSecrets[${i}] (${ref.name ?? ''}) was not resolved; images are pulled without it`,
      );
      continue;
    }
    let auths: Record<string, { username?: string; password?: string; auth?: string }> = {};
    try {
      const doc = JSON.parse(raw.toString()) as { auths?: typeof auths } & typeof auths;
      auths = doc.auths ?? doc;
    } catch {
      sink.causes.push({
        path: `spec.imagePullSecrets[${i}]`,
        message: `Secret ${ref.name} is not a valid .dockerconfigjson`,
      });
      continue;
    }
    for (const [server, a] of Object.entries(auths)) {
      const [user, ...rest] = a.auth ? Buffer.from(a.auth, 'base64').toString().split(':') : [];
      const userName = a.username ?? user;
      const password = a.password ?? rest.join(':');
      if (userName && password)
        out.push({ server: server.replace(/^https?:\/\//, '').replace(/\/.*$/, ''), userName, password });
    }
  }
  return out.length > 0 ? out : undefined;
}

/** Where the kube-proxy sidecar's files are mounted. */
const KUBE_PROXY_DIR = '/var/lib/spillway-kube-proxy';

/**
 * The files of the kube-proxy sidecar for a minted token: a kubeconfig that reads the token from `token`
 * (client-go re-reads a tokenFile, so a renewed token written in place is picked up without a restart) and
 * verifies the apiserver with `ca.crt`.
 */
export function kubeProxyFiles(c: SidecarCredentials): MaterialisedVolume['files'] {
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'cluster', cluster: { server: c.server, 'certificate-authority': `${KUBE_PROXY_DIR}/ca.crt` } },
    ],
    users: [{ name: 'kube-proxy', user: { tokenFile: `${KUBE_PROXY_DIR}/token` } }],
    contexts: [{ name: 'kube-proxy', context: { cluster: 'cluster', user: 'kube-proxy' } }],
    'current-context': 'kube-proxy',
  };
  return [
    { path: 'kubeconfig', content: Buffer.from(stringify(kubeconfig)), mode: 0o400 },
    { path: 'token', content: Buffer.from(c.token), mode: 0o400 },
    { path: 'ca.crt', content: Buffer.from(c.caPem), mode: 0o444 },
  ];
}

/**
 * The kube-proxy sidecar and its volume: ClusterIP reachability, which ECI's API cannot give. `files` are the
 * minted-token files ({@link kubeProxyFiles}); without them the configured fixed kubeconfig is used.
 */
export function kubeProxySidecar(
  config: EciConfig,
  files?: MaterialisedVolume['files'],
): { container: EciContainer; volume: EciVolume } {
  const dir = KUBE_PROXY_DIR;
  return {
    container: {
      name: KUBE_PROXY_CONTAINER,
      image: config.kubeProxy.image,
      command: ['kube-proxy'],
      arg: [
        `--kubeconfig=${dir}/kubeconfig`,
        '--proxy-mode=iptables',
        `--hostname-override=${config.nodeName}`,
        // The sandbox cannot set host sysctls; 0 keeps the kernel's conntrack settings.
        '--conntrack-max-per-core=0',
        '--metrics-bind-address=127.0.0.1:10249',
        '--healthz-bind-address=127.0.0.1:10256',
        ...(config.kubeProxy.clusterCIDR ? [`--cluster-cidr=${config.kubeProxy.clusterCIDR}`] : []),
      ],
      securityContext: { capability: { add: ['NET_ADMIN', 'NET_RAW'] } },
      volumeMount: [{ name: KUBE_PROXY_CONTAINER, mountPath: dir, readOnly: true }],
    },
    volume: configFileVolume(
      KUBE_PROXY_CONTAINER,
      files ?? [{ path: 'kubeconfig', content: Buffer.from(config.kubeProxy.kubeconfig ?? ''), mode: 0o400 }],
    ),
  };
}

/** Removes undefined fields (deeply), so the request and test expectations carry only what is set. */
function prune<T>(value: T): T {
  if (Array.isArray(value)) return value.map(prune) as T;
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, prune(v)]),
    ) as T;
  }
  return value;
}

/**
 * Maps `pod` to the CreateContainerGroup request of its instance.
 * @throws InvalidPodSpecError listing every field that cannot run on ECI
 */
export function podToContainerGroup(
  pod: V1Pod,
  inputs: EciPodInputs,
  config: EciConfig,
): ContainerGroupMapping {
  const key = sandboxKey(pod);
  const spec = pod.spec ?? { containers: [] };
  const sink: MappingSink = { causes: [], warnings: [] };
  for (const f of ['hostNetwork', 'hostPID', 'hostIPC'] as const) {
    if (spec[f]) sink.causes.push({ path: `spec.${f}`, message: `${f} cannot be used in a sandbox` });
  }
  if (spec.os?.name === 'windows')
    sink.causes.push({ path: 'spec.os.name', message: 'the ECI provider runs Linux pods only' });
  const env = inputs.env ?? {};
  const containers = spec.containers.map((c, i) =>
    mapContainer(pod, c, env[c.name], `spec.containers[${i}]`, false, sink),
  );
  const inits = (spec.initContainers ?? []).map((c, i) => {
    if (c.restartPolicy === 'Always') {
      sink.causes.push({
        path: `spec.initContainers[${i}].restartPolicy`,
        message: `native sidecars are not supported on ECI; move ${c.name} to spec.containers`,
      });
    }
    return mapContainer(pod, c, env[c.name], `spec.initContainers[${i}]`, true, sink);
  });
  const volumes = mapVolumes(spec.volumes, inputs.volumes, sink);
  const wantsProxy =
    config.kubeProxy.enabled && pod.metadata?.annotations?.[KUBE_PROXY_ANNOTATION] !== 'false';
  if (wantsProxy) {
    if ([...spec.containers, ...(spec.initContainers ?? [])].some((c) => c.name === KUBE_PROXY_CONTAINER)) {
      sink.causes.push({
        path: 'spec.containers',
        message: `the container name ${KUBE_PROXY_CONTAINER} is reserved for spillway's kube-proxy sidecar`,
      });
    }
    if (config.kubeProxy.serviceAccount && !inputs.kubeProxyFiles)
      throw new Error('the kube-proxy sidecar has no credentials yet: the virtual node mints them first');
    const sidecar = kubeProxySidecar(config, inputs.kubeProxyFiles);
    containers.push(sidecar.container);
    volumes.push(sidecar.volume);
  }
  const choice = chooseSpec(pod, config.defaultSpec, sink.causes);
  const spotFields = spot(pod, config, sink);
  const annotated = annotations(pod, sink);
  const hostAliases = (spec.hostAliases ?? []).map((h) => ({ ip: h.ip, hostname: h.hostnames ?? [] }));
  const sysctls = (spec.securityContext?.sysctls ?? []).map((s) => ({ name: s.name, value: s.value }));
  const userTags = Object.entries(config.tags).map(([k, value]) => ({ key: k, value }));
  const result: ContainerGroupSpec = {
    containerGroupName: containerGroupName(key.namespace, key.name),
    clientToken: clientToken(key.uid),
    securityGroupId: config.securityGroupId,
    vSwitchId: config.vSwitchIds.join(','),
    scheduleStrategy: config.vSwitchIds.length > 1 ? config.scheduleStrategy : undefined,
    resourceGroupId: config.resourceGroupId,
    restartPolicy: spec.restartPolicy ?? 'Always',
    ...choice,
    container: containers,
    ...(inits.length > 0 && { initContainer: inits }),
    ...(volumes.length > 0 && { volume: volumes }),
    dnsConfig: dnsConfig(pod, config, sink),
    ...(hostAliases.length > 0 && { hostAliase: hostAliases }),
    hostName: (spec.hostname ?? key.name).slice(0, 63).replace(/[-.]+$/, ''),
    imageRegistryCredential: registryCredentials(pod, inputs, sink),
    ...spotFields,
    tag: [
      { key: TAGS.cluster, value: config.clusterId },
      { key: TAGS.node, value: config.nodeName },
      { key: TAGS.namespace, value: key.namespace },
      // Tag values hold 128 characters; the UID tag is what identifies the pod, the name is for people.
      { key: TAGS.pod, value: key.name.slice(0, 128) },
      { key: TAGS.uid, value: key.uid },
      ...userTags,
    ],
    terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds,
    activeDeadlineSeconds: spec.activeDeadlineSeconds,
    ...(spec.shareProcessNamespace && { shareProcessNamespace: true }),
    ...(sysctls.length > 0 && { securityContext: { sysctl: sysctls } }),
    ...annotated,
  };
  if (sink.causes.length > 0) {
    const list = sink.causes.map((c) => `${c.path}: ${c.message}`).join('; ');
    throw new InvalidPodSpecError(`pod ${describeKey(key)} cannot run on ECI: ${list}`, {
      key,
      causes: sink.causes,
    });
  }
  return {
    spec: prune(result),
    warnings: sink.warnings,
    capacityType: spotFields.spotStrategy ? 'spot' : 'on-demand',
  };
}
