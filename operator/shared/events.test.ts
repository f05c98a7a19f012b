import type { EventsV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { EventRecorder, EventType } from './events.ts';

function fakeEventsApi() {
  const created: EventsV1Event[] = [];
  const patched: { name: string; body: { series: { count: number; lastObservedTime: Date } } }[] = [];
  let fail = false;
  return {
    created,
    patched,
    failNext: () => (fail = true),
    api: {
      createNamespacedEvent: async ({ body }: { body: EventsV1Event }) => {
        if (fail) {
          fail = false;
          throw new Error('apiserver down');
        }
        created.push(body);
        return { ...body, metadata: { ...body.metadata, name: `ev-${created.length}` } };
      },
      patchNamespacedEvent: async (req: { name: string; body: never }) => {
        patched.push(req);
        return {} as EventsV1Event;
      },
    },
  };
}

const ew = {
  apiVersion: 'elastic.spillway.dev/v1alpha1',
  kind: 'ElasticWorkload',
  namespace: 'shop',
  name: 'web',
  uid: 'u1',
};

describe('EventRecorder', () => {
  it('creates an Event naming the object, reason, action and controller', async () => {
    const fake = fakeEventsApi();
    const rec = new EventRecorder({
      api: fake.api as never,
      controller: 'spillway.dev/ew',
      instance: 'pod-a',
    });
    await rec.record(ew, EventType.Normal, 'ScaledUnit', 'Scale', 'scaled web-unit-spot to 4');
    expect(fake.created).toHaveLength(1);
    expect(fake.created[0]).toMatchObject({
      regarding: ew,
      type: 'Normal',
      reason: 'ScaledUnit',
      action: 'Scale',
      note: 'scaled web-unit-spot to 4',
      reportingController: 'spillway.dev/ew',
      reportingInstance: 'pod-a',
      metadata: { namespace: 'shop', name: expect.stringMatching(/^web\.[0-9a-f]+$/) },
    });
    // eventTime is a MicroTime: six fractional digits on the wire.
    expect(JSON.stringify(fake.created[0]!.eventTime)).toMatch(/\.\d{6}Z"$/);
  });

  it('turns repeats within ten minutes into a series on one Event', async () => {
    const fake = fakeEventsApi();
    let now = 1_000_000;
    const rec = new EventRecorder({ api: fake.api as never, controller: 'c', instance: 'i', now: () => now });
    await rec.record(ew, EventType.Warning, 'BurstBlocked', 'Block', 'hostNetwork');
    now += 60_000;
    await rec.record(ew, EventType.Warning, 'BurstBlocked', 'Block', 'hostNetwork');
    now += 60_000;
    await rec.record(ew, EventType.Warning, 'BurstBlocked', 'Block', 'hostNetwork');
    expect(fake.created).toHaveLength(1);
    expect(fake.patched.map((p) => [p.name, p.body.series.count])).toEqual([
      ['ev-1', 2],
      ['ev-1', 3],
    ]);
    now += 11 * 60_000;
    await rec.record(ew, EventType.Warning, 'BurstBlocked', 'Block', 'hostNetwork');
    expect(fake.created).toHaveLength(2);
  });

  it('never throws when the apiserver refuses, and reports the error', async () => {
    const fake = fakeEventsApi();
    const errors: unknown[] = [];
    const rec = new EventRecorder({
      api: fake.api as never,
      controller: 'c',
      instance: 'i',
      onError: (e) => errors.push(e),
    });
    fake.failNext();
    await expect(rec.record(ew, EventType.Normal, 'R', 'A', 'n')).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
    await rec.record(ew, EventType.Normal, 'R', 'A', 'n');
    expect(fake.created).toHaveLength(1);
  });
});
