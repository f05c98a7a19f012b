/**
 * The I/O shell around tls.ts: reads the TLS Secret, writes what `planTls` decides (create-if-absent, then
 * compare-and-swap on resourceVersion, so racing replicas converge on one CA), injects the trust bundle into
 * spillway's webhook configurations, and hands every new serving certificate to the server (hot reload).
 */
import { apiErrorMessage } from '../operator/shared/client.ts';
import type {
  AdmissionregistrationV1Api,
  CoreV1Api,
  V1MutatingWebhookConfiguration,
  V1Secret,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import type { KeyPair } from '../operator/shared/pki.ts';
import { applyTlsPlan, mergeBundles, planTls, type StoredTls, type TlsSettings } from './tls.ts';

/** The Secret as last read: its contents (if complete), the serving pair alone (enough in external mode). */
export interface TlsSnapshot {
  tls: StoredTls | undefined;
  cert: KeyPair | undefined;
  resourceVersion: string;
  /** The Secret itself, so that an update keeps its other metadata. */
  object: V1Secret;
}

/** Where the TLS material is kept. */
export interface TlsStore {
  /** The Secret, or undefined when there is none. */
  read(): Promise<TlsSnapshot | undefined>;
  /** Creates the Secret; false when it already exists (another replica was first). */
  create(tls: StoredTls): Promise<boolean>;
  /** Replaces the Secret if it is still at `previous.resourceVersion`; false on a conflict. */
  update(tls: StoredTls, previous: TlsSnapshot): Promise<boolean>;
}

/** Something that must trust the CA bundle (a webhook configuration). */
export interface CaBundleTarget {
  inject(caBundlePem: string, now: Date): Promise<void>;
}

/** Options of {@link TlsKeeper}. */
export interface TlsKeeperOptions {
  store: TlsStore;
  settings: TlsSettings;
  /**
   * `self-managed` (default): create, rotate and inject. `external`: another issuer (cert-manager, with its CA
   * injector) writes the Secret; the keeper only loads and hot-reloads it.
   */
  mode?: 'self-managed' | 'external';
  bundleTargets?: CaBundleTarget[];
  /** Called with every serving certificate that differs from the last one (e.g. `server.setCertificate`). */
  onCertificate?: (cert: KeyPair) => void;
  /** How often to re-read the Secret (other replicas' rotations arrive this way); default 60 s. */
  checkIntervalMs?: number;
  clock?: () => Date;
  log?: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

const SECRET_KEYS = {
  ca: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
  bundle: 'ca-bundle.crt',
};
const CA_CREATED_AT = 'spillway.dev/ca-created-at';

/** Keeps the webhook server's TLS valid; run one per replica. */
export class TlsKeeper {
  #options: TlsKeeperOptions;
  #cert: KeyPair | undefined;
  #bundle: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: TlsKeeperOptions) {
    this.#options = options;
  }

  /** The serving certificate last loaded (start the server with it after the first `reconcile`). */
  get certificate(): KeyPair | undefined {
    return this.#cert;
  }

  /** The CA bundle last loaded (for a webhook configuration's `caBundle` at registration). */
  get caBundlePem(): string | undefined {
    return this.#bundle;
  }

  /**
   * One pass: bring the Secret up to date (retrying on conflicts), load it, inject the bundle.
   * @returns when the next pass is due
   */
  async reconcile(): Promise<Date> {
    const now = this.#options.clock?.() ?? new Date();
    const interval = this.#options.checkIntervalMs ?? 60_000;
    const { namespace, secretName } = this.#options.settings;
    for (let attempt = 0; attempt < 5; attempt++) {
      const snap = await this.#options.store.read();
      if (this.#options.mode === 'external') {
        if (!snap?.cert) throw new Error(`Secret ${namespace}/${secretName} has no tls.crt/tls.key yet`);
        this.#load(snap.cert, snap.tls?.caBundlePem);
        return new Date(now.getTime() + interval);
      }
      const plan = planTls(snap?.tls, this.#options.settings, now);
      if (plan.action === 'keep') {
        const tls = snap!.tls!;
        this.#load(tls.cert, tls.caBundlePem);
        for (const target of this.#options.bundleTargets ?? []) await target.inject(tls.caBundlePem, now);
        return new Date(Math.min(plan.recheckAt.getTime(), now.getTime() + interval));
      }
      const next = (await applyTlsPlan(snap?.tls, plan, this.#options.settings, now))!;
      const written = snap
        ? await this.#options.store.update(next, snap)
        : await this.#options.store.create(next);
      if (written)
        this.#options.log?.info(
          { secretName: `${namespace}/${secretName}`, action: plan.action },
          plan.reason,
        );
      // Written or not (another replica won the race), read again and plan from what is stored now.
    }
    throw new Error(`could not settle the TLS Secret ${namespace}/${secretName} after 5 attempts`);
  }

  /** Runs `reconcile` now and then whenever it is due; errors are logged and retried within 10 s. */
  start(): void {
    const tick = async () => {
      let delay: number;
      try {
        delay = (await this.reconcile()).getTime() - Date.now();
      } catch (err) {
        this.#options.log?.error(
          { err: apiErrorMessage(err) },
          'keeping the webhook certificate failed; retrying',
        );
        delay = 10_000;
      }
      if (this.#stopped) return;
      this.#timer = setTimeout(
        tick,
        Math.max(1_000, Math.min(delay, this.#options.checkIntervalMs ?? 60_000)),
      );
      this.#timer.unref();
    };
    this.#stopped = false;
    void tick();
  }

  /** Stops the periodic passes. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #load(cert: KeyPair, bundle: string | undefined): void {
    this.#bundle = bundle;
    if (this.#cert?.certPem === cert.certPem && this.#cert.keyPem === cert.keyPem) return;
    this.#cert = cert;
    this.#options.onCertificate?.(cert);
  }
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) =>
  s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');
const statusOf = (err: unknown) => (err as { code?: number } | null)?.code;

/** Decodes a TLS Secret; `tls` is undefined unless every key spillway writes is present. */
export function decodeTlsSecret(secret: V1Secret): TlsSnapshot {
  const d = secret.data ?? {};
  const [ca, caKey, cert, key, bundle] = [
    SECRET_KEYS.ca,
    SECRET_KEYS.caKey,
    SECRET_KEYS.cert,
    SECRET_KEYS.key,
    SECRET_KEYS.bundle,
  ].map((k) => unb64(d[k]));
  const createdAt = new Date(secret.metadata?.annotations?.[CA_CREATED_AT] ?? 0);
  const pair = cert && key ? { certPem: cert, keyPem: key } : undefined;
  const complete = ca && caKey && pair && bundle !== undefined && !Number.isNaN(createdAt.getTime());
  return {
    tls: complete
      ? { ca: { certPem: ca, keyPem: caKey }, cert: pair, caBundlePem: bundle, caCreatedAt: createdAt }
      : undefined,
    // External issuers (cert-manager) put the CA in ca.crt and have no bundle key.
    cert: pair,
    resourceVersion: secret.metadata?.resourceVersion ?? '',
    object: secret,
  };
}

/** Encodes TLS material into a `kubernetes.io/tls` Secret, keeping `base`'s other metadata and data. */
export function encodeTlsSecret(tls: StoredTls, name: string, namespace: string, base?: V1Secret): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      ...base?.metadata,
      name,
      namespace,
      labels: {
        'app.kubernetes.io/name': 'spillway',
        'app.kubernetes.io/component': 'webhook',
        ...base?.metadata?.labels,
      },
      annotations: { ...base?.metadata?.annotations, [CA_CREATED_AT]: tls.caCreatedAt.toISOString() },
    },
    data: {
      ...base?.data,
      [SECRET_KEYS.ca]: b64(tls.ca.certPem),
      [SECRET_KEYS.caKey]: b64(tls.ca.keyPem),
      [SECRET_KEYS.cert]: b64(tls.cert.certPem),
      [SECRET_KEYS.key]: b64(tls.cert.keyPem),
      [SECRET_KEYS.bundle]: b64(tls.caBundlePem),
    },
  };
}

/** A {@link TlsStore} on a Secret, through client-node's CoreV1Api. */
export function kubeTlsStore(core: CoreV1Api, namespace: string, name: string): TlsStore {
  return {
    async read() {
      try {
        return decodeTlsSecret(await core.readNamespacedSecret({ name, namespace }));
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    },
    async create(tls) {
      try {
        await core.createNamespacedSecret({ namespace, body: encodeTlsSecret(tls, name, namespace) });
        return true;
      } catch (err) {
        if (statusOf(err) === 409) return false;
        throw err;
      }
    },
    async update(tls, previous) {
      // metadata.resourceVersion comes from `previous`: the apiserver refuses the write if anyone wrote since.
      const body = encodeTlsSecret(tls, name, namespace, previous.object);
      try {
        await core.replaceNamespacedSecret({ name, namespace, body });
        return true;
      } catch (err) {
        if (statusOf(err) === 409) return false;
        throw err;
      }
    },
  };
}

type WebhookConfiguration = V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration;

/**
 * A JSON Patch that sets every webhook's caBundle to the merge of its current bundle and ours, guarded by a
 * `test` of the resourceVersion it was computed from (webhook indices are only valid for that version); empty
 * when nothing changes. A patch, not a replace, so that fields this client-node version does not model survive.
 */
export function caBundlePatch(config: WebhookConfiguration, bundlePem: string, now: Date): object[] {
  const ops: object[] = [];
  (config.webhooks ?? []).forEach((webhook, i) => {
    const merged = b64(mergeBundles(unb64(webhook.clientConfig.caBundle) ?? '', bundlePem, now));
    if (webhook.clientConfig.caBundle !== merged) {
      ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: merged });
    }
  });
  if (ops.length === 0) return ops;
  return [{ op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion }, ...ops];
}

/**
 * Bundle targets for spillway's webhook configurations, by name. A configuration that does not exist yet is
 * skipped (it gets the bundle when it is registered); a write that lost a race is retried on a fresh read.
 */
export function webhookBundleTargets(
  api: AdmissionregistrationV1Api,
  names: { mutating?: string[]; validating?: string[] },
): CaBundleTarget[] {
  const target = (
    read: () => Promise<WebhookConfiguration>,
    patch: (ops: object[]) => Promise<unknown>,
    name: string,
  ): CaBundleTarget => ({
    async inject(bundlePem, now) {
      for (let attempt = 0; attempt < 3; attempt++) {
        let config: WebhookConfiguration;
        try {
          config = await read();
        } catch (err) {
          if (statusOf(err) === 404) return;
          throw err;
        }
        const ops = caBundlePatch(config, bundlePem, now);
        if (ops.length === 0) return;
        try {
          await patch(ops);
          return;
        } catch (err) {
          // 409: resourceVersion moved; 422: the `test` op failed. Both mean "read again".
          if (statusOf(err) !== 409 && statusOf(err) !== 422) throw err;
        }
      }
      throw new Error(`could not update the caBundle of webhook configuration ${name}: it keeps changing`);
    },
  });
  return [
    ...(names.mutating ?? []).map((name) =>
      target(
        () => api.readMutatingWebhookConfiguration({ name }),
        (body) => api.patchMutatingWebhookConfiguration({ name, body }),
        name,
      ),
    ),
    ...(names.validating ?? []).map((name) =>
      target(
        () => api.readValidatingWebhookConfiguration({ name }),
        (body) => api.patchValidatingWebhookConfiguration({ name, body }),
        name,
      ),
    ),
  ];
}
