/**
 * Resolves what a kubelet resolves before it starts a pod, so that providers never read the Kubernetes API:
 * each container's full environment (envFrom, env with valueFrom, `$(VAR)` expansion, Service link variables,
 * KUBERNETES_SERVICE_HOST/PORT) and the files of configMap, secret, downwardAPI and projected volumes
 * (service-account tokens through the TokenRequest API, bound to the pod).
 */
import type {
  V1Container,
  V1DownwardAPIVolumeFile,
  V1ObjectFieldSelector,
  V1Pod,
  V1ResourceFieldSelector,
  V1Service,
  V1VolumeProjection,
} from '@kubernetes/client-node';
import type { MaterialisedVolume, ResolvedEnvVar, ResolvedPodInputs } from '../providers/types.ts';
import { parseQuantity } from '../../api/quantity.ts';

/** Where the resolver reads from; the pod controller backs it with the API (and caches). */
export interface ResolverSource {
  configMap(namespace: string, name: string): Promise<ConfigMapContent | undefined>;
  /** Secret data, base64-decoded. */
  secret(namespace: string, name: string): Promise<Record<string, Buffer> | undefined>;
  /** Services of a namespace, for Service link variables. */
  services(namespace: string): Promise<V1Service[]>;
  /** The `default/kubernetes` Service's ClusterIP and port, for KUBERNETES_SERVICE_HOST/PORT. */
  kubernetesService(): Promise<{ host: string; port: number } | undefined>;
  /** A service-account token bound to the pod (TokenRequest). */
  token(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
}

/** A ConfigMap's `data` (env and files) and `binaryData` (files only, as a kubelet does). */
export interface ConfigMapContent {
  data: Record<string, string>;
  binaryData?: Record<string, Buffer>;
}

/**
 * Where a missing reference was met, as a kubelet tells them apart: a volume it cannot mount (`FailedMount`, the
 * pod stays ContainerCreating) or a container whose config it cannot build (`CreateContainerConfigError`).
 */
export type ReferenceSite = { volume: string } | { container: string };

/** A pod references something that does not exist; the pod controller retries and raises an Event. */
export class MissingReferenceError extends Error {
  override readonly name = 'MissingReferenceError';
  /** The volume or container that needs it; absent when thrown outside {@link resolvePodInputs}. */
  readonly site: ReferenceSite | undefined;

  constructor(message: string, site?: ReferenceSite) {
    super(message);
    this.site = site;
  }
}

/** The value of a downward API `fieldRef` for `pod`, or throws naming the unsupported path. */
export function fieldRefValue(pod: V1Pod, ref: V1ObjectFieldSelector): string {
  const path = ref.fieldPath;
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!] ?? '';
  const map = (o: Record<string, string> | undefined) =>
    Object.entries(o ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join('\n');
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
      return map(pod.metadata?.labels);
    case 'metadata.annotations':
      return map(pod.metadata?.annotations);
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.hostIP':
      return pod.status?.hostIP ?? '';
    case 'status.hostIPs':
      return (pod.status?.hostIPs ?? []).map((i) => i.ip).join(',');
    // The sandbox address is not known before the provider creates it; the local provider fills it in when it
    // creates the container (operator/providers/local/plan.ts withPodIPs).
    case 'status.podIP':
      return pod.status?.podIP ?? '';
    case 'status.podIPs':
      return (pod.status?.podIPs ?? []).map((i) => i.ip).join(',');
    default:
      throw new MissingReferenceError(`unsupported downward API field ${path}`);
  }
}

/** The value of a downward API `resourceFieldRef` (limits default to the node's allocatable, as a kubelet does). */
export function resourceFieldValue(
  pod: V1Pod,
  container: V1Container | undefined,
  ref: V1ResourceFieldSelector,
  nodeAllocatable: Record<string, string>,
): string {
  const c = ref.containerName
    ? [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find(
        (x) => x.name === ref.containerName,
      )
    : container;
  const [kind, resource] = ref.resource.split('.') as ['limits' | 'requests', string];
  const raw =
    c?.resources?.[kind]?.[resource] ?? (kind === 'limits' ? nodeAllocatable[resource] : undefined) ?? '0';
  const divisor = parseQuantity(ref.divisor ?? '1');
  // Kubernetes rounds up: 250m of CPU with divisor 1 is 1.
  return String(Math.ceil(parseQuantity(raw) / divisor));
}

/** Expands `$(VAR)` references against earlier variables; `$$(VAR)` escapes to `$(VAR)` (Kubernetes' rule). */
export function expandVars(value: string, vars: Map<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) => {
    if (whole === '$$') return '$';
    return name !== undefined && vars.has(name) ? vars.get(name)! : whole;
  });
}

/** Service link variables (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_<port>_TCP_ADDR`, ...) as Docker links defined them. */
export function serviceLinkVars(services: V1Service[]): ResolvedEnvVar[] {
  const out: ResolvedEnvVar[] = [];
  for (const svc of services) {
    const ip = svc.spec?.clusterIP;
    if (!ip || ip === 'None' || !svc.metadata?.name) continue;
    const name = svc.metadata.name.toUpperCase().replace(/-/g, '_');
    const ports = svc.spec?.ports ?? [];
    const first = ports[0];
    if (!first) continue;
    out.push(
      { name: `${name}_SERVICE_HOST`, value: ip },
      { name: `${name}_SERVICE_PORT`, value: String(first.port) },
    );
    for (const p of ports) {
      if (p.name)
        out.push({
          name: `${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`,
          value: String(p.port),
        });
    }
    const proto = (first.protocol ?? 'TCP').toLowerCase();
    out.push({ name: `${name}_PORT`, value: `${proto}://${ip}:${first.port}` });
    for (const p of ports) {
      const pr = (p.protocol ?? 'TCP').toUpperCase();
      const base = `${name}_PORT_${p.port}_${pr}`;
      out.push(
        { name: base, value: `${pr.toLowerCase()}://${ip}:${p.port}` },
        { name: `${base}_PROTO`, value: pr.toLowerCase() },
        { name: `${base}_PORT`, value: String(p.port) },
        { name: `${base}_ADDR`, value: ip },
      );
    }
  }
  return out;
}

/** Resolves env and volumes for `pod`; throws {@link MissingReferenceError} for a missing non-optional reference. */
export async function resolvePodInputs(
  pod: V1Pod,
  source: ResolverSource,
  nodeAllocatable: Record<string, string> = {},
): Promise<ResolvedPodInputs> {
  const ns = pod.metadata?.namespace ?? 'default';
  const configMap = async (name: string, optional: boolean | undefined) => {
    const data = await source.configMap(ns, name);
    // The kubelet's configmap/secret managers name the resource in the singular: `configmap "x" not found`.
    if (!data && !optional) throw new MissingReferenceError(`configmap "${name}" not found`);
    return data;
  };
  const secret = async (name: string, optional: boolean | undefined) => {
    const data = await source.secret(ns, name);
    if (!data && !optional) throw new MissingReferenceError(`secret "${name}" not found`);
    return data;
  };

  // Volumes first: a kubelet mounts them before it builds any container's config, so a missing volume source
  // is reported (FailedMount) even when an env reference is missing too.
  let site: ReferenceSite | undefined;
  try {
    const volumes: Record<string, MaterialisedVolume> = {};
    for (const v of pod.spec?.volumes ?? []) {
      site = { volume: v.name };
      const files: MaterialisedVolume['files'] = [];
      const fromMap = (
        data: Record<string, Buffer>,
        items: { key: string; path: string; mode?: number }[] | undefined,
        mode: number | undefined,
        /** The kubelet's message for an item whose key is missing, before `: <key>`. */
        what: string,
      ) => {
        if (!items) {
          for (const [k, content] of Object.entries(data)) files.push({ path: k, content, mode });
          return;
        }
        for (const it of items) {
          const content = data[it.key];
          if (!content) throw new MissingReferenceError(`${what}: ${it.key}`);
          files.push({ path: it.path, content, mode: it.mode ?? mode });
        }
      };
      const cmBuffers = (d: ConfigMapContent) => ({
        ...Object.fromEntries(Object.entries(d.data).map(([k, s]) => [k, Buffer.from(s)])),
        ...d.binaryData,
      });
      const projections: V1VolumeProjection[] = v.projected?.sources ?? [];
      const downward = (items: V1DownwardAPIVolumeFile[] | undefined, mode: number | undefined) => {
        for (const it of items ?? []) {
          const value = it.fieldRef
            ? fieldRefValue(pod, it.fieldRef)
            : resourceFieldValue(pod, undefined, it.resourceFieldRef!, nodeAllocatable);
          files.push({ path: it.path, content: Buffer.from(value), mode: it.mode ?? mode });
        }
      };
      if (v.configMap) {
        const d = await configMap(v.configMap.name!, v.configMap.optional);
        if (d)
          fromMap(
            cmBuffers(d),
            v.configMap.items,
            v.configMap.defaultMode,
            'configmap references non-existent config key',
          );
      } else if (v.secret) {
        const d = await secret(v.secret.secretName!, v.secret.optional);
        if (d) fromMap(d, v.secret.items, v.secret.defaultMode, 'references non-existent secret key');
      } else if (v.downwardAPI) {
        downward(v.downwardAPI.items, v.downwardAPI.defaultMode);
      } else if (v.projected) {
        for (const p of projections) {
          if (p.serviceAccountToken) {
            const token = await source.token(
              pod,
              p.serviceAccountToken.audience,
              p.serviceAccountToken.expirationSeconds ?? 3607,
            );
            files.push({
              path: p.serviceAccountToken.path,
              content: Buffer.from(token),
              mode: v.projected.defaultMode,
            });
          } else if (p.configMap) {
            const d = await configMap(p.configMap.name!, p.configMap.optional);
            if (d)
              fromMap(
                cmBuffers(d),
                p.configMap.items,
                v.projected.defaultMode,
                'configmap references non-existent config key',
              );
          } else if (p.secret) {
            const d = await secret(p.secret.name!, p.secret.optional);
            if (d) fromMap(d, p.secret.items, v.projected.defaultMode, 'references non-existent secret key');
          } else if (p.downwardAPI) {
            downward(p.downwardAPI.items, v.projected.defaultMode);
          }
        }
      } else {
        continue; // emptyDir and anything the provider creates itself
      }
      volumes[v.name] = { files };
    }
    const links = pod.spec?.enableServiceLinks === false ? [] : serviceLinkVars(await source.services(ns));
    const kube = await source.kubernetesService();
    const env: Record<string, ResolvedEnvVar[]> = {};
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      site = { container: c.name };
      const vars = new Map<string, string>();
      if (kube) {
        vars.set('KUBERNETES_SERVICE_HOST', kube.host);
        vars.set('KUBERNETES_SERVICE_PORT', String(kube.port));
        vars.set('KUBERNETES_SERVICE_PORT_HTTPS', String(kube.port));
        vars.set('KUBERNETES_PORT', `tcp://${kube.host}:${kube.port}`);
      }
      for (const l of links) vars.set(l.name, l.value);
      for (const from of c.envFrom ?? []) {
        const prefix = from.prefix ?? '';
        if (from.configMapRef) {
          for (const [k, v] of Object.entries(
            (await configMap(from.configMapRef.name!, from.configMapRef.optional))?.data ?? {},
          ))
            vars.set(prefix + k, v);
        }
        if (from.secretRef) {
          for (const [k, v] of Object.entries(
            (await secret(from.secretRef.name!, from.secretRef.optional)) ?? {},
          ))
            vars.set(prefix + k, v.toString());
        }
      }
      for (const e of c.env ?? []) {
        const vf = e.valueFrom;
        let value: string | undefined;
        if (!vf) value = expandVars(e.value ?? '', vars);
        else if (vf.fieldRef) value = fieldRefValue(pod, vf.fieldRef);
        else if (vf.resourceFieldRef)
          value = resourceFieldValue(pod, c, vf.resourceFieldRef, nodeAllocatable);
        else if (vf.configMapKeyRef) {
          const ref = vf.configMapKeyRef;
          value = (await configMap(ref.name!, ref.optional))?.data[ref.key];
          if (value === undefined && !ref.optional)
            throw new MissingReferenceError(`couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name}`);
        } else if (vf.secretKeyRef) {
          const ref = vf.secretKeyRef;
          value = (await secret(ref.name!, ref.optional))?.[ref.key]?.toString();
          if (value === undefined && !ref.optional)
            throw new MissingReferenceError(`couldn't find key ${ref.key} in Secret ${ns}/${ref.name}`);
        }
        if (value !== undefined) vars.set(e.name, value);
      }
      env[c.name] = [...vars].map(([name, value]) => ({ name, value }));
    }

    // Pull secrets as a kubelet reads them: a missing one is not an error (the pull goes without it).
    const imagePullSecrets: Record<string, Buffer> = {};
    for (const ref of pod.spec?.imagePullSecrets ?? []) {
      if (!ref.name) continue;
      const data = await source.secret(ns, ref.name);
      const config = data?.['.dockerconfigjson'] ?? data?.['.dockercfg'];
      if (config) imagePullSecrets[ref.name] = config;
    }

    return { env, volumes, ...(Object.keys(imagePullSecrets).length > 0 ? { imagePullSecrets } : {}) };
  } catch (err) {
    if (err instanceof MissingReferenceError && !err.site && site)
      throw new MissingReferenceError(err.message, site);
    throw err;
  }
}
