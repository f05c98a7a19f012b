/**
 * One virtual node, wired: the node controller (registration, Lease, health), the pod controller and the
 * kubelet API, over one provider. `spillway virtual-node` and `spillway run` start one or more of these.
 *
 * The node talks to the apiserver as a node: `system:node:<name>` in `system:nodes`, with a client certificate it
 * obtains through a CertificateSigningRequest (operator/nodeidentity/), so the Node authorizer and NodeRestriction
 * confine it to its own Node, Lease and pods and to the Secrets, ConfigMaps and tokens of those pods. The
 * identity it starts with (its ServiceAccount in the chart) only asks for that certificate, reads the cluster's
 * client CA and mints the kube-proxy sidecar's token.
 */
import { type CoreV1Api, type KubeConfig, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { isApiError, makeClients } from '../shared/client.ts';
import { EventRecorder } from '../shared/events.ts';
import { informerFor, type SupervisedInformer } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import {
  startNodeIdentity,
  type NodeIdentity,
  type NodeIdentityOptions,
} from '../nodeidentity/client-certificate.ts';
import {
  startServingCertificate,
  type ServingCertificate,
  type ServingCertificateOptions,
} from '../nodeidentity/serving-certificate.ts';
import type { SandboxProvider } from '../providers/types.ts';
import { startKubeletApi } from './kubelet/api.ts';
import { KubeletAuth } from './kubelet/auth.ts';
import { NodeController, type VirtualNodeConfig } from './node.ts';
import { PodController, type PodControllerOptions } from './pods.ts';
import type { ResolverSource } from './resolve.ts';
import { startSidecarCredentials, type SidecarCredentialsLoop } from './sidecar-credentials.ts';

/** A running virtual node. */
export interface RunningVirtualNode {
  /** The node's own identity (system:node:<name>) and its certificate renewal. */
  identity: NodeIdentity;
  /** The kubelet API's serving certificate: issued by the cluster's signer, or self-signed until it is. */
  servingCertificate: ServingCertificate;
  node: NodeController;
  pods: PodController;
  /** The renewal of the provider's sidecar token, when the provider has a sidecar identity. */
  sidecarCredentials?: SidecarCredentialsLoop;
  stop(): Promise<void>;
}

/**
 * Remembers each read for `ttlMs` and shares reads in flight, as a kubelet's ConfigMap/Secret manager does: a
 * burst of 1000 pods that all mount `kube-root-ca.crt` reads it once, not 1000 times.
 */
export function cachedReads<T>(
  read: (namespace: string, name: string) => Promise<T>,
  ttlMs = 5_000,
  now = Date.now,
) {
  const cache = new Map<string, { at: number; value: Promise<T> }>();
  return (namespace: string, name: string): Promise<T> => {
    const key = `${namespace}/${name}`;
    const hit = cache.get(key);
    if (hit && now() - hit.at < ttlMs) return hit.value;
    const value = read(namespace, name);
    cache.set(key, { at: now(), value });
    // A failed read is not remembered: the next pod asks again.
    value.catch(() => cache.delete(key));
    if (cache.size > 10_000) cache.delete(cache.keys().next().value!);
    return value;
  };
}

/** Reads ConfigMaps, Secrets and tokens from the API (briefly cached) and Services from a shared informer. */
export function apiResolverSource(core: CoreV1Api, services: SupervisedInformer<V1Service>): ResolverSource {
  const orUndefined = async <T>(read: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await read();
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  };
  return {
    configMap: cachedReads(async (namespace, name) => {
      const cm = await orUndefined(() => core.readNamespacedConfigMap({ namespace, name }));
      if (!cm) return undefined;
      const binary = Object.entries(cm.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]);
      return { data: cm.data ?? {}, ...(binary.length > 0 && { binaryData: Object.fromEntries(binary) }) };
    }),
    secret: cachedReads(async (namespace, name) => {
      const s = await orUndefined(() => core.readNamespacedSecret({ namespace, name }));
      if (!s) return undefined;
      return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
    }),
    services: async (namespace) => services.list(namespace),
    kubernetesService: async () => {
      const svc = services.get('default', 'kubernetes');
      const port = svc?.spec?.ports?.find((p) => p.name === 'https')?.port ?? svc?.spec?.ports?.[0]?.port;
      return svc?.spec?.clusterIP && port ? { host: svc.spec.clusterIP, port } : undefined;
    },
    token: async (pod: V1Pod, audience, expirationSeconds) => {
      const tr = await core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName ?? 'default',
        namespace: pod.metadata!.namespace!,
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds,
            // Bound to the pod: the token dies with it, and the apiserver extends a 3607 s token as it does
            // for kubelets, so a sandbox keeps a valid token.
            boundObjectRef: {
              apiVersion: 'v1',
              kind: 'Pod',
              name: pod.metadata!.name!,
              uid: pod.metadata!.uid!,
            },
          },
        },
      });
      const token = tr.status?.token;
      if (!token)
        throw new Error(
          `TokenRequest for ${pod.metadata!.namespace}/${pod.spec?.serviceAccountName ?? 'default'} returned no token`,
        );
      return token;
    },
  };
}

/** Starts one virtual node over `provider`; resolves once it is registered and its pods are adopted. */
export async function startVirtualNode(opts: {
  /**
   * The bootstrap identity: asks for the node's client certificate, reads the cluster's client CA and mints the
   * kube-proxy sidecar's token. Everything else goes through the node identity.
   */
  kc: KubeConfig;
  /** The certificate request's lifetime and how long to wait for it. */
  identity?: Pick<NodeIdentityOptions, 'expirationSeconds' | 'timeoutMs'>;
  /** The kubelet serving certificate's lifetime and how long start-up waits for it before self-signing. */
  servingCertificate?: Pick<ServingCertificateOptions, 'expirationSeconds' | 'waitMs'>;
  config: VirtualNodeConfig;
  provider: SandboxProvider;
  logger?: Logger;
  /** Pod controller tuning (workers, create attempts, refresh and orphan intervals). */
  pods?: Pick<
    PodControllerOptions,
    | 'workers'
    | 'statusWorkers'
    | 'maxCreateAttempts'
    | 'volumeRefreshIntervalMs'
    | 'orphanIntervalMs'
    | 'orphanMinAgeMs'
  >;
}): Promise<RunningVirtualNode> {
  const log = opts.logger ?? componentLogger('virtual-node', { node: opts.config.name });
  const bootstrap = makeClients(opts.kc);
  // Nothing is served before the node has its identity: every call below is the node's own.
  const nodeIdentity = await startNodeIdentity({
    bootstrap: opts.kc,
    nodeName: opts.config.name,
    logger: log,
    ...opts.identity,
  });
  const kc = nodeIdentity.kc;
  const clients = makeClients(kc);
  const events = new EventRecorder({
    api: clients.events,
    controller: 'spillway.dev/virtual-node',
    instance: opts.config.name,
    onError: (err) => log.debug({ err: String(err) }, 'event not recorded'),
  });
  const services = informerFor<V1Service>(kc, 'services', {
    path: '/api/v1/services',
    list: () => clients.core.listServiceForAllNamespaces(),
  });
  services.start();
  await services.synced;

  const node = new NodeController({
    config: opts.config,
    core: clients.core,
    coordination: clients.coordination,
    provider: opts.provider,
    logger: log,
  });
  await node.start();
  // The provider's sidecars get their token before the first create (it is bound to the Node just registered).
  const identity = opts.provider.sidecarIdentity?.();
  const sidecarCredentials = identity
    ? await startSidecarCredentials({
        kc: opts.kc,
        // NodeRestriction lets a node mint tokens only bound to its own pods: the sidecar's token, bound to
        // the Node, is the bootstrap identity's to mint (one ServiceAccount, chart templates/kube-proxy-rbac.yaml).
        core: bootstrap.core,
        discovery: bootstrap.discovery,
        nodes: clients.core,
        nodeName: opts.config.name,
        identity,
        provider: opts.provider,
        logger: log,
      })
    : undefined;
  const capacity = await opts.provider.capacity();
  const podsFieldSelector = `spec.nodeName=${opts.config.name}`;
  const pods = new PodController({
    nodeName: opts.config.name,
    hostIP: opts.config.internalIP,
    provider: opts.provider,
    pods: informerFor<V1Pod>(kc, 'virtualnode-pods', {
      path: '/api/v1/pods',
      fieldSelector: podsFieldSelector,
      list: () => clients.core.listPodForAllNamespaces({ fieldSelector: podsFieldSelector }),
    }),
    podClient: clients.core,
    // A node may create Events but not list them: the Events it recorded before a restart are read once by
    // the bootstrap identity (chart: list events).
    recordedEvents: bootstrap.core,
    events,
    resolver: apiResolverSource(clients.core, services),
    nodeAllocatable: { cpu: capacity.cpu, memory: capacity.memory },
    logger: log,
    ...opts.pods,
  });
  await pods.start();

  // The kubelet API. Its serving certificate comes from the cluster's kubelet-serving signer, asked for as
  // the node (operator/nodeidentity/serving-certificate.ts), so that metrics-server and an apiserver with
  // --kubelet-certificate-authority verify it against the cluster CA; self-signed until it is issued. Client
  // certificates are checked against the cluster's client CA, published for exactly this purpose in
  // kube-system/extension-apiserver-authentication (no pod refers to it, so the Node authorizer does not grant
  // it: the bootstrap identity reads it).
  const authConfig = await bootstrap.core.readNamespacedConfigMap({
    namespace: 'kube-system',
    name: 'extension-apiserver-authentication',
  });
  const clientCA = authConfig.data?.['client-ca-file'];
  const servingCertificate = await startServingCertificate({
    kc,
    nodeName: opts.config.name,
    names: { dnsNames: [opts.config.name], ipAddresses: [opts.config.internalIP] },
    logger: log,
    ...opts.servingCertificate,
  });
  const serving = servingCertificate.current;
  const kubelet = await startKubeletApi({
    nodeName: opts.config.name,
    provider: opts.provider,
    auth: new KubeletAuth({
      authentication: clients.authentication,
      authorization: clients.authorization,
      nodeName: opts.config.name,
    }),
    pod: (namespace, name) => pods.pods.get(namespace, name),
    pods: () => pods.pods.list(),
    tls: {
      cert: serving.certPem,
      key: serving.keyPem,
      clientCA,
    },
    host: opts.config.kubeletHost ?? opts.config.internalIP,
    port: opts.config.kubeletPort,
    logger: log,
  }).catch((err: unknown) => {
    servingCertificate.stop();
    throw err;
  });
  // New connections get the new certificate; open ones keep theirs. The client CA goes with it: a secure
  // context is replaced whole.
  const serve = (pair: typeof serving) =>
    kubelet.setSecureContext({ cert: pair.certPem, key: pair.keyPem, ...(clientCA && { ca: clientCA }) });
  servingCertificate.onChange(serve);
  // Issued while the server was starting.
  if (servingCertificate.current !== serving) serve(servingCertificate.current);
  return {
    identity: nodeIdentity,
    servingCertificate,
    node,
    pods,
    ...(sidecarCredentials && { sidecarCredentials }),
    stop: async () => {
      sidecarCredentials?.stop();
      servingCertificate.stop();
      kubelet.close();
      kubelet.closeAllConnections();
      node.stop();
      await pods.stop();
      await services.stop();
      nodeIdentity.stop();
    },
  };
}
