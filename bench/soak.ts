/**
 * Kill-soak (issue 13, `make soak`): `spillway run` as a child process, SIGKILLed (its whole process group) at
 * random moments while an ElasticWorkload's unit bursts, scales in and rolls out, and started again each time;
 * then, once things have had time to settle, the damage is counted from outside the operator:
 *
 * - orphans: provider instances whose pod no longer exists; duplicates: more than one live instance for a pod;
 * - stuck pods: unit pods not Running and Ready (or still terminating) after the settle time;
 * - extra creates: instances created for a pod beyond its first (ECI: the fake endpoint's record of every group
 *   it created; local: every containerd pod sandbox id seen for a pod UID, listed through CRI every half second),
 *   and the create calls made;
 * - broken sandboxes (local): Running pods without exactly one ready sandbox, whose PodSandboxStatus IP is not the
 *   pod's IP, whose container is not running, whose port does not answer on that IP from the host, or whose
 *   container cannot connect to the `kubernetes` ClusterIP (ExecSync); duplicate container runs (local): more than
 *   one running container at once for one pod UID and container name;
 * - repeated Events: the same reason and message for the same pod UID emitted more than once by the node;
 * - leftovers once the ElasticWorkload and its namespace are deleted: container groups (ECI); the node's sandboxes
 *   and containers in containerd, state directories, pod cgroups and host-local IP leases (local).
 *
 * Providers: `eci` against the fake ECI endpoint running in this process (so its books survive the kills), and
 * `local` (pods of busybox `httpd` from the cluster registry in the cluster's containerd; needs root; sandboxes
 * outlive the kills, which is the point). Whatever the run leaves, the soak removes at the end (the node's
 * sandboxes through CRI, state, cgroups, leases, and the nftables tables and routes that were not there before). Results go to bench/results/soak.json (one entry per provider, kept
 * from earlier runs for providers not run now) and a table on stdout; operator logs to soak.<provider>.log.
 *
 *   node bench/soak.ts [--providers eci,local]
 *   SOAK_KILLS=10 SOAK_PODS=20 SOAK_SEED=<n> SOAK_SETTLE_SECONDS=180 KEEP=1
 *   SOAK_CLUSTER_DIR (default: the benchmarks' bench/.cluster; left running if it was running)
 *
 * The soak measures; it does not assert: the exit code says only whether it ran.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { imageRef } from '../hack/images/catalog.ts';
import { unitDeploymentName } from '../operator/elasticworkload/units.ts';
import { LocalCluster, serviceCIDR } from '../test/support/cluster.ts';
import { createTestNamespace } from '../test/support/namespace.ts';
import { createDeployment, createElasticWorkload, deployment } from '../test/support/objects.ts';
import { freePort } from '../test/support/ports.ts';
import { seedImages } from '../test/support/registry.ts';
import { benchClusterDir } from './lib/cluster.ts';
import { waitNodeReady } from './lib/pod-progress.ts';
import { environment, logFile, printTable, repoRoot, resultsDir } from './lib/results.ts';
import {
  orphansAndDuplicates,
  PodLedger,
  repeatedEvents,
  stuckPods,
  UNIT_LABEL,
  waitSettled,
  type SoakProvider,
} from './lib/soak-counts.ts';
import { eciSoakProvider } from './lib/soak-eci.ts';
import { localSoakProvider } from './lib/soak-local.ts';
import { seededRandom } from '../operator/shared/random.ts';
import { between, killsPerPhase, OperatorProcess } from './lib/soak-operator.ts';

const PROVIDERS = ['eci', 'local'] as const;
type ProviderName = (typeof PROVIDERS)[number];
const SOURCE = 2; // replicas the source Deployment keeps on the (kwok) normal nodes
const ROLLOUT_ENV = 'SOAK_ROLLOUT';
const run = promisify(execFile);

const { values } = parseArgs({ options: { providers: { type: 'string', default: PROVIDERS.join(',') } } });
const providers = values.providers.split(',').filter(Boolean) as ProviderName[];
for (const p of providers)
  if (!PROVIDERS.includes(p)) throw new Error(`unknown provider ${p}: use eci, local`);
const kills = Number(process.env.SOAK_KILLS ?? 10);
const pods = Number(process.env.SOAK_PODS ?? 20);
const seed = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const settleMs = Number(process.env.SOAK_SETTLE_SECONDS ?? 180) * 1000;

/** One phase: what the workload is told, what the unit should then have, and how to tell a current pod. */
interface Phase {
  name: 'burst' | 'scale-in' | 'rollout';
  /** The kubectl arguments of step `k`. */
  steps: (k: number) => string[];
  /** The unit Deployment's replicas once the controller has passed step `k` on. */
  unitReplicas: (k: number) => number;
  /** Unit pods once settled, and whether a pod (or the unit's template) is of the last step. */
  expected: number;
  current: (p: PodLike) => boolean;
  currentAt?: (k: number) => (p: PodLike) => boolean;
}
type PodLike = { spec?: { containers?: { env?: { name: string; value?: string }[] }[] } };

/** The value of step `k` of `steps` going from `from` to `to` (the last step reaches `to`). */
const stepValue = (from: number, to: number, k: number, steps: number) =>
  steps <= 0 ? to : Math.round(from + ((to - from) * (k + 1)) / steps);

const rolloutOf = (p: PodLike) => p.spec?.containers?.[0]?.env?.find((e) => e.name === ROLLOUT_ENV)?.value;

async function soakOne(cluster: LocalCluster, name: ProviderName, providerSeed: number) {
  const kc = cluster.kubeConfig();
  const kubeconfig = cluster.kubeconfigPath;
  const log = (line: string) => console.log(`  soak ${name}: ${line}`);
  const rand = seededRandom(providerSeed);
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const nodeName = `spillway-soak-${name}`;
  const port = await freePort();
  // The local provider runs the image: its pods pull busybox from the cluster registry (ECI's fake runs nothing).
  let image = 'registry.k8s.io/pause:3.10';
  if (name === 'local') {
    const seeded = await seedImages(cluster.registry, ['pause', 'busybox']);
    log(
      `registry ${cluster.registry}: pushed [${seeded.pushed.join(', ')}], present [${seeded.present.join(', ')}]`,
    );
    image = imageRef('busybox', cluster.registry);
  }
  const provider: SoakProvider =
    name === 'eci'
      ? await eciSoakProvider(nodeName, port)
      : localSoakProvider(nodeName, port, cluster.criEndpoint, {
          ip: serviceCIDR.replace(/0\/\d+$/, '1'), // the `kubernetes` Service
          port: 443,
        });
  const op = new OperatorProcess({
    args: provider.args,
    env: { ...provider.env, KUBECONFIG: kubeconfig, LOG_LEVEL: 'info' },
    logFile: logFile('soak', name),
  });
  const kubectl = (...args: string[]) =>
    run(join(repoRoot, 'bin/kubectl'), ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8' });
  const killLog: {
    phase: string;
    afterSeconds: number;
    operatorWasReady: boolean;
    /** Unit pods not yet Running and Ready, or terminating, just before the kill: the work it interrupted. */
    podsInFlight: number;
  }[] = [];
  const phases: Record<string, unknown>[] = [];
  let ns: { name: string; remove: () => Promise<void> } | undefined;
  let ledger: PodLedger | undefined;

  const t0 = Date.now();
  try {
    op.start();
    await op.waitReady();
    await waitNodeReady(kc, nodeName, 120_000);
    ns = await createTestNamespace(kc, `soak-${name}`);
    ledger = new PodLedger(kc, ns.name, nodeName);
    await ledger.start();
    const container = { name: 'app', image, command: provider.command };
    await createDeployment(
      kc,
      ns.name,
      deployment('app', SOURCE, { spec: { containers: [container], terminationGracePeriodSeconds: 2 } }),
    );
    await createElasticWorkload(kc, ns.name, 'app', {
      sourceTarget: { kind: 'Deployment', name: 'app', max: SOURCE },
      replicas: SOURCE,
      elasticUnit: [{ name: 'burst', labels: { 'spillway.dev/burst': 'always' } }],
    });
    const half = Math.floor(pods / 2);
    const perPhase = killsPerPhase(kills, 3);
    const rollouts = perPhase[2]!;
    const plan: Phase[] = [
      {
        name: 'burst',
        steps: (k) => ['scale', 'ew', 'app', `--replicas=${SOURCE + stepValue(0, pods, k, perPhase[0]!)}`],
        unitReplicas: (k) => stepValue(0, pods, k, perPhase[0]!),
        expected: pods,
        current: () => true,
      },
      {
        name: 'scale-in',
        steps: (k) => ['scale', 'ew', 'app', `--replicas=${SOURCE + stepValue(pods, half, k, perPhase[1]!)}`],
        unitReplicas: (k) => stepValue(pods, half, k, perPhase[1]!),
        expected: half,
        current: () => true,
      },
      {
        name: 'rollout',
        // Each step rolls out again, over the rollout the previous kill interrupted.
        steps: (k) => ['set', 'env', 'deployment/app', `${ROLLOUT_ENV}=${k + 1}`],
        unitReplicas: () => half,
        expected: half,
        current: (p) => rolloutOf(p) === String(Math.max(1, rollouts)),
        currentAt: (k) => (p) => rolloutOf(p) === String(k + 1),
      },
    ];
    const unit = unitDeploymentName('app', 'burst');
    for (const [i, phase] of plan.entries()) {
      const p0 = Date.now();
      // One step of the change per kill (at least one step): each kill lands at a random moment within a couple of
      // seconds after the controller has passed its step on to the unit, i.e. while the virtual node is creating,
      // deleting or replacing pods. Leadership needs the dead operator's Lease to expire first (15 s).
      for (let k = 0; k < Math.max(1, perPhase[i]!); k++) {
        await op.waitReady();
        await kubectl('-n', ns.name, ...phase.steps(k));
        const current = phase.currentAt?.(k) ?? phase.current;
        for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(200)) {
          const d = await apps
            .readNamespacedDeployment({ namespace: ns.name, name: unit })
            .catch(() => undefined);
          if (d?.spec?.replicas === phase.unitReplicas(k) && current(d.spec.template)) break;
        }
        if (k >= perPhase[i]!) break;
        await sleep(between(rand, 0, 2500));
        const before = await core.listNamespacedPod({ namespace: ns.name }).catch(() => undefined);
        killLog.push({
          phase: phase.name,
          afterSeconds: (Date.now() - p0) / 1000,
          operatorWasReady: op.ready,
          podsInFlight: stuckPods(before?.items ?? []).length,
        });
        await op.kill9();
        await sleep(between(rand, 0, 1500));
        op.start();
      }
      await op.waitReady();
      const settleSeconds = await waitSettled(core, ns.name, phase.expected, phase.current, settleMs);
      log(
        `${phase.name}: ${perPhase[i]} kills, ${settleSeconds === null ? 'NOT settled' : `settled in ${settleSeconds} s`}`,
      );
      phases.push({ phase: phase.name, kills: perPhase[i], expectedPods: phase.expected, settleSeconds });
    }

    const list = (await core.listNamespacedPod({ namespace: ns.name })).items;
    const { orphans, duplicates } = orphansAndDuplicates(
      provider.instances(),
      new Set(list.map((p) => p.metadata!.uid!)),
    );
    const stuck = stuckPods(list);
    const broken = provider.broken(list);
    const events = repeatedEvents((await core.listNamespacedEvent({ namespace: ns.name })).items);
    const creates = provider.creates();
    const misplaced = list.filter((p) => p.metadata?.labels?.[UNIT_LABEL] && p.spec?.nodeName !== nodeName);
    const duplicateRuns = provider.duplicateRuns();

    // Delete what was made, with the operator up: everything it made must go with it.
    const d0 = Date.now();
    await kubectl('-n', ns.name, 'delete', 'ew', 'app', '--wait=false');
    await ns.remove();
    let namespaceGoneSeconds: number | null = null;
    for (const deadline = Date.now() + settleMs; Date.now() < deadline; await sleep(1000)) {
      if (!(await core.readNamespace({ name: ns.name }).catch(() => undefined))) {
        namespaceGoneSeconds = (Date.now() - d0) / 1000;
        break;
      }
    }
    let leftovers = provider.leftovers();
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(1000)) {
      leftovers = provider.leftovers();
      if (Object.values(leftovers).every((n) => n === 0)) break;
    }
    ns = undefined;
    return {
      provider: name,
      seed: providerSeed,
      kills: op.kills,
      killsWithPodsInFlight: killLog.filter((k) => k.podsInFlight > 0).length,
      starts: op.starts,
      pods,
      podsBound: ledger.bound.size,
      orphans,
      duplicates,
      stuckPods: stuck.length,
      stuck,
      extraCreates: creates.extraInstances,
      instancesCreated: creates.instancesCreated,
      createCalls: creates.createCalls,
      brokenSandboxes: name === 'local' ? broken.length : null,
      broken,
      duplicateContainerRuns: duplicateRuns,
      repeatedEvents: events.keys,
      repeatedEventEmissions: events.extra,
      repeatedEventExamples: events.examples,
      misplacedUnitPods: misplaced.length,
      leftoversAfterDelete: Object.values(leftovers).reduce((a, b) => a + b, 0),
      leftovers,
      namespaceGoneSeconds,
      unexpectedOperatorExits: op.unexpectedExits,
      phases,
      killLog,
      details: provider.details(),
      seconds: Math.round((Date.now() - t0) / 1000),
    };
  } finally {
    ledger?.stop();
    await ns?.remove();
    await op.stop();
    await core.deleteNode({ name: nodeName }).catch(() => undefined);
    const cleanup = await provider.close();
    if (cleanup.length > 0) log(`cleaned up after the run: ${cleanup.join(', ')}`);
  }
}

const resultFile = join(resultsDir, 'soak.json');
const previous = existsSync(resultFile)
  ? (JSON.parse(readFileSync(resultFile, 'utf8')) as { runs?: Record<string, unknown>[] })
  : {};
const clusterDir = process.env.SOAK_CLUSTER_DIR ?? benchClusterDir;
const cluster = new LocalCluster(clusterDir);
const wasRunning = await cluster.isRunning();
await cluster.up((line) => console.log(`  cluster: ${line}`));
console.log(
  `soak: seed ${seed} (SOAK_SEED=${seed} replays the kill moments), ${kills} kills and ${pods} pods per provider`,
);
const runs: Record<string, unknown>[] = [];
let failed = false;
try {
  for (const [i, name] of providers.entries()) {
    if (name === 'local' && process.getuid?.() !== 0) {
      console.log('  soak local: skipped, the local provider needs root');
      continue;
    }
    try {
      runs.push({
        ...(await soakOne(cluster, name, seed + i)),
        environment: environment(),
      });
    } catch (err) {
      failed = true;
      console.error(
        `soak ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
    }
  }
} finally {
  if (!wasRunning && !process.env.KEEP) await cluster.down();
}
const kept = (previous.runs ?? []).filter((r) => !runs.some((n) => n.provider === r.provider));
const all = [...kept, ...runs].sort((a, b) => String(a.provider).localeCompare(String(b.provider)));
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  resultFile,
  `${JSON.stringify({ benchmark: 'soak', description: 'kill -9 of spillway run during burst, scale-in and rollout; damage counted after settling', runs: all }, null, 2)}\n`,
);
const rows: [string, string][] = [
  ['kills', 'kills'],
  ['kills with pods in flight', 'killsWithPodsInFlight'],
  ['pods bound to the node', 'podsBound'],
  ['orphans', 'orphans'],
  ['duplicates', 'duplicates'],
  ['stuck pods', 'stuckPods'],
  ['extra creates (instances)', 'extraCreates'],
  ['create calls', 'createCalls'],
  ['broken sandboxes', 'brokenSandboxes'],
  ['duplicate container runs', 'duplicateContainerRuns'],
  ['repeated Events', 'repeatedEvents'],
  ['leftovers after delete', 'leftoversAfterDelete'],
  ['unexpected operator exits', 'unexpectedOperatorExits'],
];
const cell = (v: unknown) => (Array.isArray(v) ? v.length : (v as string | number | null | undefined));
printTable(
  ['', ...all.map((r) => `${String(r.provider)} (seed ${String(r.seed)})`)],
  rows.map(([label, key]) => [label, ...all.map((r) => cell(r[key]))]),
);
console.log(`soak: ${resultFile}`);
process.exit(failed ? 1 : 0);
