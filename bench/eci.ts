/**
 * ECI benchmark (issue 7): a Deployment of 500 `burst: always` pods on a virtual node with the `eci` provider,
 * the official SDK talking to the fake ECI endpoint (test/support/fake-eci: signatures verified, lifecycle
 * Scheduling → Pending → Running simulated), on the real control plane. The fake enforces ECI-style per-API
 * quotas server-side, 10 % above the client's default limits (`CreateContainerGroup` and `DeleteContainerGroup`
 * 22/s with a burst of 110 against the client's 20/s and 100), and answers `Throttling.User` beyond them.
 *
 * Three runs on the same quotas:
 * - `client-limits`: the provider as shipped, its client-side token buckets (DEFAULT_RATE_LIMITS) in front of
 *   every action, polling what changed (DescribeContainerGroupStatus/Events with SinceSecond);
 * - `no-client-limits`: the same with the buckets opened to 10 000/s, i.e. what the quota sees without them;
 * - `full-listing`: client limits, but every poll lists all instances (resync every poll), the anchor for what
 *   incremental polling saves.
 *
 * Per run: time to all Running, pods/s, API calls per pod (creates, describes, by the server's count and the
 * client's), throttling answers, client retries, the peak create rate the server saw in any 1 s window, the
 * status calls per second once everything runs (idle), and the same for the teardown (deletes). The virtual node and the fake run in this process (the measure is API calls
 * and their pacing, not CPU); the fake's lifecycle takes milliseconds, so the API path is all that is timed.
 *
 * Then a restart (eci-restart.ts): 1000 instances Running, the node stopped and started again over them; the
 * time until it is registered with its instances adopted, and the DescribeContainerGroups calls that cost.
 *
 *   node bench/eci.ts [--pods 500] [--variants client-limits,no-client-limits] [--restart-instances 1000]
 *                     [--reuse-cluster]          (--variants '' or --restart-instances 0 skip a part)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_RATE_LIMITS, type RateLimit } from '../operator/providers/eci/config.ts';
import { EciProvider } from '../operator/providers/eci/provider.ts';
import { startVirtualNode, type RunningVirtualNode } from '../operator/virtualnode/run.ts';
import type { LocalCluster } from '../test/support/cluster.ts';
import { fakeEciConfig } from '../test/support/fake-eci/provider-config.ts';
import { FakeEci } from '../test/support/fake-eci/server.ts';
import { createTestNamespace } from '../test/support/namespace.ts';
import { freePort } from '../test/support/ports.ts';
import { measureRestart, type RestartResult } from './eci-restart.ts';
import { benchCluster } from './lib/cluster.ts';
import { ms, sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart, lineChart, stack } from './lib/plot.ts';
import {
  deleteAndDrain,
  pinnedDeployment,
  PodProgress,
  waitNodeReady,
  type ProgressSummary,
} from './lib/pod-progress.ts';
import { environment, printTable, writeResult } from './lib/results.ts';
import { nowMs, ratio } from './lib/stats.ts';

const NAME = 'eci';
export const VARIANTS = ['client-limits', 'no-client-limits', 'full-listing'] as const;
export type Variant = (typeof VARIANTS)[number];

/** The server-side quotas (ECI's per-API quota, as the fake enforces it): the client's defaults are 10 % under. */
const SERVER_QUOTAS: Record<string, RateLimit> = Object.fromEntries(
  [
    'CreateContainerGroup',
    'DeleteContainerGroup',
    'DescribeContainerGroups',
    'DescribeContainerGroupStatus',
    'DescribeContainerGroupEvents',
  ].map((a) => {
    const { qps, burst } = DEFAULT_RATE_LIMITS[a]!;
    return [a, { qps: Math.round(qps * 1.1), burst: Math.round(burst * 1.1) }];
  }),
);
const DESCRIBES = [
  'DescribeContainerGroups',
  'DescribeContainerGroupStatus',
  'DescribeContainerGroupEvents',
] as const;
const ACTIONS = ['CreateContainerGroup', ...DESCRIBES, 'DeleteContainerGroup'] as const;
/** How long the idle status-call rate is measured once every pod runs. */
const IDLE_SECONDS = 10;
const THROTTLING = ['Throttling.User', 'Throttling', 'Throttling.Api', 'Degrade.Api'];

/** How often one action was called at the server, sampled every 100 ms (for the rate plot and the peak). */
class CallRate {
  readonly samples: [number, number][] = [];
  readonly #timer: NodeJS.Timeout;
  constructor(fake: FakeEci, action: string, t0: number) {
    const take = () => this.samples.push([(nowMs() - t0) / 1000, fake.calls(action)]);
    take();
    this.#timer = setInterval(take, 100);
  }
  stop(): void {
    clearInterval(this.#timer);
  }
  /** The most calls in any 1 s window. */
  peakPerSecond(): number {
    let peak = 0;
    for (let i = 0, j = 0; j < this.samples.length; j++) {
      while (this.samples[j]![0] - this.samples[i]![0] > 1.0001) i++;
      peak = Math.max(peak, this.samples[j]![1] - this.samples[i]![1]);
    }
    return peak;
  }
  /** Calls per second over time (1 s windows), for the plot. */
  perSecond(): [number, number][] {
    return this.samples.flatMap(([t, n], k) => {
      const back = this.samples.findLast(([u]) => u <= t - 1);
      return k % 5 === 0 && back ? [[t, n - back[1]] as [number, number]] : [];
    });
  }
}

/** One run's result. */
export interface VariantResult extends Omit<ProgressSummary, 'runningOverTime'> {
  variant: Variant;
  pods: number;
  clientLimits: Record<string, RateLimit>;
  /** Calls the fake received (throttled ones included) up to all Running, and per pod. */
  serverCalls: Record<string, number>;
  callsPerPod: { creates: number; describes: number };
  /** Status calls per second at the endpoint while all pods run and nothing changes, by action. */
  idleCallsPerSecond: Record<string, number>;
  /** Calls the provider's client made (retries included) and what it saw, up to all Running. */
  client: { calls: Record<string, number>; throttled: number; retries: number };
  /** Error answers of the fake as `action code` → count, up to all Running and during the teardown. */
  rejected: { burst: Record<string, number>; teardown: Record<string, number> };
  /** Throttling answers (`Throttling*`, `Degrade.Api`) of the fake up to all Running, and during the teardown. */
  throttledAnswers: number;
  throttledAnswersTeardown: number;
  peakCreatesPerSecond: number;
  peakDeletesPerSecond: number;
  /** Deployment deleted → no pod left in the API; → no container group left at the endpoint. */
  teardownSeconds: number | null;
  instancesGoneSeconds: number | null;
  deletesPerPod: number;
  runningOverTime: [number, number][];
  createRate: [number, number][];
}

async function runVariant(
  variant: Variant,
  kc: KubeConfig,
  pods: number,
  log: (line: string) => void,
): Promise<VariantResult> {
  const fake = await FakeEci.start();
  for (const [action, q] of Object.entries(SERVER_QUOTAS)) fake.setQuota(action, q.qps, q.burst);
  const nodeName = `spillway-bench-eci-${variant}`;
  const open: Record<string, RateLimit> = Object.fromEntries(
    Object.keys(DEFAULT_RATE_LIMITS).map((a) => [a, { qps: 10_000, burst: 10_000 }]),
  );
  const clientLimits = variant === 'no-client-limits' ? open : { ...DEFAULT_RATE_LIMITS };
  // The shipped polling interval and retry policy, not the fast ones tests use.
  const { retry: _fastRetry, ...base } = fakeEciConfig(fake, {
    nodeName,
    pollIntervalMs: 1000,
    ...(variant === 'full-listing' && { resyncIntervalMs: 1000 }),
  });
  const provider = new EciProvider({ config: { ...base, rateLimits: clientLimits } });
  let node: RunningVirtualNode | undefined;
  let ns: { name: string; remove: () => Promise<void> } | undefined;
  const core = kc.makeApiClient(CoreV1Api);
  try {
    node = await startVirtualNode({
      kc,
      provider,
      config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: await freePort() },
    });
    await waitNodeReady(kc, nodeName);
    ns = await createTestNamespace(kc, `bench-eci-${variant}`);
    const progress = new PodProgress(kc, ns.name);
    await progress.start();
    await sleep(1000);

    const before = Object.fromEntries(ACTIONS.map((a) => [a, fake.calls(a)]));
    const clientBefore = structuredClone(provider.api.stats);
    const t0 = nowMs();
    const creates = new CallRate(fake, 'CreateContainerGroup', t0);
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: pinnedDeployment(ns.name, 'eci', nodeName, pods, {
        name: 'app',
        image: 'registry.example.com/app:1.0',
        resources: { requests: { cpu: '250m', memory: '512Mi' } },
      }),
    });
    await progress.waitRunning(pods, Math.max(180_000, pods * 400), (l) => log(`${variant}: ${l}`));
    creates.stop();
    const run = progress.summary(t0, pods);
    progress.stop();
    log(`${variant}: ${run.running}/${pods} Running in ${run.allRunningSeconds?.toFixed(2) ?? 'TIMEOUT'} s`);
    const serverCalls = Object.fromEntries(ACTIONS.map((a) => [a, fake.calls(a) - before[a]!]));
    const s = provider.api.stats;
    const client = {
      calls: Object.fromEntries(
        Object.entries(s.calls).map(([a, n]) => [a, n - (clientBefore.calls[a] ?? 0)]),
      ),
      throttled: s.throttled - clientBefore.throttled,
      retries: s.retries - clientBefore.retries,
    };

    const idle0 = Object.fromEntries(DESCRIBES.map((a) => [a, fake.calls(a)]));
    await sleep(IDLE_SECONDS * 1000);
    const idleCallsPerSecond = Object.fromEntries(
      DESCRIBES.map((a) => [a, Number(((fake.calls(a) - idle0[a]!) / IDLE_SECONDS).toFixed(2))]),
    );
    log(`${variant}: idle status calls/s ${JSON.stringify(idleCallsPerSecond)}`);

    const burstRejected = fake.rejected.length;
    const deletesBefore = fake.calls('DeleteContainerGroup');
    const td0 = nowMs();
    const deletes = new CallRate(fake, 'DeleteContainerGroup', td0);
    const teardownSeconds = await deleteAndDrain(kc, ns.name, 'eci');
    let instancesGoneSeconds: number | null = null;
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      if (fake.groups().length === 0) {
        instancesGoneSeconds = Number(((nowMs() - td0) / 1000).toFixed(2));
        break;
      }
      await sleep(100);
    }
    deletes.stop();
    const byCode = (list: typeof fake.rejected) => {
      const out: Record<string, number> = {};
      for (const r of list) out[`${r.action} ${r.code}`] = (out[`${r.action} ${r.code}`] ?? 0) + 1;
      return out;
    };
    const throttles = (list: typeof fake.rejected) => list.filter((r) => THROTTLING.includes(r.code)).length;
    const per = (n: number | undefined) => Number(((n ?? 0) / pods).toFixed(2));
    return {
      variant,
      pods,
      clientLimits: Object.fromEntries(ACTIONS.map((a) => [a, clientLimits[a]!])),
      ...run,
      serverCalls,
      callsPerPod: {
        creates: per(serverCalls.CreateContainerGroup),
        describes: per(DESCRIBES.reduce((n, a) => n + serverCalls[a]!, 0)),
      },
      idleCallsPerSecond,
      client,
      rejected: {
        burst: byCode(fake.rejected.slice(0, burstRejected)),
        teardown: byCode(fake.rejected.slice(burstRejected)),
      },
      throttledAnswers: throttles(fake.rejected.slice(0, burstRejected)),
      throttledAnswersTeardown: throttles(fake.rejected.slice(burstRejected)),
      peakCreatesPerSecond: creates.peakPerSecond(),
      peakDeletesPerSecond: deletes.peakPerSecond(),
      teardownSeconds,
      instancesGoneSeconds,
      deletesPerPod: per(fake.calls('DeleteContainerGroup') - deletesBefore),
      createRate: creates.perSecond(),
    };
  } finally {
    await ns?.remove();
    await node?.stop();
    await provider.close();
    await core.deleteNode({ name: nodeName }).catch(() => undefined);
    await fake.close();
  }
}

export interface EciBenchOptions {
  pods?: number;
  variants?: Variant[];
  /** Instances Running when the node restarts, for the restart measurement; 0 skips it. Default 1000 (or `pods`, when fewer). */
  restartInstances?: number;
  /** A running cluster to use (bench/run.ts); otherwise a fresh one is started and stopped. */
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function eciBench(opts: EciBenchOptions = {}): Promise<BenchOutcome> {
  const pods = opts.pods ?? 500;
  const variants = opts.variants ?? [...VARIANTS];
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const results: VariantResult[] = [];
  // A quick run (fewer pods asked for) restarts over as many instances as it burst.
  const restartInstances = opts.restartInstances ?? Math.min(1000, opts.pods ?? 1000);
  let restart: RestartResult | null = null;
  try {
    for (const v of variants) {
      console.log(`  eci: ${pods} pods, ${v}`);
      results.push(await runVariant(v, kc, pods, (l) => console.log(`  eci: ${l}`)));
    }
    if (restartInstances > 0) {
      console.log(`  eci: restart over ${restartInstances} instances`);
      restart = await measureRestart(kc, restartInstances, SERVER_QUOTAS, (l) => console.log(`  eci: ${l}`));
    }
  } finally {
    if (own && !process.env.KEEP) await cluster.down();
  }
  const by = (v: Variant) => results.find((r) => r.variant === v);
  const limited = by('client-limits');
  const unlimited = by('no-client-limits');
  const full = by('full-listing');
  const idleTotal = (r: VariantResult | undefined) =>
    r ? Object.values(r.idleCallsPerSecond).reduce((a, b) => a + b, 0) : undefined;
  const result = {
    benchmark: NAME,
    description:
      `A Deployment of ${pods} burst-always pods on a virtual node with the eci provider (official SDK) against ` +
      'the fake ECI endpoint on loopback, with server-side per-API quotas; real control plane.',
    environment: env,
    caveat:
      'The fake starts a container group in milliseconds; real ECI takes tens of seconds, which adds to every ' +
      'pod but not to the API calls. The virtual node, the fake and the control plane share the same cores.',
    serverQuotas: SERVER_QUOTAS,
    targets: {
      'no throttling with client-side limits': limited ? limited.throttledAnswers === 0 : null,
      'one create per pod': limited ? limited.callsPerPod.creates <= 1 : null,
      'restart: registered within 5 s': restart ? restart.registeredSeconds <= 5 : null,
      'restart: describe calls no more than the listing pages': restart
        ? restart.describeCallsToRegistered <= restart.listingPages
        : null,
      'restart: no instance created again': restart ? restart.createsAfterRestart === 0 : null,
    },
    ratios: {
      'no-client-limits/client-limits throttled answers': ratio(
        unlimited?.throttledAnswers,
        limited?.throttledAnswers || undefined,
      ),
      'no-client-limits/client-limits time to all Running': ratio(
        unlimited?.allRunningSeconds ?? undefined,
        limited?.allRunningSeconds ?? undefined,
      ),
      'full-listing/client-limits idle status calls per second': ratio(idleTotal(full), idleTotal(limited)),
    },
    variants: results,
    restart,
  };
  const svg = stack([
    lineChart({
      title: `Pods Running after the Deployment create (${pods} pods, eci provider, fake endpoint)`,
      xLabel: 'seconds since create',
      yLabel: 'pods Running',
      series: results.map((r) => ({ name: r.variant, points: r.runningOverTime })),
    }),
    lineChart({
      title: 'CreateContainerGroup calls per second at the endpoint (1 s windows)',
      xLabel: 'seconds since create',
      yLabel: 'calls/s',
      series: results.map((r) => ({ name: r.variant, points: r.createRate })),
      refs: [
        {
          y: SERVER_QUOTAS.CreateContainerGroup!.qps,
          label: `quota ${SERVER_QUOTAS.CreateContainerGroup!.qps}/s`,
        },
      ],
    }),
    barChart({
      title: 'API calls per pod and throttling answers',
      yLabel: 'count',
      categories: ['creates/pod', 'describes/pod', 'throttled answers / 100', 'idle status calls/s'],
      series: results.map((r) => ({
        name: r.variant,
        values: [r.callsPerPod.creates, r.callsPerPod.describes, r.throttledAnswers / 100, idleTotal(r) ?? 0],
      })),
    }),
  ]);
  const files = writeResult(NAME, result, svg);
  const rows: SummaryRow[] = results.flatMap((r) => [
    {
      benchmark: NAME,
      metric: `${r.variant}: ${r.pods} Running`,
      value: `${sec(r.allRunningSeconds)} (${r.podsPerSecond ?? '–'} pods/s); p99 ${ms(r.podCreatedToRunningMs.p99)}`,
    },
    {
      benchmark: NAME,
      metric: `${r.variant}: creates / describes per pod`,
      value: `${r.callsPerPod.creates} / ${r.callsPerPod.describes}`,
    },
    {
      benchmark: NAME,
      metric: `${r.variant}: throttled answers, client retries, peak creates/s`,
      value: `${r.throttledAnswers}, ${r.client.retries}, ${r.peakCreatesPerSecond}`,
      ...(r.variant === 'client-limits' ? { target: '0 throttled' } : {}),
    },
    {
      benchmark: NAME,
      metric: `${r.variant}: idle status calls/s (${r.pods} pods Running)`,
      value: String(idleTotal(r)),
    },
    {
      benchmark: NAME,
      metric: `${r.variant}: teardown: instances gone, throttled answers, peak deletes/s`,
      value: `${sec(r.instancesGoneSeconds)}, ${r.throttledAnswersTeardown}, ${r.peakDeletesPerSecond}`,
    },
  ]);
  if (restart) {
    rows.push(
      {
        benchmark: NAME,
        metric: `restart over ${restart.instances} instances: registered and adopted`,
        value: sec(restart.registeredSeconds),
        target: '≤ 5 s',
      },
      {
        benchmark: NAME,
        metric: `restart over ${restart.instances} instances: DescribeContainerGroups to registered, next 5 s`,
        value: `${restart.describeCallsToRegistered}, ${restart.describeCallsNext5s} (listing: ${restart.listingPages} pages)`,
        target: `≤ ${restart.listingPages}`,
      },
      {
        benchmark: NAME,
        metric: `restart over ${restart.instances} instances: creates after it, pods Running`,
        value: `${restart.createsAfterRestart}, ${restart.runningAfter}`,
      },
    );
  }
  return { name: NAME, rows, files };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      pods: { type: 'string' },
      variants: { type: 'string' },
      'restart-instances': { type: 'string' },
      'reuse-cluster': { type: 'boolean' },
    },
  });
  const outcome = await eciBench({
    ...(values.pods ? { pods: Number(values.pods) } : {}),
    ...(values.variants !== undefined && {
      variants: values.variants.split(',').filter(Boolean) as Variant[],
    }),
    ...(values['restart-instances'] && { restartInstances: Number(values['restart-instances']) }),
    reuseCluster: values['reuse-cluster'] ?? false,
  });
  printTable(
    ['metric', 'value', 'target'],
    outcome.rows.map((r) => [r.metric, r.value, r.target]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
