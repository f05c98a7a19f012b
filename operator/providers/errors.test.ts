import { describe, expect, it } from 'vitest';
import {
  InsufficientCapacityError,
  InvalidPodSpecError,
  isInsufficientCapacity,
  isInvalidPodSpec,
  isNotFound,
  isThrottled,
  NotFoundError,
  ThrottledError,
} from './errors.ts';

const key = { uid: 'u-1', namespace: 'default', name: 'web-1' };

describe('provider error guards', () => {
  it.each([
    ['NotFound', new NotFoundError('gone', { key }), isNotFound],
    [
      'InsufficientCapacity',
      new InsufficientCapacityError('no stock', { capacityType: 'spot' }),
      isInsufficientCapacity,
    ],
    ['Throttled', new ThrottledError('slow down', { retryAfterMs: 5000 }), isThrottled],
    [
      'InvalidPodSpec',
      new InvalidPodSpecError('cannot run', { causes: [{ path: 'spec.x', message: 'no' }] }),
      isInvalidPodSpec,
    ],
  ])('recognise %s and nothing else', (_code, err, guard) => {
    const guards = [isNotFound, isInsufficientCapacity, isThrottled, isInvalidPodSpec];
    expect(guards.map((g) => g(err))).toEqual(guards.map((g) => g === guard));
  });

  it('recognise errors from another copy of the module (a plug-in with its own dependencies)', async () => {
    // A query string makes vitest load a second, independent instance of the module.
    const specifier = './errors.ts?another-copy';
    const copy = (await import(specifier)) as typeof import('./errors.ts');
    const foreign = new copy.NotFoundError('gone elsewhere');
    expect(foreign).not.toBeInstanceOf(NotFoundError);
    expect(isNotFound(foreign)).toBe(true);
    expect(copy.isThrottled(new ThrottledError('x'))).toBe(true);
  });

  it('do not trust a bare code: an SDK error with code "NotFound" is not a provider NotFound', () => {
    expect(isNotFound(Object.assign(new Error('x'), { code: 'NotFound' }))).toBe(false);
    expect(isNotFound(undefined)).toBe(false);
    expect(isNotFound('NotFound')).toBe(false);
  });

  it('carry context for messages: the pod key, the retry hint, the causes', () => {
    expect(new NotFoundError('gone', { key, requestId: 'req-1' })).toMatchObject({ key, requestId: 'req-1' });
    expect(new ThrottledError('slow').retryAfterMs).toBe(1000);
    expect(new InsufficientCapacityError('none', { capacityType: 'spot' }).capacityType).toBe('spot');
    expect(
      new InvalidPodSpecError('bad', { causes: [{ path: 'spec.a', message: 'm' }] }).causes,
    ).toHaveLength(1);
    const cause = new Error('sdk');
    expect(new NotFoundError('wrapped', { cause }).cause).toBe(cause);
  });
});
