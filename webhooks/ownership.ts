/**
 * Who serves spillway's webhooks in a cluster. `spillway run` registers its own (dev-mode) webhook configurations
 * and records its process identity on them; before it touches the cluster it looks for another spillway already
 * there (the chart's configurations, or another live `spillway run`) and refuses with a message, instead of
 * replacing the other's configurations and fighting over the controller's Lease.
 */
import { connect } from 'node:net';
import type {
  AdmissionregistrationV1Api,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';

/** The annotation a dev-mode registration carries: the identity (`<host>-<pid>`) of the process it points at. */
export const DEV_OWNER_ANNOTATION = 'spillway.dev/dev-mode-owner';

/** Every spillway webhook configuration carries this label (the chart's and dev mode's alike). */
export const SPILLWAY_WEBHOOK_SELECTOR = 'app.kubernetes.io/name=spillway';

type Configuration = V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration;

/** Another spillway found in the cluster, and what to tell the user. */
export type OtherSpillway =
  | { kind: 'chart'; configuration: string; release?: string; namespace?: string }
  | { kind: 'dev'; configuration: string; owner: string; url?: string };

/** Whether a configuration was installed by Helm (the chart), from its labels and annotations. */
function helmRelease(c: Configuration): { release?: string; namespace?: string } | undefined {
  const labels = c.metadata?.labels ?? {};
  const annotations = c.metadata?.annotations ?? {};
  if (labels['app.kubernetes.io/managed-by'] !== 'Helm' && !labels['helm.sh/chart']) return undefined;
  const release = annotations['meta.helm.sh/release-name'] ?? labels['app.kubernetes.io/instance'];
  const namespace = annotations['meta.helm.sh/release-namespace'];
  return { ...(release ? { release } : {}), ...(namespace ? { namespace } : {}) };
}

/** The URL a dev-mode configuration sends its webhooks to. */
const devUrl = (c: Configuration): string | undefined =>
  c.webhooks?.find((w) => w.clientConfig.url)?.clientConfig.url;

/**
 * The other spillway these configurations reveal, if any: a chart installation always counts; a dev-mode one only
 * when its owner is not `identity` and `isLive` says its server still answers (a `kill -9`ed run leaves its
 * configurations behind: those are taken over).
 */
export async function otherSpillway(
  configurations: Configuration[],
  identity: string,
  isLive: (url: string) => Promise<boolean>,
): Promise<OtherSpillway | undefined> {
  for (const c of configurations) {
    const helm = helmRelease(c);
    if (helm) return { kind: 'chart', configuration: c.metadata?.name ?? '', ...helm };
  }
  for (const c of configurations) {
    const owner = c.metadata?.annotations?.[DEV_OWNER_ANNOTATION];
    const url = devUrl(c);
    if (!owner || owner === identity || !url) continue;
    if (await isLive(url)) return { kind: 'dev', configuration: c.metadata?.name ?? '', owner, url };
  }
  return undefined;
}

/** The message `spillway run` refuses with: what is there, and how to proceed. */
export function refusal(other: OtherSpillway): string {
  if (other.kind === 'chart') {
    const release = other.release ?? '<release>';
    const ns = other.namespace ?? '<namespace>';
    return (
      `spillway is already installed in this cluster by Helm (release ${release} in namespace ${ns}, webhook ` +
      `configuration ${other.configuration}); two operators would fight over the same pods. Run against another ` +
      `cluster (KUBECONFIG), or remove the installation first: helm uninstall ${release} -n ${ns}`
    );
  }
  return (
    `another spillway run (${other.owner}, serving ${other.url}) already serves this cluster's webhooks ` +
    `(configuration ${other.configuration}); two operators would fight over the same pods. Stop it first ` +
    `(Ctrl-C in its terminal, or kill ${other.owner.split('-').pop()} on its host)`
  );
}

/** Whether something accepts TCP connections at `url`'s host and port (a loopback dev-mode server). */
export function acceptsConnections(url: string, timeoutMs = 2000): Promise<boolean> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.resolve(false);
  }
  const host = target.hostname.replace(/^\[|\]$/g, '');
  // Only this host's own loopback is probed; a server elsewhere cannot be checked from here, so it counts as live.
  if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const socket = connect({
      host,
      port: Number(target.port || 443),
    });
    const done = (live: boolean) => {
      socket.destroy();
      resolve(live);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Lists spillway's webhook configurations of both kinds (by label). */
export async function spillwayWebhookConfigurations(
  api: AdmissionregistrationV1Api,
): Promise<Configuration[]> {
  const [mutating, validating] = await Promise.all([
    api.listMutatingWebhookConfiguration({ labelSelector: SPILLWAY_WEBHOOK_SELECTOR }),
    api.listValidatingWebhookConfiguration({ labelSelector: SPILLWAY_WEBHOOK_SELECTOR }),
  ]);
  return [...mutating.items, ...validating.items];
}
