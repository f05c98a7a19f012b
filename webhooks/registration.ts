/**
 * Dev mode (`spillway run`): the process registers its own webhook configurations, and keeps them as it
 * registered them. Someone deleting them (`kubectl delete mutatingwebhookconfiguration spillway`) or editing them
 * would otherwise leave spillway-labelled pods unjudged (or judged by a URL that is not this process) until the
 * next restart; the registration watches both and registers again when they go or change.
 */
import type {
  KubeConfig,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import type { Clients } from '../operator/shared/client.ts';
import { apiErrorMessage } from '../operator/shared/client.ts';
import { informerFor, type SupervisedInformer } from '../operator/shared/informer.ts';
import type { Logger } from '../operator/shared/log.ts';
import { registerWebhookConfigurations, type WebhookConfigurationOptions } from './configurations.ts';
import { acceptsConnections, DEV_OWNER_ANNOTATION } from './ownership.ts';

type Configuration = V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration;

/**
 * What a registration decides about a configuration: its webhooks without CA bundles (the TLS keeper rotates
 * those) and its owner. Two configurations with the same fingerprint send the same requests to the same server.
 */
export function fingerprint(c: Configuration | undefined): string {
  if (!c) return '';
  const webhooks = (c.webhooks ?? []).map((w) => {
    const { caBundle: _ca, ...clientConfig } = w.clientConfig;
    return { ...w, clientConfig };
  });
  return JSON.stringify({ owner: c.metadata?.annotations?.[DEV_OWNER_ANNOTATION] ?? '', webhooks });
}

/**
 * Whether to register again over `current`, which differs from what this process registered: yes when it is gone,
 * or edited by hand, or left by a dead process; no when another live `spillway run` registered it (two runs that
 * started at the same moment), since taking it back would start a fight neither wins. That one is logged instead.
 */
export async function shouldTakeBack(
  current: Configuration | undefined,
  identity: string | undefined,
  isLive: (url: string) => Promise<boolean>,
): Promise<boolean> {
  const owner = current?.metadata?.annotations?.[DEV_OWNER_ANNOTATION];
  if (!current || !owner || owner === identity) return true;
  const url = current.webhooks?.find((w) => w.clientConfig.url)?.clientConfig.url;
  return !url || !(await isLive(url));
}

/** A registration kept in place until {@link KeptRegistration.stop}. */
export interface KeptRegistration {
  /** Stops watching (before deregistering: nothing must re-register what is being removed). */
  stop(): Promise<void>;
}

/**
 * Registers the configurations, then watches them and registers again when one is deleted or its fingerprint
 * differs from the one the registration left. Resolves once registered and watching.
 */
export async function keepRegistered(
  kc: KubeConfig,
  api: Clients['admissionregistration'],
  options: WebhookConfigurationOptions,
  log: Logger,
): Promise<KeptRegistration> {
  const name = options.name ?? 'spillway';
  const expected = { mutating: '', validating: '' };
  let stopped = false;
  let chain = Promise.resolve();

  const register = async () => {
    await registerWebhookConfigurations(api, options);
    // Compare later states with what the apiserver stored (with its defaults), not with what was sent.
    const [m, v] = await Promise.all([
      api.readMutatingWebhookConfiguration({ name }),
      api.readValidatingWebhookConfiguration({ name }),
    ]);
    expected.mutating = fingerprint(m);
    expected.validating = fingerprint(v);
  };
  const read = (kind: 'mutating' | 'validating') =>
    (kind === 'mutating'
      ? api.readMutatingWebhookConfiguration({ name })
      : api.readValidatingWebhookConfiguration({ name })
    ).catch(() => undefined);
  // One registration at a time, and only if still needed when its turn comes: the echo of a re-registration
  // (or a delete of both configurations) must not cause another.
  const reassert = (kind: 'mutating' | 'validating', why: string) => {
    chain = chain.then(async () => {
      if (stopped) return;
      const current = await read(kind);
      if (fingerprint(current) === expected[kind]) return;
      if (!(await shouldTakeBack(current, options.owner, (url) => acceptsConnections(url)))) {
        log.error(
          {
            configuration: `${kind}webhookconfiguration/${name}`,
            owner: current?.metadata?.annotations?.[DEV_OWNER_ANNOTATION],
          },
          'another spillway run registered the webhooks over ours: not taking them back; stop one of the two',
        );
        return;
      }
      log.warn(
        { configuration: `${kind}webhookconfiguration/${name}`, why },
        'registering the webhooks again',
      );
      await register().catch((err: unknown) =>
        log.error({ err: apiErrorMessage(err) }, 'could not register the webhook configurations again'),
      );
    });
  };

  await register();
  const selector = `metadata.name=${name}`;
  const mutating: SupervisedInformer<V1MutatingWebhookConfiguration> = informerFor(
    kc,
    'webhook-registration-m',
    {
      path: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      fieldSelector: selector,
      list: () => api.listMutatingWebhookConfiguration({ fieldSelector: selector }),
    },
  );
  const validating: SupervisedInformer<V1ValidatingWebhookConfiguration> = informerFor(
    kc,
    'webhook-registration-v',
    {
      path: '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
      fieldSelector: selector,
      list: () => api.listValidatingWebhookConfiguration({ fieldSelector: selector }),
    },
  );
  for (const [kind, informer] of [
    ['mutating', mutating],
    ['validating', validating],
  ] as const) {
    const check = (c: Configuration) => {
      // Our own writes' echoes match; a CA rotation changes only what the fingerprint leaves out.
      if (fingerprint(c) !== expected[kind]) reassert(kind, 'changed');
    };
    (informer as SupervisedInformer<Configuration>).onAdd(check);
    (informer as SupervisedInformer<Configuration>).onUpdate(check);
    (informer as SupervisedInformer<Configuration>).onDelete(() => reassert(kind, 'deleted'));
    informer.start();
  }
  await Promise.all([mutating.synced, validating.synced]);
  return {
    stop: async () => {
      stopped = true;
      await Promise.all([mutating.stop(), validating.stop()]);
      await chain;
    },
  };
}
