/**
 * Starts the webhooks in a process: namespace and node caches (supervised informers), the TLS keeper, the HTTPS
 * server, and, in dev mode (`make run`), the registration of the webhook configurations pointing at this process.
 * In the chart, every replica runs this with `register: false` (the chart ships the configurations and the keeper
 * injects the CA bundle into them).
 */
import type { V1Namespace, V1Node } from '@kubernetes/client-node';
import { Histogram } from 'prom-client';
import { apiErrorCode, apiErrorMessage, type Clients } from '../operator/shared/client.ts';
import { informerFor } from '../operator/shared/informer.ts';
import { componentLogger, type Logger } from '../operator/shared/log.ts';
import { registry } from '../operator/shared/metrics.ts';
import { NamespaceLabelCache, VIRTUAL_NODE_SELECTOR, VirtualNodeSet } from './caches.ts';
import { registerWebhookConfigurations, webhookConfigurationNames } from './configurations.ts';
import { webhookHandlers } from './handlers.ts';
import type { PlacementPolicy } from './placement.ts';
import { DEV_OWNER_ANNOTATION } from './ownership.ts';
import { keepRegistered, type KeptRegistration } from './registration.ts';
import { WebhookServer } from './server.ts';
import { kubeTlsStore, TlsKeeper, webhookBundleTargets } from './tls-keeper.ts';

/** Options of {@link startWebhooks}; names default to the chart's. */
export interface StartWebhooksOptions {
  clients: Pick<Clients, 'kc' | 'core' | 'admissionregistration'>;
  /** spillway's namespace: holds the TLS Secret, and is never sent to the webhooks. */
  namespace: string;
  /** The Service in front of the webhook server; default `spillway-webhook`. */
  serviceName?: string;
  /** The TLS Secret; default `spillway-webhook-tls`. */
  secretName?: string;
  /** Name of both webhook configurations; default `spillway`. */
  configurationName?: string;
  /** Listen address; default 127.0.0.1 (the chart sets 0.0.0.0). */
  host?: string;
  /** Listen port; default 0 (any free port) in dev mode, 9443 otherwise. */
  port?: number;
  /** Dev mode: the certificate also names 127.0.0.1 and the configurations use `url: https://127.0.0.1:PORT/...`. */
  devMode?: boolean;
  /** Create or replace the webhook configurations once the caches are synced (dev mode, `make run`). */
  register?: boolean;
  /** Dev mode: this process's identity, recorded on the configurations it registers (webhooks/ownership.ts). */
  owner?: string;
  /** `external` when cert-manager writes the TLS Secret. */
  tlsMode?: 'self-managed' | 'external';
  placement?: PlacementPolicy;
  logger?: Logger;
}

/** The running webhooks. */
export interface RunningWebhooks {
  server: WebhookServer;
  keeper: TlsKeeper;
  /** Stops the keeper, drains the server, stops the informers. */
  stop(): Promise<void>;
}

const DURATION = 'spillway_webhook_request_duration_seconds';

function durationHistogram(): Histogram<'path' | 'outcome'> {
  const existing = registry.getSingleMetric(DURATION) as Histogram<'path' | 'outcome'> | undefined;
  return (
    existing ??
    new Histogram({
      name: DURATION,
      help: 'Time to answer an AdmissionReview, by webhook path ("other" for any other path) and outcome.',
      labelNames: ['path', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    })
  );
}

/** Starts everything; resolves when the server is listening (and, with `register`, registered). */
export async function startWebhooks(o: StartWebhooksOptions): Promise<RunningWebhooks> {
  const log = o.logger ?? componentLogger('webhooks');
  const { kc, core, admissionregistration } = o.clients;
  const serviceName = o.serviceName ?? 'spillway-webhook';
  const secretName = o.secretName ?? 'spillway-webhook-tls';
  const names = webhookConfigurationNames(o.configurationName);

  const namespaces = new NamespaceLabelCache();
  const nsInformer = informerFor<V1Namespace>(kc, 'webhook-namespaces', {
    path: '/api/v1/namespaces',
    list: () => core.listNamespace(),
  });
  nsInformer.onAdd((ns) => namespaces.upsert(ns));
  nsInformer.onUpdate((ns) => namespaces.upsert(ns));
  nsInformer.onDelete((ns) => namespaces.remove(ns));
  const virtualNodes = new VirtualNodeSet();
  // Only the virtual nodes: the webhooks match pods against their labels and taints, never a real node's.
  const nodeInformer = informerFor<V1Node>(kc, 'webhook-nodes', {
    path: '/api/v1/nodes',
    labelSelector: VIRTUAL_NODE_SELECTOR,
    list: () => core.listNode({ labelSelector: VIRTUAL_NODE_SELECTOR }),
  });
  nodeInformer.onAdd((n) => virtualNodes.upsert(n));
  nodeInformer.onUpdate((n) => virtualNodes.upsert(n));
  nodeInformer.onDelete((n) => virtualNodes.remove(n));
  nsInformer.start();
  nodeInformer.start();

  const ref: { server?: WebhookServer } = {};
  const keeper = new TlsKeeper({
    store: kubeTlsStore(core, o.namespace, secretName),
    settings: {
      namespace: o.namespace,
      secretName,
      serviceName,
      ...(o.devMode ? { ipAddresses: ['127.0.0.1'] } : {}),
    },
    mode: o.tlsMode,
    bundleTargets: o.tlsMode === 'external' ? [] : webhookBundleTargets(admissionregistration, names),
    onCertificate: (cert) => {
      ref.server?.setCertificate(cert);
      if (ref.server) log.info({ secretName: `${o.namespace}/${secretName}` }, 'serving a new certificate');
    },
    log,
  });
  await keeper.reconcile();

  const histogram = durationHistogram();
  const server = await WebhookServer.start({
    handlers: webhookHandlers({
      namespaceLabels: namespaces.lookup,
      isVirtualNode: virtualNodes.has,
      virtualNodes: virtualNodes.list,
      placement: o.placement,
    }),
    certificate: keeper.certificate!,
    host: o.host,
    port: o.port ?? (o.devMode ? 0 : 9443),
    // Not ready until both caches are filled: a namespace-labelled pod must not be judged on an empty cache.
    isReady: () => nsInformer.hasSynced() && nodeInformer.hasSynced(),
    log,
    // `route` is a registered webhook path or `other`: the label set is fixed whatever clients send.
    observe: (route, outcome, seconds) => histogram.observe({ path: route, outcome }, seconds),
  });
  ref.server = server;
  keeper.start();

  let kept: KeptRegistration | undefined;
  const stop = async () => {
    keeper.stop();
    await kept?.stop();
    // Dev mode: the configurations point at this process; left behind, their Fail policy would reject every
    // spillway-labelled pod until the next `make run`.
    if (o.register && o.devMode) await deregister(admissionregistration, names, o.owner, log);
    await server.close();
    await Promise.all([nsInformer.stop(), nodeInformer.stop()]);
  };

  if (o.register) {
    try {
      await Promise.all([nsInformer.synced, nodeInformer.synced]);
      const registration = {
        client: o.devMode
          ? { url: server.url() }
          : { service: { name: serviceName, namespace: o.namespace } },
        caBundlePem: keeper.caBundlePem,
        ownNamespace: o.namespace,
        name: o.configurationName,
        ...(o.devMode && o.owner ? { owner: o.owner } : {}),
      };
      // Dev mode: nothing else (no chart) puts the configurations back if they are deleted or changed.
      if (o.devMode) kept = await keepRegistered(kc, admissionregistration, registration, log);
      else await registerWebhookConfigurations(admissionregistration, registration);
    } catch (err) {
      await stop();
      throw err;
    }
    log.info({ url: server.url(), devMode: !!o.devMode }, 'webhook configurations registered');
  }
  return { server, keeper, stop };
}

/**
 * Removes the dev-mode configurations, but only this process's own: those another live run registered over them
 * (webhooks/registration.ts) are that run's to remove. The delete is conditional on the UID that was read.
 */
async function deregister(
  api: Clients['admissionregistration'],
  names: { mutating: string[]; validating: string[] },
  owner: string | undefined,
  log: Logger,
): Promise<void> {
  const kinds = [
    ...names.mutating.map((name) => ({
      name,
      read: () => api.readMutatingWebhookConfiguration({ name }),
      remove: (uid?: string) =>
        api.deleteMutatingWebhookConfiguration({ name, body: { preconditions: { uid } } }),
    })),
    ...names.validating.map((name) => ({
      name,
      read: () => api.readValidatingWebhookConfiguration({ name }),
      remove: (uid?: string) =>
        api.deleteValidatingWebhookConfiguration({ name, body: { preconditions: { uid } } }),
    })),
  ];
  for (const kind of kinds) {
    try {
      const current = await kind.read();
      const registeredBy = current.metadata?.annotations?.[DEV_OWNER_ANNOTATION];
      if (owner && registeredBy && registeredBy !== owner) {
        log.info(
          { configuration: kind.name, owner: registeredBy },
          'webhook configuration is another run’s: left',
        );
        continue;
      }
      await kind.remove(current.metadata?.uid);
    } catch (err) {
      if (apiErrorCode(err) !== 404 && apiErrorCode(err) !== 409)
        log.warn({ err: apiErrorMessage(err) }, 'could not remove a webhook configuration');
    }
  }
}
