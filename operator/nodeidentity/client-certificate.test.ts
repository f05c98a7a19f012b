import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { componentLogger } from '../shared/log.ts';
import { createCA, issueCert } from '../shared/pki.ts';
import { startNodeIdentity, type NodeIdentityOptions } from './client-certificate.ts';

const bootstrap = () => {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: 'Y2E=' }],
    users: [{ name: 'sa', token: 't' }],
    contexts: [{ name: 'sa', cluster: 'c', user: 'sa' }],
    currentContext: 'sa',
  });
  return kc;
};

const oneCert = (ca: Awaited<ReturnType<typeof createCA>>, now = new Date()) =>
  issueCert(ca, { subject: 'CN=system:node:vn, O=system:nodes', usage: 'client', validForMs: 1000_000, now });

describe('startNodeIdentity', () => {
  afterEach(() => vi.useRealTimers());

  it('renews at 70–90 % of the lifetime and swaps the new certificate into the same KubeConfig', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const ca = await createCA('test-ca', 3600_000);
    // A signer that issues 1000 s certificates (notBefore one minute back, as pki.ts backdates), made up front:
    // key generation runs off the event loop, where fake timers do not wait for it.
    const certs = await Promise.all([0, 1].map(() => oneCert(ca)));
    const issued: string[] = [];
    const request: NodeIdentityOptions['request'] = async () => {
      const pair = certs[issued.length]!;
      issued.push(pair.certPem);
      return { certificatePem: pair.certPem, keyPem: pair.keyPem, csrName: `vn-${issued.length}` };
    };
    const identity = await startNodeIdentity({
      bootstrap: bootstrap(),
      nodeName: 'vn',
      logger: componentLogger('test'),
      jitter: () => 0.5,
      request,
    });
    const cert = () => Buffer.from(identity.kc.getCurrentUser()!.certData!, 'base64').toString();
    expect(identity.kc.getCurrentUser()!.name).toBe('system:node:vn');
    expect(identity.kc.getCurrentCluster()!.server).toBe('https://127.0.0.1:6443');
    expect(cert()).toBe(issued[0]);
    // Lifetime 1060 s from one minute back: 80 % of it is 788 s from now.
    expect(identity.renewAt.getTime() - Date.now()).toBe(788_000);
    await vi.advanceTimersByTimeAsync(787_000);
    expect(issued).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(issued).toHaveLength(2);
    expect(cert()).toBe(issued[1]);
    expect(identity.certificatePem).toBe(issued[1]);
    identity.stop();
  });

  it('retries a failed renewal every 30 s, keeping the current certificate meanwhile', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const ca = await createCA('test-ca', 3600_000);
    // The second is issued when the renewal finally succeeds: two retries after the first renewal time.
    const certs = [await oneCert(ca), await oneCert(ca, new Date(Date.now() + 800_000))];
    let fail = false;
    let calls = 0;
    let good = 0;
    const request: NodeIdentityOptions['request'] = async () => {
      calls += 1;
      if (fail) throw new Error('CSR denied');
      const pair = certs[good++]!;
      return { certificatePem: pair.certPem, keyPem: pair.keyPem, csrName: 'x' };
    };
    const identity = await startNodeIdentity({
      bootstrap: bootstrap(),
      nodeName: 'vn',
      logger: componentLogger('test'),
      jitter: () => 0,
      request,
    });
    const first = identity.certificatePem;
    fail = true;
    await vi.advanceTimersByTimeAsync(identity.renewAt.getTime() - Date.now() + 1);
    expect(calls).toBe(2);
    expect(identity.certificatePem).toBe(first);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toBe(3);
    fail = false;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toBe(4);
    expect(identity.certificatePem).not.toBe(first);
    identity.stop();
  });
});
