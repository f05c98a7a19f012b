/**
 * Sandbox start benchmark (issue 6): a Deployment of 100 `burst: always` pods running `sleep 3600` on a virtual
 * node with the `local` provider — real Linux-namespace sandboxes on this host, each with its veth, IP lease,
 * bind-mounted volumes (the service-account token every pod gets) and DNS files — on the real control plane.
 *
 * Measured: Deployment create → every pod seen Running and Ready through a watch, per-pod creation → Running
 * p50/p99, bound → Running (the node's and provider's share), pods/s, and the memory of each sandbox read from
 * /proc once all are Running: the processes inside its PID namespace (sandbox-init, the container shim and its
 * log stamper, the command) plus the host-side helpers that hold it (`unshare`, one `nsenter` per container run),
 * as RSS (shared pages counted in every process) and PSS (shared pages split: sums count memory once).
 * Then the Deployment is deleted and the time until every sandbox is gone is taken.
 *
 * The virtual node runs in this process, wired as `make run PROVIDER=local` wires it (test/support/local-network.ts
 * `startLocalNode`): the numbers of interest are the sandboxes' own processes and the host clock, which a second
 * process would not change; the node process's CPU and memory are bench/burst.ts's subject. Needs root.
 *
 *   node bench/sandbox.ts [--pods 100] [--reuse-cluster]
 *
 * Uses the bridge `spillway0` and the default pod CIDR: do not run it beside the local-provider e2e tests.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { CoreV1Api, AppsV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { SandboxRecord } from '../operator/providers/local/sandbox.ts';
import type { LocalCluster } from '../test/support/cluster.ts';
import {
  removeLocalNetwork,
  removeNodeState,
  startLocalNode,
  type LocalNode,
} from '../test/support/local-network.ts';
import { createTestNamespace } from '../test/support/namespace.ts';
import { benchCluster } from './lib/cluster.ts';
import { ms, sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart, cdf, lineChart, stack } from './lib/plot.ts';
import { deleteAndDrain, pinnedDeployment, PodProgress, waitNodeReady } from './lib/pod-progress.ts';
import { readMemoryKiB } from './lib/process.ts';
import { environment, printTable, writeResult } from './lib/results.ts';
import { nowMs, summarize, type Summary } from './lib/stats.ts';

const NAME = 'sandbox';
const NODE_NAME = 'spillway-bench-local';
/** The local provider advertises 110 pods (a kubelet's default) and leases from a /24: at most 110 here. */
const MAX_PODS = 110;

/** The memory of one sandbox, KiB. */
interface SandboxMemory {
  uid: string;
  processes: number;
  inside: { rss: number; pss: number };
  helpers: { rss: number; pss: number };
}

/** Every process of every sandbox under `stateDir`, grouped per sandbox, with its memory. */
function sandboxMemory(stateDir: string): SandboxMemory[] {
  const sandboxes = join(stateDir, 'sandboxes');
  const records = readdirSync(sandboxes).flatMap((uid) => {
    try {
      return [JSON.parse(readFileSync(join(sandboxes, uid, 'sandbox.json'), 'utf8')) as SandboxRecord];
    } catch {
      return [];
    }
  });
  const pidNs = (pid: number | string) => {
    try {
      return readlinkSync(`/proc/${pid}/ns/pid`);
    } catch {
      return undefined;
    }
  };
  const procs = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      let argv: string[] = [];
      try {
        argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      } catch {
        /* gone */
      }
      return { pid: Number(p), ns: pidNs(p), argv };
    });
  return records.map((r) => {
    const init = r.processes.init.pid;
    const ns = pidNs(init);
    const inside = procs.filter((p) => ns !== undefined && p.ns === ns);
    const helpers = procs.filter(
      (p) =>
        p.pid === r.processes.unshare.pid ||
        (p.argv[0]?.endsWith('nsenter') && p.argv[1] === '-t' && p.argv[2] === String(init)),
    );
    const sum = (list: typeof procs) =>
      list.reduce(
        (a, p) => {
          const m = readMemoryKiB(p.pid);
          return m ? { rss: a.rss + m.rss, pss: a.pss + m.pss } : a;
        },
        { rss: 0, pss: 0 },
      );
    return {
      uid: r.key.uid,
      processes: inside.length + helpers.length,
      inside: sum(inside),
      helpers: sum(helpers),
    };
  });
}

const mib = (kib: number) => kib / 1024;

export interface SandboxBenchOptions {
  pods?: number;
  /** A running cluster to use (bench/run.ts); otherwise a fresh one is started and stopped. */
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function sandboxBench(opts: SandboxBenchOptions = {}): Promise<BenchOutcome> {
  const pods = opts.pods ?? 100;
  if (pods > MAX_PODS) throw new Error(`--pods ${pods}: the local node takes at most ${MAX_PODS} pods`);
  if (process.getuid?.() !== 0) throw new Error('the sandbox benchmark needs root (the local provider does)');
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const core = kc.makeApiClient(CoreV1Api);
  let local: LocalNode | undefined;
  let ns: { name: string; remove: () => Promise<void> } | undefined;
  const log = (line: string) => console.log(`  sandbox: ${line}`);
  try {
    local = await startLocalNode(kc, NODE_NAME);
    await waitNodeReady(kc, NODE_NAME);
    ns = await createTestNamespace(kc, 'bench-sandbox');
    const progress = new PodProgress(kc, ns.name);
    await progress.start();
    await sleep(1000); // the node's first status and lease before the clock starts

    log(`${pods} pods on the local provider`);
    const t0 = nowMs();
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: pinnedDeployment(ns.name, 'sandboxes', NODE_NAME, pods, {
        name: 'app',
        image: 'host', // not pulled: the local provider runs the command on the host's filesystem
        command: ['sleep', '3600'],
      }),
    });
    const done = await progress.waitRunning(pods, Math.max(180_000, pods * 2000), log);
    const run = progress.summary(t0, pods);
    log(`${run.running}/${pods} Running in ${run.allRunningSeconds?.toFixed(2) ?? 'TIMEOUT'} s`);
    progress.stop();

    await sleep(1000); // log stampers and shells settle after their start
    const memory = done ? sandboxMemory(local.provider.stateDir) : [];
    const stats = await local.provider.statsSummary();
    const workingSet = stats.map((s) => s.memory?.workingSetBytes ?? 0).filter((b) => b > 0);

    const teardownSeconds = await deleteAndDrain(kc, ns.name, 'sandboxes');
    const gone0 = nowMs();
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      if ((await local.provider.list()).length === 0) break;
      await sleep(200);
    }
    const sandboxesGoneSeconds = Number(((nowMs() - gone0) / 1000 + (teardownSeconds ?? 0)).toFixed(2));

    const perSandbox = {
      pssMiB: summarize(memory.map((m) => mib(m.inside.pss + m.helpers.pss))),
      rssMiB: summarize(memory.map((m) => mib(m.inside.rss + m.helpers.rss))),
      insidePssMiB: summarize(memory.map((m) => mib(m.inside.pss))),
      helpersPssMiB: summarize(memory.map((m) => mib(m.helpers.pss))),
      processes: summarize(
        memory.map((m) => m.processes),
        0,
      ),
      ...(workingSet.length
        ? { cgroupWorkingSetMiB: summarize(workingSet.map((b) => b / (1024 * 1024))) }
        : {}),
    };
    const totalPssMiB = Number(memory.reduce((a, m) => a + mib(m.inside.pss + m.helpers.pss), 0).toFixed(1));
    const result = {
      benchmark: NAME,
      description:
        `A Deployment of ${pods} burst-always pods (\`sleep 3600\`) on a virtual node with the local provider ` +
        '(one Linux-namespace sandbox per pod: PID, mount, network, UTS, IPC namespaces, a veth on spillway0, ' +
        'the service-account token volume, DNS files), real control plane on loopback.',
      environment: env,
      caveat:
        'The control plane, the virtual node (in the benchmark process) and the sandboxes share the same cores. ' +
        'Memory is what /proc shows once all pods are Running; PSS sums count shared pages (bash, libc) once.',
      pods,
      ...run,
      teardownSeconds,
      sandboxesGoneSeconds,
      memoryPerSandbox: perSandbox,
      memoryAllSandboxesPssMiB: totalPssMiB,
      limits: {
        nodePods: `${MAX_PODS} (LocalProvider capacity default; addresses from a /24 node CIDR)`,
      },
    };
    const svg = stack([
      lineChart({
        title: `Pods Running after the Deployment create (${pods} local sandboxes)`,
        xLabel: 'seconds since create',
        yLabel: 'pods Running',
        series: [{ name: 'local', points: run.runningOverTime }],
      }),
      lineChart({
        title: 'Pod seen bound → seen Running (virtual node + sandbox start), CDF',
        xLabel: 'ms',
        yLabel: 'pods (%)',
        series: [{ name: 'local', points: cdf(progress.boundToRunning()) }],
      }),
      barChart({
        title: 'Memory per sandbox (MiB)',
        yLabel: 'MiB',
        categories: ['PSS p50', 'PSS p99', 'RSS p50', 'RSS p99'],
        series: [
          {
            name: 'sandbox + helpers',
            values: [
              perSandbox.pssMiB.p50,
              perSandbox.pssMiB.p99,
              perSandbox.rssMiB.p50,
              perSandbox.rssMiB.p99,
            ],
          },
        ],
      }),
    ]);
    const files = writeResult(NAME, result, svg);
    const p = (s: Summary, f: (v: number) => string) => `${f(s.p50)} / ${f(s.p99)}`;
    const rows: SummaryRow[] = [
      {
        benchmark: NAME,
        metric: `${pods} sandboxes Running`,
        value: `${sec(run.allRunningSeconds)} (${run.podsPerSecond ?? '–'} pods/s)`,
      },
      {
        benchmark: NAME,
        metric: 'pod created → Running p50 / p99',
        value: p(run.podCreatedToRunningMs, (v) => ms(v)),
      },
      { benchmark: NAME, metric: 'bound → Running p50 / p99', value: p(run.boundToRunningMs, (v) => ms(v)) },
      {
        benchmark: NAME,
        metric: 'memory per sandbox PSS / RSS (p50)',
        value: `${perSandbox.pssMiB.p50} MiB / ${perSandbox.rssMiB.p50} MiB`,
      },
      { benchmark: NAME, metric: 'delete → all sandboxes gone', value: sec(sandboxesGoneSeconds) },
    ];
    return { name: NAME, rows, files };
  } finally {
    await ns?.remove();
    let left = 0;
    if (local) {
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        left = (await local.provider.list()).length;
        if (left === 0) break;
        await sleep(500);
      }
      await local.stop();
    }
    await core.deleteNode({ name: NODE_NAME }).catch(() => undefined);
    // Sandboxes still running (a failed teardown) keep their network and state for a later start to adopt.
    if (left === 0) {
      removeLocalNetwork();
      removeNodeState(NODE_NAME);
    }
    if (own && !process.env.KEEP) await cluster.down();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { pods: { type: 'string' }, 'reuse-cluster': { type: 'boolean' } },
  });
  const outcome = await sandboxBench({
    ...(values.pods ? { pods: Number(values.pods) } : {}),
    reuseCluster: values['reuse-cluster'] ?? false,
  });
  printTable(
    ['metric', 'value'],
    outcome.rows.map((r) => [r.metric, r.value]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
