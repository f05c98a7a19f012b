/**
 * Credentials for a provider's own sidecars (ECI's kube-proxy), minted by the virtual node as a kubelet mints
 * pod tokens: TokenRequests for the ServiceAccount the provider names, bound to this virtual Node (a token dies
 * with its Node), renewed at 80 % of their lifetime and handed to the provider, which writes each into the
 * running instances. The sidecar's identity thus never outlives the node and never needs a long-lived Secret.
 */
import { readFileSync } from 'node:fs';
import type { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { apiErrorMessage } from '../shared/client.ts';
import type { Logger } from '../shared/log.ts';
import type { SandboxProvider, SidecarCredentials, SidecarIdentity } from '../providers/types.ts';

/** The renewal loop of one node's sidecar credentials. */
export interface SidecarCredentialsLoop {
  /** When the current token expires. */
  readonly expiresAt: Date;
  /** Mints and hands over a new token now (the loop then waits 80 % of its lifetime again). */
  renew(): Promise<void>;
  stop(): void;
}

/** How long a failed renewal waits before it tries again. */
const RETRY_MS = 30_000;

/** The apiserver's address as the `default/kubernetes` EndpointSlice lists it (real IPs, not the ClusterIP). */
export async function apiServerFromEndpoints(discovery: DiscoveryV1Api): Promise<string> {
  const slice = await discovery
    .readNamespacedEndpointSlice({ namespace: 'default', name: 'kubernetes' })
    .catch(() => undefined);
  const address = slice?.endpoints?.find((e) => e.conditions?.ready !== false)?.addresses?.[0];
  const port = slice?.ports?.find((p) => p.name === 'https')?.port ?? slice?.ports?.[0]?.port;
  if (!address || !port)
    throw new Error(
      'the apiserver address for the kube-proxy sidecar is unknown: default/kubernetes has no EndpointSlice with an address; set kubeProxy.apiServer (chart: providers.eci.kubeProxy.apiServer)',
    );
  return `https://${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** The cluster CA bundle of `kc`'s current cluster (inline or from its file). */
export function clusterCA(kc: KubeConfig): string {
  const cluster = kc.getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64').toString();
  if (cluster?.caFile) return readFileSync(cluster.caFile, 'utf8');
  throw new Error(
    "the virtual node's kubeconfig has no cluster CA to give the kube-proxy sidecar (set certificate-authority)",
  );
}

/**
 * Mints the first token (the returned promise rejects, naming the ServiceAccount, when it cannot) and keeps
 * renewing it until stopped.
 */
export async function startSidecarCredentials(opts: {
  kc: KubeConfig;
  /** Mints the tokens: the bootstrap identity, allowed exactly that on the sidecar's ServiceAccount. */
  core: CoreV1Api;
  discovery: DiscoveryV1Api;
  /** Reads the Node the tokens are bound to: the node identity (the bootstrap identity cannot read Nodes). */
  nodes: CoreV1Api;
  nodeName: string;
  identity: SidecarIdentity;
  provider: SandboxProvider;
  logger: Logger;
}): Promise<SidecarCredentialsLoop> {
  const { core, identity, nodeName, provider, logger } = opts;
  const sa = `${identity.namespace}/${identity.name}`;
  const server = identity.apiServer ?? (await apiServerFromEndpoints(opts.discovery));
  const caPem = clusterCA(opts.kc);
  let expiresAt = new Date(0);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const mint = async (): Promise<SidecarCredentials> => {
    const node = await opts.nodes.readNode({ name: nodeName });
    const tr = await core.createNamespacedServiceAccountToken({
      namespace: identity.namespace,
      name: identity.name,
      body: {
        spec: {
          audiences: [],
          expirationSeconds: identity.expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata!.uid! },
        },
      },
    });
    if (!tr.status?.token) throw new Error(`TokenRequest for ${sa} returned no token`);
    const expiresAt = tr.status.expirationTimestamp
      ? new Date(tr.status.expirationTimestamp)
      : new Date(Date.now() + identity.expirationSeconds * 1000);
    return { token: tr.status.token, expiresAt, server, caPem };
  };

  const schedule = (ms: number) => {
    clearTimeout(timer);
    if (stopped) return;
    timer = setTimeout(() => void loop.renew().catch(() => {}), ms);
    timer.unref();
  };

  const loop: SidecarCredentialsLoop = {
    get expiresAt() {
      return expiresAt;
    },
    async renew() {
      try {
        const creds = await mint();
        await provider.setSidecarCredentials?.(creds);
        const issued = Date.now();
        expiresAt = creds.expiresAt;
        schedule(Math.max(1000, (expiresAt.getTime() - issued) * 0.8));
        logger.info({ serviceAccount: sa, expiresAt: expiresAt.toISOString() }, 'sidecar token renewed');
      } catch (err) {
        schedule(RETRY_MS);
        const message = `cannot mint a token for the sidecar ServiceAccount ${sa}: ${apiErrorMessage(err)}`;
        logger.warn({ serviceAccount: sa, retryInMs: RETRY_MS }, message);
        throw new Error(message, { cause: err });
      }
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
  try {
    await loop.renew();
  } catch (err) {
    loop.stop();
    throw err;
  }
  return loop;
}
