import type { CoreV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { EVENT_TTL_MS, indexRecordedEvents, isNewProviderEvent } from './provider-events.ts';

const at = (iso: string) => new Date(iso);
const recordedEvent = (over: Partial<CoreV1Event> & { eventTime?: Date }): CoreV1Event =>
  ({
    metadata: { name: 'e', namespace: 'ns' },
    involvedObject: { kind: 'Pod', name: 'web', namespace: 'ns', uid: 'uid-1' },
    reason: 'Scheduled',
    message: 'Successfully assigned to cn-hangzhou-a',
    reportingComponent: 'spillway.dev/virtual-node',
    reportingInstance: 'vn-eci',
    ...over,
  }) as CoreV1Event;

describe('provider events after a restart', () => {
  const index = indexRecordedEvents(
    [
      recordedEvent({ eventTime: at('2026-01-01T10:00:01.500Z') }),
      // A repeat of the same event, aggregated into a series: its last observation counts.
      recordedEvent({
        reason: 'BackOff',
        message: 'Back-off restarting failed container app',
        eventTime: at('2026-01-01T10:01:00Z'),
        series: { count: 3, lastObservedTime: at('2026-01-01T10:05:00Z') },
      }),
      // Another node's Event says nothing about what this node recorded.
      recordedEvent({
        reason: 'Started',
        message: 'Started',
        reportingInstance: 'vn-other',
        eventTime: at('2026-01-01T10:00:02Z'),
      }),
    ],
    'vn-eci',
  );
  const startedAt = at('2026-01-01T10:30:00Z').getTime();
  const event = (reason: string, message: string, timestamp?: string) => ({
    reason,
    message,
    ...(timestamp && { timestamp: at(timestamp) }),
  });

  it('skips an occurrence the node recorded before the restart', () => {
    const scheduled = event('Scheduled', 'Successfully assigned to cn-hangzhou-a', '2026-01-01T10:00:01Z');
    expect(isNewProviderEvent(scheduled, 'uid-1', index, startedAt)).toBe(false);
    expect(isNewProviderEvent(scheduled, 'uid-2', index, startedAt)).toBe(true);
  });

  it('records a later occurrence of a recorded event', () => {
    const backOff = (t: string) => event('BackOff', 'Back-off restarting failed container app', t);
    expect(isNewProviderEvent(backOff('2026-01-01T10:04:00Z'), 'uid-1', index, startedAt)).toBe(false);
    expect(isNewProviderEvent(backOff('2026-01-01T10:06:00Z'), 'uid-1', index, startedAt)).toBe(true);
  });

  it('does not take another node instance’s Events for its own', () => {
    expect(
      isNewProviderEvent(event('Started', 'Started', '2026-01-01T10:00:02Z'), 'uid-1', index, startedAt),
    ).toBe(true);
  });

  it('does not record as news an unrecorded occurrence older than Events live', () => {
    const old = new Date(startedAt - EVENT_TTL_MS - 1000).toISOString();
    expect(isNewProviderEvent(event('Started', 'Started', old), 'uid-9', index, startedAt)).toBe(false);
  });

  it('knows an event whose recorded note was cut at 1,024 characters', () => {
    const long = 'x'.repeat(1500);
    const cut = indexRecordedEvents(
      [
        recordedEvent({
          reason: 'Failed',
          message: long.slice(0, 1024),
          eventTime: at('2026-01-01T10:00:05Z'),
        }),
      ],
      'vn-eci',
    );
    expect(isNewProviderEvent(event('Failed', long, '2026-01-01T10:00:04Z'), 'uid-1', cut, startedAt)).toBe(
      false,
    );
  });

  it('records an event without a timestamp: it happened when delivered', () => {
    expect(isNewProviderEvent(event('EciSpecAdjusted', 'ignored'), 'uid-1', index, startedAt)).toBe(true);
  });
});
