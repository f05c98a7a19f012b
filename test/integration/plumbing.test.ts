/**
 * The shared operator plumbing against the real control plane: the client-node 2.x behaviours it works around
 * (informers that stop on errors, MicroTime Lease times, strategic-merge defaults, subresource paths) only show
 * against a real apiserver.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  type V1ConfigMap,
  type V1Namespace,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyObject, applyStatus } from '../../operator/shared/apply.ts';
import { informerFor } from '../../operator/shared/informer.ts';
import { LeaderElector } from '../../operator/shared/leader.ts';
import { createLogger } from '../../operator/shared/log.ts';
import { testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });

describe('shared plumbing on the local control plane', () => {
  let cluster: TestCluster;
  let ns: { name: string; remove: () => Promise<void> };
  let core: CoreV1Api;

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    ns = await createTestNamespace(cluster.kc, 'plumbing');
  });
  afterAll(async () => ns?.remove());

  it('applies a ConfigMap with a field manager: create, update, and drop a field it stopped sending', async () => {
    const objects = KubernetesObjectApi.makeApiClient(cluster.kc);
    const manager = 'spillway-plumbing-test';
    const desired = (data: Record<string, string>): V1ConfigMap => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'applied', namespace: ns.name, labels: { app: 'plumbing' } },
      data,
    });

    const created = await applyObject(objects, desired({ a: '1' }), { fieldManager: manager });
    expect(created.data).toEqual({ a: '1' });

    const updated = await applyObject(objects, desired({ a: '2', b: '3' }), { fieldManager: manager });
    expect(updated.data).toEqual({ a: '2', b: '3' });
    expect(updated.metadata?.resourceVersion).not.toBe(created.metadata?.resourceVersion);

    const stored = await core.readNamespacedConfigMap({ name: 'applied', namespace: ns.name });
    const entry = stored.metadata?.managedFields?.find((f) => f.manager === manager);
    expect(entry).toMatchObject({ manager, operation: 'Apply' });
    expect(entry?.fieldsV1).toMatchObject({
      'f:data': { 'f:a': {}, 'f:b': {} },
      'f:metadata': { 'f:labels': { 'f:app': {} } },
    });

    // Server-side apply removes fields the manager owned and no longer sends.
    const pruned = await applyObject(objects, desired({ b: '3' }), { fieldManager: manager });
    expect(pruned.data).toEqual({ b: '3' });
  });

  it('applies status to the status subresource under its own field manager', async () => {
    const objects = KubernetesObjectApi.makeApiClient(cluster.kc);
    const manager = 'spillway-plumbing-status';
    await applyStatus<V1Namespace>(
      objects,
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns.name },
        status: { conditions: [{ type: 'SpillwayPlumbingTest', status: 'True', reason: 'Applied' }] },
      },
      { fieldManager: manager },
    );
    const stored = await core.readNamespace({ name: ns.name });
    expect(stored.status?.conditions).toContainEqual(
      expect.objectContaining({ type: 'SpillwayPlumbingTest', status: 'True', reason: 'Applied' }),
    );
    expect(stored.metadata?.managedFields?.find((f) => f.manager === manager)).toMatchObject({
      operation: 'Apply',
      subresource: 'status',
    });
  });

  it('hands leadership to a second candidate within the lease duration once the leader stops', async () => {
    const leases = cluster.kc.makeApiClient(CoordinationV1Api);
    const timing = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 1_000 };
    const events: string[] = [];
    const candidate = (identity: string) =>
      new LeaderElector({
        leases,
        namespace: ns.name,
        name: 'plumbing-leader',
        identity,
        ...timing,
        logger,
        onStartedLeading: () => void events.push(`${identity} started`),
        onStoppedLeading: () => void events.push(`${identity} stopped`),
      });
    const a = candidate('candidate-a');
    const b = candidate('candidate-b');
    try {
      a.start();
      await waitFor('candidate-a to lead', 10_000, async () => a.isLeader());
      b.start();
      // Longer than the lease: a's renewals (MicroTime renewTime, resourceVersion preconditions) must be accepted,
      // or b would take over.
      await sleep(timing.leaseDurationMs + 1_000);
      expect(b.isLeader()).toBe(false);
      const held = await leases.readNamespacedLease({ name: 'plumbing-leader', namespace: ns.name });
      expect(held.spec?.holderIdentity).toBe('candidate-a');
      expect(String(held.spec?.renewTime)).toMatch(MICRO_TIME);

      await a.stop();
      await waitFor(
        'candidate-b to lead',
        timing.leaseDurationMs + timing.retryPeriodMs * 1.2 + 1_000,
        async () => b.isLeader(),
      );
      expect(events).toEqual(['candidate-a started', 'candidate-a stopped', 'candidate-b started']);
      const taken = await leases.readNamespacedLease({ name: 'plumbing-leader', namespace: ns.name });
      expect(taken.spec).toMatchObject({ holderIdentity: 'candidate-b', leaseTransitions: 1 });
    } finally {
      await a.stop();
      await b.stop();
    }
    const released = await leases.readNamespacedLease({ name: 'plumbing-leader', namespace: ns.name });
    expect(released.spec?.holderIdentity).toBe('');
  });

  it('keeps an informer running across a kube-apiserver restart', async () => {
    const informer = informerFor<V1ConfigMap>(
      cluster.kc,
      'plumbing-configmaps',
      {
        path: `/api/v1/namespaces/${ns.name}/configmaps`,
        list: () => core.listNamespacedConfigMap({ namespace: ns.name }),
      },
      { initialBackoffMs: 200, maxBackoffMs: 2_000, logger },
    );
    const seen = new Set<string>();
    informer.onAdd((cm) => seen.add(cm.metadata!.name!));
    const create = (name: string) =>
      core.createNamespacedConfigMap({
        namespace: ns.name,
        body: { metadata: { name }, data: { at: name } },
      });
    try {
      informer.start();
      await informer.synced;
      await create('before-restart');
      await waitFor('the informer to see before-restart', 10_000, async () => seen.has('before-restart'));

      await cluster.stop('kube-apiserver');
      // client-node's informer stops for good on the connection error; the supervisor must have noticed.
      await waitFor('the informer to be restarted', 30_000, async () => informer.restarts > 0);
      await cluster.start('kube-apiserver');

      await create('after-restart');
      await waitFor('the informer to see after-restart', 30_000, async () => seen.has('after-restart'));
      expect(informer.get(ns.name, 'after-restart')?.data).toEqual({ at: 'after-restart' });
      expect(informer.get(ns.name, 'before-restart')).toBeDefined();
      // The rest of the control plane reconnects too: a new Deployment still becomes Available. (Later
      // tests share this cluster; they must not meet controllers still backing off from the restart.)
      const apps = cluster.kc.makeApiClient(AppsV1Api);
      await apps.createNamespacedDeployment({
        namespace: ns.name,
        body: {
          metadata: { name: 'after-restart' },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: 'after-restart' } },
            template: {
              metadata: { labels: { app: 'after-restart' } },
              spec: { containers: [{ name: 'c', image: 'nginx' }] },
            },
          },
        },
      });
      await waitFor(
        'a Deployment created after the restart to be Available',
        90_000,
        async () =>
          ((await apps.readNamespacedDeployment({ namespace: ns.name, name: 'after-restart' })).status
            ?.availableReplicas ?? 0) === 1,
      );
    } finally {
      await informer.stop();
    }
  });
});
