import { CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decideLease, LeaderElector, type LeaseDecision } from './leader.ts';
import { createLogger } from './log.ts';
import {
  recordingConfiguration,
  statusBody,
  type FakeResponse,
  type RecordedRequest,
} from './recording-http.ts';

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/**
 * An in-memory Lease endpoint with the apiserver's rules that matter here: resourceVersion preconditions (409),
 * AlreadyExists on a second create (409), 404 for a missing Lease, and 400 for times that are not MicroTime.
 * Each candidate gets its own client so that a test can make one of them fail or hang.
 */
function fakeLeaseServer() {
  let stored: Record<string, unknown> | undefined;
  let rv = 0;
  const failing = new Set<string>();
  const hanging = new Set<string>();
  const writes: { who: string; method: string; body: V1Lease }[] = [];

  const handle = (who: string, req: RecordedRequest): FakeResponse | Promise<FakeResponse> => {
    if (hanging.has(who)) return new Promise(() => {});
    if (failing.has(who)) return statusBody(500, 'InternalError', 'etcdserver: request timed out');
    if (req.method === 'GET') {
      return stored ? { status: 200, body: stored } : statusBody(404, 'NotFound', 'leases "ctl" not found');
    }
    const body = JSON.parse(req.body!) as V1Lease & { spec: Record<string, unknown> };
    for (const field of ['renewTime', 'acquireTime'] as const) {
      const value = body.spec[field];
      if (value !== undefined && !MICRO_TIME.test(String(value))) {
        return statusBody(400, 'BadRequest', `spec.${field}: cannot parse "${String(value)}"`);
      }
    }
    if (req.method === 'POST' && stored)
      return statusBody(409, 'AlreadyExists', 'leases "ctl" already exists');
    if (req.method === 'PUT') {
      if (!stored) return statusBody(404, 'NotFound', 'leases "ctl" not found');
      const current = (stored.metadata as { resourceVersion: string }).resourceVersion;
      if (body.metadata?.resourceVersion !== current) {
        return statusBody(
          409,
          'Conflict',
          'the object has been modified; please apply your changes to the latest version',
        );
      }
    }
    writes.push({ who, method: req.method, body });
    stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
    return { status: req.method === 'POST' ? 201 : 200, body: stored };
  };

  return {
    client: (who: string) =>
      new CoordinationV1Api(recordingConfiguration((req) => handle(who, req)).configuration),
    lease: () =>
      stored as (V1Lease & { spec: { holderIdentity?: string; leaseTransitions?: number } }) | undefined,
    failing,
    hanging,
    writes,
  };
}

const silent = createLogger({ level: 'silent' });

function candidate(server: ReturnType<typeof fakeLeaseServer>, identity: string, events: string[]) {
  return new LeaderElector({
    leases: server.client(identity),
    namespace: 'spillway-system',
    name: 'ctl',
    identity,
    leaseDurationMs: 4_000,
    renewDeadlineMs: 3_000,
    retryPeriodMs: 1_000,
    logger: silent,
    onStartedLeading: (signal) => {
      events.push(`${identity} started`);
      signal.addEventListener('abort', () => events.push(`${identity} signal aborted`));
    },
    onStoppedLeading: () => void events.push(`${identity} stopped`),
  });
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0);
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('decideLease', () => {
  const t0 = Date.parse('2030-01-01T00:00:00Z');
  const lease = (holderIdentity: string, renewedAt = t0, leaseDurationSeconds = 15): V1Lease => ({
    spec: {
      holderIdentity,
      leaseDurationSeconds,
      // As read back from the apiserver: a string, not a Date.
      renewTime: new Date(renewedAt).toISOString().replace('Z', '000Z') as never,
    },
  });

  it.each<[string, V1Lease | undefined, number, number | undefined, LeaseDecision]>([
    ['no lease yet', undefined, t0, undefined, { action: 'acquire', reason: 'missing' }],
    ['a released lease', lease(''), t0, undefined, { action: 'acquire', reason: 'released' }],
    ['our own lease', lease('me'), t0 + 60_000, undefined, { action: 'renew' }],
    [
      'a fresh lease of another',
      lease('other'),
      t0 + 5_000,
      undefined,
      { action: 'wait', holder: 'other', expiresInMs: 10_000 },
    ],
    [
      'an expired lease of another',
      lease('other'),
      t0 + 15_000,
      undefined,
      { action: 'acquire', reason: 'expired' },
    ],
    [
      'its own duration, not ours',
      lease('other', t0, 4),
      t0 + 4_000,
      undefined,
      { action: 'acquire', reason: 'expired' },
    ],
    // The holder's clock is 30 s behind: by renewTime it looks expired, but we saw it change just now.
    [
      'skew: judged from when we saw it',
      lease('other', t0 - 30_000),
      t0 + 1_000,
      t0,
      { action: 'wait', holder: 'other', expiresInMs: 14_000 },
    ],
  ])('%s', (_name, l, now, observedAt, expected) => {
    expect(
      decideLease({ lease: l, identity: 'me', now, observedAt, defaultLeaseDurationMs: 15_000 }),
    ).toEqual(expected);
  });
});

describe('LeaderElector', () => {
  it('creates the lease, sending MicroTimes the apiserver accepts', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    const a = candidate(server, 'a', events);
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.isLeader()).toBe(true);
    expect(events).toEqual(['a started']);
    expect(server.writes[0]).toMatchObject({ who: 'a', method: 'POST' });
    const spec = server.lease()!.spec as Record<string, unknown>;
    expect(spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 4, leaseTransitions: 0 });
    expect(spec.renewTime).toMatch(MICRO_TIME);
    expect(spec.acquireTime).toMatch(MICRO_TIME);
    await a.stop();
  });

  it('renews every retry period, keeping acquireTime', async () => {
    const server = fakeLeaseServer();
    const a = candidate(server, 'a', []);
    a.start();
    await vi.advanceTimersByTimeAsync(3_500);
    expect(server.writes.map((w) => w.method)).toEqual(['POST', 'PUT', 'PUT', 'PUT']);
    const [first, last] = [server.writes[0]!.body.spec!, server.writes[3]!.body.spec!];
    expect(last.acquireTime).toBe(first.acquireTime);
    expect(Date.parse(String(last.renewTime)) - Date.parse(String(first.renewTime))).toBe(3_000);
    await a.stop();
  });

  it('hands over at the next retry when the leader stops and releases', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    const a = candidate(server, 'a', events);
    const b = candidate(server, 'b', events);
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    b.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(b.isLeader()).toBe(false);

    await a.stop();
    expect(server.lease()!.spec.holderIdentity).toBe('');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.isLeader()).toBe(true);
    expect(events).toEqual(['a started', 'a signal aborted', 'a stopped', 'b started']);
    expect(server.lease()!.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await b.stop();
  });

  it('takes over a crashed leader only after the lease duration, counted from when the record last changed', async () => {
    const server = fakeLeaseServer();
    const a = candidate(server, 'a', []);
    const b = candidate(server, 'b', []);
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    b.start();
    await vi.advanceTimersByTimeAsync(2_500);
    server.hanging.add('a'); // a's last renewal landed at t=2000; from now on its requests never return
    // t=5900: b first saw a's last record at its read at t=2000 or t=3000, so 4 s have not passed.
    await vi.advanceTimersByTimeAsync(3_400);
    expect(b.isLeader()).toBe(false);
    expect(a.isLeader()).toBe(false); // a gave up at its renew deadline (t=5000)
    await vi.advanceTimersByTimeAsync(1_200);
    expect(b.isLeader()).toBe(true);
    expect(server.lease()!.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    server.hanging.clear();
    await b.stop();
  });

  it('gives up leadership when it cannot renew within the renew deadline', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    const a = candidate(server, 'a', events);
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    server.failing.add('a');
    await vi.advanceTimersByTimeAsync(2_999);
    expect(a.isLeader()).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(a.isLeader()).toBe(false);
    expect(events).toEqual(['a started', 'a signal aborted', 'a stopped']);
    await a.stop();
  });

  it('campaigns again after an outage and leads once the apiserver is back', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    const a = candidate(server, 'a', events);
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    server.failing.add('a');
    await vi.advanceTimersByTimeAsync(30_000); // a 30 s outage: leadership ends at the renew deadline
    expect(a.isLeader()).toBe(false);
    server.failing.clear();
    await vi.advanceTimersByTimeAsync(1_200);
    expect(a.isLeader()).toBe(true);
    expect(events).toEqual(['a started', 'a signal aborted', 'a stopped', 'a started']);
    await a.stop();
    expect(events.at(-1)).toBe('a stopped');
  });

  it('does not start leading again before onStoppedLeading has finished', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    let finishStopping = () => {};
    const a = new LeaderElector({
      leases: server.client('a'),
      namespace: 'spillway-system',
      name: 'ctl',
      identity: 'a',
      leaseDurationMs: 4_000,
      renewDeadlineMs: 3_000,
      retryPeriodMs: 1_000,
      logger: silent,
      onStartedLeading: () => void events.push('started'),
      onStoppedLeading: () =>
        new Promise<void>((resolve) => {
          events.push('stopping');
          finishStopping = () => {
            events.push('stopped');
            resolve();
          };
        }),
    });
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    server.failing.add('a');
    await vi.advanceTimersByTimeAsync(3_000);
    server.failing.clear();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(events).toEqual(['started', 'stopping']);
    finishStopping();
    await vi.advanceTimersByTimeAsync(1_200);
    expect(events).toEqual(['started', 'stopping', 'stopped', 'started']);
    const stopping = a.stop();
    await vi.advanceTimersByTimeAsync(0);
    finishStopping();
    await stopping;
  });

  it('lets exactly one of two racing candidates win', async () => {
    const server = fakeLeaseServer();
    const events: string[] = [];
    const a = candidate(server, 'a', events);
    const b = candidate(server, 'b', events);
    a.start();
    b.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
    expect(events).toHaveLength(1);
    await a.stop();
    await b.stop();
  });

  it('rejects timings that cannot work', () => {
    expect(
      () =>
        new LeaderElector({
          leases: fakeLeaseServer().client('x'),
          namespace: 'ns',
          name: 'ctl',
          identity: 'x',
          leaseDurationMs: 5_000,
          renewDeadlineMs: 6_000,
        }),
    ).toThrow('leaseDuration > renewDeadline > 1.2 × retryPeriod');
  });
});
