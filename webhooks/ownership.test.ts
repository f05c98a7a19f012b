import type { V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { mutatingWebhookConfiguration } from './configurations.ts';
import { DEV_OWNER_ANNOTATION, otherSpillway, refusal } from './ownership.ts';
import { fingerprint, shouldTakeBack } from './registration.ts';

const dev = (owner: string, url = 'https://127.0.0.1:4443'): V1MutatingWebhookConfiguration =>
  mutatingWebhookConfiguration({ client: { url }, ownNamespace: 'spillway-system', owner });

const chart: V1MutatingWebhookConfiguration = {
  metadata: {
    name: 'spillway',
    labels: { 'app.kubernetes.io/name': 'spillway', 'app.kubernetes.io/managed-by': 'Helm' },
    annotations: {
      'meta.helm.sh/release-name': 'spillway',
      'meta.helm.sh/release-namespace': 'spillway-system',
    },
  },
  webhooks: [],
};

describe('another spillway in the cluster', () => {
  const live = async () => true;
  const dead = async () => false;

  it('records the dev-mode owner on the configurations it registers', () => {
    expect(dev('host-1').metadata?.annotations?.[DEV_OWNER_ANNOTATION]).toBe('host-1');
  });

  it('is the chart installation, whatever else is there, with how to remove it', async () => {
    const other = await otherSpillway([dev('host-1'), chart], 'me-2', live);
    expect(other).toEqual({
      kind: 'chart',
      configuration: 'spillway',
      release: 'spillway',
      namespace: 'spillway-system',
    });
    expect(refusal(other!)).toMatch(
      /installed in this cluster by Helm.*helm uninstall spillway -n spillway-system/,
    );
  });

  it('is a live dev-mode run of another process, named with its URL', async () => {
    const other = await otherSpillway([dev('host-1')], 'me-2', live);
    expect(other).toMatchObject({ kind: 'dev', owner: 'host-1' });
    expect(refusal(other!)).toMatch(
      /another spillway run \(host-1, serving https:\/\/127\.0\.0\.1:4443\/.*Stop it first/,
    );
  });

  it('is nobody when the dev-mode registration is our own or its server is gone (a kill -9 leftover)', async () => {
    expect(await otherSpillway([dev('me-2')], 'me-2', live)).toBeUndefined();
    expect(await otherSpillway([dev('host-1')], 'me-2', dead)).toBeUndefined();
    expect(await otherSpillway([], 'me-2', live)).toBeUndefined();
  });
});

describe('the registration fingerprint', () => {
  it('ignores CA bundles (the TLS keeper rotates them) and sees URLs, rules and owners', () => {
    const a = dev('me');
    const rotated = structuredClone(a);
    for (const w of rotated.webhooks!) w.clientConfig.caBundle = 'bmV3';
    expect(fingerprint(rotated)).toBe(fingerprint(a));
    expect(fingerprint(dev('me', 'https://127.0.0.1:9999'))).not.toBe(fingerprint(a));
    expect(fingerprint(dev('other'))).not.toBe(fingerprint(a));
    const edited = structuredClone(a);
    edited.webhooks![0]!.failurePolicy = 'Ignore';
    expect(fingerprint(edited)).not.toBe(fingerprint(a));
    expect(fingerprint(undefined)).toBe('');
  });
});

describe('taking the registration back', () => {
  const live = async () => true;
  const dead = async () => false;

  it('takes back what was deleted, edited by hand, or left by a dead run', async () => {
    expect(await shouldTakeBack(undefined, 'me', live)).toBe(true);
    const edited = dev('me');
    edited.metadata!.annotations = {};
    expect(await shouldTakeBack(edited, 'me', live)).toBe(true);
    expect(await shouldTakeBack(dev('me'), 'me', live)).toBe(true);
    expect(await shouldTakeBack(dev('gone-1'), 'me', dead)).toBe(true);
  });

  it('leaves a live other run its registration instead of fighting over it', async () => {
    expect(await shouldTakeBack(dev('other-2'), 'me', live)).toBe(false);
  });
});
