import { describe, expect, it } from 'vitest';
import type { Condition } from '../../api/elasticworkload.ts';
import { ConditionType } from '../../api/elasticworkload.ts';
import { findCondition, isConditionTrue, kubernetesTime, setCondition } from './conditions.ts';

const t0 = new Date('2026-01-01T10:00:00.123Z');
const t1 = new Date('2026-01-01T10:05:00.000Z');

describe('setCondition', () => {
  const ready: Condition = {
    type: ConditionType.Ready,
    status: 'False',
    reason: 'UnitsNotReady',
    message: '2 of 6 replicas are not ready',
    observedGeneration: 1,
    lastTransitionTime: kubernetesTime(t0),
  };

  it('adds a new condition stamped now, at second precision', () => {
    const out = setCondition(
      undefined,
      { type: 'Bursting', status: 'True', reason: 'Overflow', message: 'm' },
      t0,
    );
    expect(out).toEqual([
      {
        type: 'Bursting',
        status: 'True',
        reason: 'Overflow',
        message: 'm',
        lastTransitionTime: '2026-01-01T10:00:00Z',
      },
    ]);
  });

  it('keeps lastTransitionTime when only the reason or message changes', () => {
    const out = setCondition(
      [ready],
      { ...ready, reason: 'SourceNotReady', message: '1 of 6', observedGeneration: 2 },
      t1,
    );
    expect(out).toEqual([{ ...ready, reason: 'SourceNotReady', message: '1 of 6', observedGeneration: 2 }]);
  });

  it('moves lastTransitionTime when the status changes', () => {
    const out = setCondition([ready], { ...ready, status: 'True', reason: 'AllReady', message: '' }, t1);
    expect(out[0]!.lastTransitionTime).toBe('2026-01-01T10:05:00Z');
  });

  it('keeps the other conditions and their order, and does not modify its input', () => {
    const blocked: Condition = {
      ...ready,
      type: ConditionType.BurstBlocked,
      status: 'False',
      reason: 'TemplateAllowed',
    };
    const input = [ready, blocked];
    const out = setCondition(input, { ...ready, status: 'True', reason: 'AllReady' }, t1);
    expect(out.map((c) => c.type)).toEqual(['Ready', 'BurstBlocked']);
    expect(out[1]).toBe(blocked);
    expect(input[0]!.status).toBe('False');
  });

  it('finds conditions', () => {
    expect(findCondition([ready], 'Ready')).toBe(ready);
    expect(findCondition(undefined, 'Ready')).toBeUndefined();
    expect(isConditionTrue([ready], 'Ready')).toBe(false);
    expect(isConditionTrue(setCondition([ready], { ...ready, status: 'True' }, t1), 'Ready')).toBe(true);
  });
});
