import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KeyPair } from '../operator/shared/pki.ts';
import { WebhookServer } from './server.ts';
import { splitPem, type StoredTls, type TlsSettings } from './tls.ts';
import {
  caBundlePatch,
  decodeTlsSecret,
  encodeTlsSecret,
  TlsKeeper,
  type CaBundleTarget,
  type TlsSnapshot,
  type TlsStore,
} from './tls-keeper.ts';

const DAY = 86_400_000;
const settings: TlsSettings = {
  namespace: 'spillway-system',
  secretName: 'webhook-tls',
  serviceName: 'spillway-webhook',
  ipAddresses: ['127.0.0.1'],
  caValidForMs: 300 * DAY,
  certValidForMs: 30 * DAY,
};

/** A Secret in memory with resourceVersion semantics; every call yields, so concurrent keepers interleave. */
class MemoryStore implements TlsStore {
  secret: V1Secret | undefined;
  version = 0;
  writes: string[] = [];
  /** Runs before a write lands (to simulate another replica writing in between). */
  beforeWrite?: () => void;

  async read(): Promise<TlsSnapshot | undefined> {
    await Promise.resolve();
    return this.secret ? decodeTlsSecret(structuredClone(this.secret)) : undefined;
  }
  async create(tls: StoredTls): Promise<boolean> {
    await Promise.resolve();
    this.beforeWrite?.();
    if (this.secret) return false;
    this.#store(encodeTlsSecret(tls, settings.secretName, settings.namespace), 'create');
    return true;
  }
  async update(tls: StoredTls, previous: TlsSnapshot): Promise<boolean> {
    await Promise.resolve();
    this.beforeWrite?.();
    if (previous.resourceVersion !== String(this.version)) return false;
    this.#store(encodeTlsSecret(tls, settings.secretName, settings.namespace, previous.object), 'update');
    return true;
  }
  #store(secret: V1Secret, verb: string) {
    this.version++;
    secret.metadata!.resourceVersion = String(this.version);
    this.secret = secret;
    this.writes.push(verb);
  }
}

class RecordingTarget implements CaBundleTarget {
  bundles: string[] = [];
  async inject(bundle: string): Promise<void> {
    if (this.bundles.at(-1) !== bundle) this.bundles.push(bundle);
  }
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

function keeper(
  store: TlsStore,
  now: () => Date,
  extra: Partial<ConstructorParameters<typeof TlsKeeper>[0]> = {},
) {
  const loaded: KeyPair[] = [];
  const k = new TlsKeeper({ store, settings, clock: now, onCertificate: (c) => loaded.push(c), ...extra });
  return { k, loaded };
}

describe('TlsKeeper', () => {
  it('creates the Secret, loads the certificate, injects the bundle', async () => {
    const store = new MemoryStore();
    const target = new RecordingTarget();
    const now = new Date('2030-01-01T00:00:00Z');
    const { k, loaded } = keeper(store, () => now, { bundleTargets: [target] });
    const next = await k.reconcile();
    expect(store.writes).toEqual(['create']);
    expect(loaded).toHaveLength(1);
    expect(k.certificate).toEqual(loaded[0]);
    expect(target.bundles).toEqual([k.caBundlePem]);
    expect(next.getTime() - now.getTime()).toBe(60_000);
    // A second pass changes nothing and does not reload.
    await k.reconcile();
    expect(store.writes).toEqual(['create']);
    expect(loaded).toHaveLength(1);
  });

  it('racing replicas end up with one CA and the same certificate', async () => {
    const store = new MemoryStore();
    const now = () => new Date('2030-01-01T00:00:00Z');
    const replicas = [keeper(store, now), keeper(store, now), keeper(store, now)];
    await Promise.all(replicas.map((r) => r.k.reconcile()));
    expect(store.writes).toEqual(['create']);
    const certs = new Set(replicas.map((r) => r.k.certificate!.certPem));
    expect(certs.size).toBe(1);
  });

  it('re-reads and re-plans when another replica wrote in between', async () => {
    const store = new MemoryStore();
    let now = new Date('2030-01-01T00:00:00Z');
    await keeper(store, () => now).k.reconcile();
    now = new Date(now.getTime() + 25 * DAY); // the serving certificate is due
    let interfered = false;
    store.beforeWrite = () => {
      if (!interfered) store.secret!.metadata!.resourceVersion = String(++store.version); // someone else's write
      interfered = true;
    };
    const { k } = keeper(store, () => now);
    await k.reconcile();
    expect(store.writes).toEqual(['create', 'update']);
    expect(k.certificate!.certPem).toEqual(decodeTlsSecret(store.secret!).cert!.certPem);
  });

  it('rotates the CA in order: trust first, certificate later, old CA kept', async () => {
    const store = new MemoryStore();
    const target = new RecordingTarget();
    let now = new Date('2030-01-01T00:00:00Z');
    const events: string[] = [];
    const k = new TlsKeeper({
      store,
      settings,
      clock: () => now,
      bundleTargets: [
        { inject: async (b) => (await target.inject(b), void events.push(`bundle:${splitPem(b).length}`)) },
      ],
      onCertificate: (c) => events.push(`cert:${new X509Certificate(c.certPem).issuer}`),
    });
    // Live day by day (serving certificates renew every ~20 days) until the CA is rotated.
    for (let day = 0; !k.caBundlePem || splitPem(k.caBundlePem).length < 2; day++) {
      expect(day).toBeLessThan(250);
      now = new Date(Date.UTC(2030, 0, 1) + day * DAY);
      await k.reconcile();
    }
    const firstCA = fingerprint(splitPem(target.bundles[0]!)[0]!);
    const bundle = splitPem(k.caBundlePem!).map(fingerprint);
    expect(bundle).toHaveLength(2);
    expect(bundle[1]).toBe(firstCA);
    // The certificate is still from the first CA until the trust delay has passed...
    const issuerBefore = new X509Certificate(k.certificate!.certPem).issuer;
    now = new Date(now.getTime() + 3 * 60_000);
    await k.reconcile();
    const issuerAfter = new X509Certificate(k.certificate!.certPem).issuer;
    expect(issuerAfter).not.toBe(issuerBefore);
    // ...and the bundle with both CAs was injected before the first certificate from the new CA was loaded.
    const firstNewCert = events.indexOf(`cert:${issuerAfter}`);
    expect(events.slice(0, firstNewCert)).toContain('bundle:2');
  });

  it('external mode only loads what another issuer wrote', async () => {
    const store = new MemoryStore();
    await keeper(store, () => new Date()).k.reconcile();
    const writes = store.writes.length;
    const { k, loaded } = keeper(store, () => new Date(Date.now() + 400 * DAY), { mode: 'external' });
    await k.reconcile(); // self-managed would rotate everything now
    expect(store.writes).toHaveLength(writes);
    expect(loaded).toHaveLength(1);
    await expect(
      keeper(new MemoryStore(), () => new Date(), { mode: 'external' }).k.reconcile(),
    ).rejects.toThrow(/Secret spillway-system\/webhook-tls has no tls\.crt\/tls\.key yet/);
  });

  it('hot-reloads a renewed certificate into the running server', async () => {
    const store = new MemoryStore();
    let now = new Date(Date.now() - 25 * DAY); // certificates issued "now" must be valid for a real TLS client
    const ref: { server?: WebhookServer } = {};
    const k = new TlsKeeper({
      store,
      settings,
      clock: () => now,
      onCertificate: (c) => ref.server?.setCertificate(c),
    });
    await k.reconcile();
    const server = (ref.server = await WebhookServer.start({ handlers: {}, certificate: k.certificate! }));
    const peer = () =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: server.port, ca: k.caBundlePem }, () => {
          resolve(s.getPeerX509Certificate()!.fingerprint256);
          s.end();
        });
        s.on('error', reject);
      });
    try {
      const before = await peer();
      now = new Date(now.getTime() + 25 * DAY);
      await k.reconcile();
      const after = await peer();
      expect(after).not.toBe(before);
      expect(after).toBe(fingerprint(k.certificate!.certPem));
    } finally {
      await server.close(100);
    }
  });
});

describe('Secret encoding and bundle patches', () => {
  it('round-trips through a kubernetes.io/tls Secret, keeping foreign metadata and keys', async () => {
    const store = new MemoryStore();
    await keeper(store, () => new Date()).k.reconcile();
    const snap = decodeTlsSecret(store.secret!);
    const base: V1Secret = {
      ...store.secret!,
      metadata: { ...store.secret!.metadata, labels: { team: 'x' } },
      data: { ...store.secret!.data, extra: 'eA==' },
    };
    const again = encodeTlsSecret(snap.tls!, 'webhook-tls', 'spillway-system', base);
    expect(again.type).toBe('kubernetes.io/tls');
    expect(again.metadata!.labels).toMatchObject({ team: 'x', 'app.kubernetes.io/name': 'spillway' });
    expect(again.data!.extra).toBe('eA==');
    expect(decodeTlsSecret(again).tls).toEqual(snap.tls);
  });

  it('decodes a cert-manager Secret as a serving pair without spillway state', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const snap = decodeTlsSecret({ data: { 'tls.crt': b64('C'), 'tls.key': b64('K'), 'ca.crt': b64('A') } });
    expect(snap.tls).toBeUndefined();
    expect(snap.cert).toEqual({ certPem: 'C', keyPem: 'K' });
  });

  it('caBundlePatch sets every webhook, guarded by resourceVersion, and is empty when nothing changes', async () => {
    const store = new MemoryStore();
    const { k } = keeper(store, () => new Date());
    await k.reconcile();
    const config: V1MutatingWebhookConfiguration = {
      metadata: { name: 'spillway', resourceVersion: '42' },
      webhooks: [
        { name: 'a.spillway.dev', clientConfig: {}, admissionReviewVersions: ['v1'], sideEffects: 'None' },
        { name: 'b.spillway.dev', clientConfig: {}, admissionReviewVersions: ['v1'], sideEffects: 'None' },
      ],
    };
    const ops = caBundlePatch(config, k.caBundlePem!, new Date()) as {
      op: string;
      path: string;
      value: string;
    }[];
    expect(ops.map((o) => [o.op, o.path])).toEqual([
      ['test', '/metadata/resourceVersion'],
      ['add', '/webhooks/0/clientConfig/caBundle'],
      ['add', '/webhooks/1/clientConfig/caBundle'],
    ]);
    expect(Buffer.from(ops[1]!.value, 'base64').toString()).toBe(k.caBundlePem);
    for (const w of config.webhooks!) w.clientConfig.caBundle = ops[1]!.value;
    expect(caBundlePatch(config, k.caBundlePem!, new Date())).toEqual([]);
  });
});
