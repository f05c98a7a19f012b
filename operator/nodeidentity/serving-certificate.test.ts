import { KubeConfig } from '@kubernetes/client-node';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { componentLogger, type Logger } from '../shared/log.ts';
import { createCA, issueCert, type KeyPair } from '../shared/pki.ts';
import {
  startServingCertificate,
  type PendingServingRequest,
  type ServingCertificate,
  type ServingCertificateOptions,
  type ServingPair,
} from './serving-certificate.ts';

const names = { dnsNames: ['vn'], ipAddresses: ['10.0.0.7'] };
const nodeKc = () => {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: 'Y2E=' }],
    users: [{ name: 'system:node:vn', token: 't' }],
    contexts: [{ name: 'n', cluster: 'c', user: 'system:node:vn' }],
    currentContext: 'n',
  });
  return kc;
};

const oneCert = (ca: KeyPair, now = new Date()) =>
  issueCert(ca, {
    subject: 'CN=system:node:vn, O=system:nodes',
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    usage: 'server',
    validForMs: 1000_000,
    now,
  });

/** A fake signer: each request is answered by hand (`issue`, `deny`) or at once when `autoIssue` is set. */
class FakeServingSigner {
  readonly requests: { csrName: string; issue: (p: KeyPair) => void; deny: (reason: string) => void }[] = [];
  autoIssue: KeyPair[] = [];
  readonly request: NonNullable<ServingCertificateOptions['request']> = async () => {
    const csrName = `vn-${this.requests.length + 1}`;
    let issue!: (p: KeyPair) => void;
    let deny!: (reason: string) => void;
    const issued = new Promise<{ certPem: string; keyPem: string }>((resolve, reject) => {
      issue = (p) => resolve({ certPem: p.certPem, keyPem: p.keyPem });
      deny = (reason) => reject(new Error(`the request ${csrName} was denied: ${reason}`));
    });
    this.requests.push({ csrName, issue, deny });
    const next = this.autoIssue.shift();
    if (next) issue(next);
    return { csrName, issued } satisfies PendingServingRequest;
  };
}

/** The next certificate the kubelet API is handed. */
const nextChange = (serving: ServingCertificate) =>
  new Promise<ServingPair>((resolve) => serving.onChange(resolve));

function recordingLogger(): { logger: Logger; warnings: string[] } {
  const logger = componentLogger('test');
  const warnings: string[] = [];
  vi.spyOn(logger, 'warn').mockImplementation(((_obj: unknown, msg?: string) => {
    warnings.push(msg ?? '');
  }) as never);
  return { logger, warnings };
}

describe('startServingCertificate', () => {
  let serving: ServingCertificate | undefined;
  afterEach(() => {
    serving?.stop();
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('serves the issued certificate and renews it at 70–90 % of its lifetime', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const ca = await createCA('cluster-ca', 3600_000);
    // Made up front: key generation runs off the event loop, where fake timers do not wait for it.
    const [first, second] = await Promise.all([oneCert(ca), oneCert(ca)]);
    const signer = new FakeServingSigner();
    signer.autoIssue = [first!, second!];
    serving = await startServingCertificate({
      kc: nodeKc(),
      nodeName: 'vn',
      names,
      logger: componentLogger('test'),
      jitter: () => 0.5,
      request: signer.request,
    });
    expect(serving.current).toEqual({ certPem: first!.certPem, keyPem: first!.keyPem, issued: true });
    // Lifetime 1060 s from one minute back: 80 % of it is 788 s from now.
    expect(serving.nextAttemptAt!.getTime() - Date.now()).toBe(788_000);
    const changed = nextChange(serving);
    await vi.advanceTimersByTimeAsync(787_000);
    expect(signer.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await changed).toEqual({ certPem: second!.certPem, keyPem: second!.keyPem, issued: true });
    expect(signer.requests).toHaveLength(2);
  });

  it('serves a self-signed certificate when nobody approves in time, says so, and swaps the issued one in', async () => {
    const ca = await createCA('cluster-ca', 3600_000);
    const signer = new FakeServingSigner();
    const { logger, warnings } = recordingLogger();
    serving = await startServingCertificate({
      kc: nodeKc(),
      nodeName: 'vn',
      names,
      waitMs: 20,
      logger,
      request: signer.request,
    });
    expect(serving.current.issued).toBe(false);
    const selfSigned = new x509.X509Certificate(serving.current.certPem);
    expect(selfSigned.issuer).toBe('CN=vn-kubelet-ca');
    expect(selfSigned.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'vn' },
      { type: 'ip', value: '10.0.0.7' },
    ]);
    expect(warnings.join('\n')).toContain('kubectl certificate approve vn-1');
    // Approved later: the same request's certificate comes in, without asking again.
    const changed = nextChange(serving);
    const pair = await oneCert(ca);
    signer.requests[0]!.issue(pair);
    expect(await changed).toEqual({ certPem: pair.certPem, keyPem: pair.keyPem, issued: true });
    expect(signer.requests).toHaveLength(1);
  });

  it('asks again after a refusal and serves what the next request gets', async () => {
    const ca = await createCA('cluster-ca', 3600_000);
    const signer = new FakeServingSigner();
    const { logger, warnings } = recordingLogger();
    const pending = startServingCertificate({
      kc: nodeKc(),
      nodeName: 'vn',
      names,
      waitMs: 60_000,
      retryMs: 20,
      logger,
      request: signer.request,
    });
    const pair = await oneCert(ca);
    await vi.waitUntil(() => signer.requests.length === 1);
    signer.requests[0]!.deny('UnexpectedNames');
    signer.autoIssue = [pair];
    // A refusal does not wait out `waitMs`: the stand-in is served at once.
    serving = await pending;
    expect(serving.current.issued).toBe(false);
    expect(warnings.join('\n')).toContain('self-signed');
    const changed = nextChange(serving);
    expect(await changed).toEqual({ certPem: pair.certPem, keyPem: pair.keyPem, issued: true });
    expect(signer.requests).toHaveLength(2);
  });
});
