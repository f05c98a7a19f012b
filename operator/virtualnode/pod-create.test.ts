/** What a failed create means for the pod, as a table: fail now, wait, report a missing reference, or retry. */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  InsufficientCapacityError,
  InvalidPodSpecError,
  NotFoundError,
  ThrottledError,
} from '../providers/errors.ts';
import {
  classifyCreateError,
  createBackoffMs,
  missingReferenceBackoffMs,
  missingReferenceReport,
} from './pod-create.ts';
import { MissingReferenceError } from './resolve.ts';

describe('classifyCreateError', () => {
  const missing = new MissingReferenceError('secret "creds" not found', { container: 'app' });
  it.each([
    [new InvalidPodSpecError('spec.x: no'), { kind: 'fail', reason: 'UnsupportedPodSpec' }],
    [new InsufficientCapacityError('no stock'), { kind: 'fail', reason: 'InsufficientCapacity' }],
    [new ThrottledError('slow down', { retryAfterMs: 2500 }), { kind: 'throttled', requeueAfter: 2500 }],
    [missing, { kind: 'missingReference', err: missing }],
    [new NotFoundError('gone'), { kind: 'retry', detail: 'gone' }],
    [new Error('connection reset'), { kind: 'retry', detail: 'connection reset' }],
  ])('%s → %o', (err, outcome) => {
    expect(classifyCreateError(err, 'fake')).toMatchObject(outcome);
  });

  it('names the provider and its message when the pod fails at once', () => {
    expect(classifyCreateError(new InsufficientCapacityError('no stock'), 'eci')).toMatchObject({
      message: 'provider eci has no capacity for this pod: no stock',
    });
  });
});

describe('backoff', () => {
  it.each([
    [1, 1000, 1000],
    [2, 2000, 2000],
    [5, 16_000, 16_000],
    [6, 32_000, 30_000],
    [7, 60_000, 30_000],
    [20, 60_000, 30_000],
  ])('attempt %i: a refused create waits %i ms, a missing reference %i ms', (attempts, create, reference) => {
    expect(createBackoffMs(attempts)).toBe(create);
    expect(missingReferenceBackoffMs(attempts)).toBe(reference);
  });
});

describe('missingReferenceReport', () => {
  const pod: V1Pod = {
    metadata: { name: 'web', namespace: 'shop', uid: 'u' },
    spec: { initContainers: [{ name: 'init' }], containers: [{ name: 'app' }] },
  };
  it('reports a missing volume source as FailedMount with the pod ContainerCreating', () => {
    const r = missingReferenceReport(
      pod,
      new MissingReferenceError('configmap "c" not found', { volume: 'v' }),
      '10.0.0.1',
    );
    expect(r.failedMount).toBe('MountVolume.SetUp failed for volume "v" : configmap "c" not found');
    expect(r.containerEvent).toBeUndefined();
    expect(r.status.phase).toBe('Pending');
  });
  it('reports a missing env reference on the init container that needs it', () => {
    const r = missingReferenceReport(
      pod,
      new MissingReferenceError('secret "s" not found', { container: 'init' }),
      '10.0.0.1',
    );
    expect(r.containerEvent).toEqual({
      type: 'Warning',
      reason: 'Failed',
      message: 'Error: secret "s" not found',
      fieldPath: 'spec.initContainers{init}',
    });
    expect(r.status.initContainerStatuses?.[0]?.state?.waiting?.reason).toBe('CreateContainerConfigError');
  });
});
