/**
 * The pod controller's kubelet-like reporting without a cluster: container lifecycle Events derived or left to the
 * provider, missing references reported as a kubelet does, and Event writes bounded during a burst.
 */
import type { CoreV1Api, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeProvider } from '../providers/fake/fake-provider.ts';
import type { EventRecorder } from '../shared/events.ts';
import { SupervisedInformer, type InformerLike } from '../shared/informer.ts';
import { waitFor } from '../shared/wait.ts';
import { podStatusFrom } from './pod-status.ts';
import { PodController } from './pods.ts';
import type { ResolverSource } from './resolve.ts';

/** An informer that lists `pods` once and never changes. */
class StaticInformer implements InformerLike<V1Pod> {
  readonly #handlers = new Map<string, ((obj: V1Pod) => void)[]>();
  readonly #pods: V1Pod[];
  constructor(pods: V1Pod[]) {
    this.#pods = pods;
  }
  on(verb: string, cb: (obj: never) => void): void {
    this.#handlers.set(verb, [...(this.#handlers.get(verb) ?? []), cb as (obj: V1Pod) => void]);
  }
  async start(): Promise<void> {
    for (const p of this.#pods) for (const cb of this.#handlers.get('add') ?? []) cb(p);
  }
  async stop(): Promise<void> {}
}

interface Recorded {
  reason: string;
  note: string;
  fieldPath?: string;
  pod: string;
}

const pod = (name: string, extra: Partial<NonNullable<V1Pod['spec']>['containers'][number]> = {}): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `uid-${name}` },
  spec: { nodeName: 'vn', containers: [{ name: 'app', image: 'nginx:1.27', ...extra }] },
});

const resolver: ResolverSource = {
  configMap: async () => undefined,
  secret: async () => undefined,
  services: async () => [],
  kubernetesService: async () => undefined,
  token: async () => 'token',
};

let controller: PodController | undefined;
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
});

/** Starts a controller over `pods`; Events and status patches are recorded, Event writes take `eventMs`. */
function start(
  provider: FakeProvider,
  pods: V1Pod[],
  eventWrite: () => Promise<void> = async () => {},
  patchError: () => Error | undefined = () => undefined,
) {
  const events: Recorded[] = [];
  const statuses = new Map<string, V1PodStatus>();
  const recorder = {
    record: async (
      regarding: { name: string; fieldPath?: string },
      _t: string,
      reason: string,
      _a: string,
      note: string,
    ) => {
      events.push({ reason, note, fieldPath: regarding.fieldPath, pod: regarding.name });
      await eventWrite();
    },
  } as unknown as EventRecorder;
  const core = {
    listEventForAllNamespaces: async () => ({ items: [], metadata: {} }),
    patchNamespacedPodStatus: async (req: { name: string; body: { status: V1PodStatus } }) => {
      const err = patchError();
      if (err) throw err;
      statuses.set(req.name, req.body.status);
      return {};
    },
  } as unknown as CoreV1Api;
  controller = new PodController({
    nodeName: 'vn',
    hostIP: '10.0.0.1',
    provider,
    podClient: core,
    recordedEvents: core,
    events: recorder,
    resolver,
    pods: new SupervisedInformer<V1Pod>({
      name: 'pods',
      makeInformer: () => new StaticInformer(pods),
    }),
  });
  return { events, statuses, started: controller.start() };
}

describe('pod controller, kubelet-like reporting', () => {
  it('records Pulling, Pulled, Created, Started for a provider that reports only states', async () => {
    const { events, started } = start(new FakeProvider(), [pod('web')]);
    await started;
    await waitFor('Started', 5000, async () => events.some((e) => e.reason === 'Started'));
    expect(events.map((e) => e.reason)).toEqual(['Pulling', 'Pulled', 'Created', 'Started']);
    expect(events.every((e) => e.fieldPath === 'spec.containers{app}')).toBe(true);
  });

  it('records the Events of a status only once it is written, and once', async () => {
    let failing = 3;
    const { events, statuses, started } = start(new FakeProvider(), [pod('web')], undefined, () =>
      failing-- > 0 ? new Error('apiserver unavailable') : undefined,
    );
    await started;
    await waitFor('the status written', 10_000, async () => statuses.has('web'));
    await waitFor('Started', 5000, async () => events.some((e) => e.reason === 'Started'));
    expect(events.map((e) => e.reason)).toEqual(['Pulling', 'Pulled', 'Created', 'Started']);
  });

  it('records nothing again for a pod whose status was written before a restart', async () => {
    const provider = new FakeProvider();
    const web = pod('web');
    const report = await provider.create(web);
    const written: V1Pod = { ...web, status: podStatusFrom(web, report, '10.0.0.1') };
    const { events, started } = start(provider, [written]);
    await started;
    provider.appendLog({ uid: 'uid-web', namespace: 'shop', name: 'web' }, 'app', 'still running');
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual([]);
  });

  it('derives none for a provider whose own events are the container Events (ECI)', async () => {
    const provider = Object.assign(new FakeProvider(), { reportsContainerEvents: true });
    const { events, started } = start(provider, [pod('web')]);
    await started;
    await waitFor('the sandbox', 5000, async () => provider.size === 1);
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
  });

  it('reports a missing env reference as CreateContainerConfigError and a Failed Event, not a Failed pod', async () => {
    const p = pod('needs-env', {
      env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'k' } } }],
    });
    const provider = new FakeProvider();
    const { events, statuses, started } = start(provider, [p]);
    await started;
    await waitFor('the status', 5000, async () => statuses.has('needs-env'));
    const status = statuses.get('needs-env')!;
    expect(status.phase).toBe('Pending');
    expect(status.containerStatuses?.[0]?.state).toEqual({
      waiting: { reason: 'CreateContainerConfigError', message: 'secret "creds" not found' },
    });
    expect(events).toContainEqual({
      reason: 'Failed',
      note: 'Error: secret "creds" not found',
      fieldPath: 'spec.containers{app}',
      pod: 'needs-env',
    });
    expect(provider.createCalls).toBe(0);
  });

  it('reports a missing volume source as FailedMount and keeps the pod ContainerCreating', async () => {
    const p: V1Pod = {
      ...pod('needs-vol'),
      spec: { ...pod('needs-vol').spec!, volumes: [{ name: 'conf', configMap: { name: 'cfg' } }] },
    };
    const { events, statuses, started } = start(new FakeProvider(), [p]);
    await started;
    await waitFor('the status', 5000, async () => statuses.has('needs-vol'));
    expect(statuses.get('needs-vol')!.containerStatuses?.[0]?.state).toEqual({
      waiting: { reason: 'ContainerCreating' },
    });
    expect(events).toContainEqual({
      reason: 'FailedMount',
      note: 'MountVolume.SetUp failed for volume "conf" : configmap "cfg" not found',
      fieldPath: undefined,
      pod: 'needs-vol',
    });
  });

  it('writes a burst’s Events a few at a time, every one of them', async () => {
    let inFlight = 0;
    let most = 0;
    const pods = Array.from({ length: 50 }, (_, i) => pod(`web-${i}`));
    const { events, started } = start(new FakeProvider(), pods, async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight -= 1;
    });
    await started;
    await waitFor('200 Events', 10_000, async () => events.length === 200);
    expect(most).toBeLessThanOrEqual(4);
  });
});
