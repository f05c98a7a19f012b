/** Container Events during a burst: a few written at once, every one of them, and past the backlog dropped. */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { PodEvents, type PodEventRecorder } from './pod-events.ts';
import { settle } from './pod-world.fixtures.ts';

const pod = (name: string): V1Pod => ({ metadata: { name, namespace: 'shop', uid: `uid-${name}` } });
const started = {
  type: 'Normal',
  reason: 'Started',
  message: 'Started container app',
  fieldPath: 'spec.containers{app}',
} as const;

/** A recorder whose writes finish only when the test releases them. */
function blockingRecorder() {
  const pending: (() => void)[] = [];
  const written: string[] = [];
  let inFlight = 0;
  let most = 0;
  const recorder: PodEventRecorder = {
    record: async (regarding) => {
      most = Math.max(most, ++inFlight);
      await new Promise<void>((r) => pending.push(r));
      inFlight -= 1;
      written.push(regarding.name);
    },
  };
  const releaseAll = async () => {
    while (pending.length > 0) {
      for (const r of pending.splice(0)) r();
      await settle();
    }
  };
  return { recorder, written, pending, releaseAll, most: () => most };
}

describe('PodEvents', () => {
  it('writes a burst’s container Events four at a time, in order, every one of them', async () => {
    const r = blockingRecorder();
    const events = new PodEvents(r.recorder);
    for (let i = 0; i < 200; i++) events.container(pod(`web-${i}`), started);
    expect(r.pending).toHaveLength(4);
    await r.releaseAll();
    expect(r.written).toEqual(Array.from({ length: 200 }, (_, i) => `web-${i}`));
    expect(r.most()).toBe(4);
  });

  it('drops container Events past a backlog of 1,000, as the kubelet’s broadcaster does', async () => {
    const r = blockingRecorder();
    const events = new PodEvents(r.recorder);
    for (let i = 0; i < 1010; i++) events.container(pod(`web-${i}`), started);
    await r.releaseAll();
    expect(r.written).toHaveLength(1004);
    expect(r.written.at(-1)).toBe('web-1003');
  });
});
