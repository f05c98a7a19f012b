/**
 * Sandbox start benchmark (issue 15): a Deployment of 100 `burst: always` pods from the cluster registry's busybox
 * image running `sleep 3600`, on a virtual node with the `local` provider — one containerd pod sandbox per pod
 * through CRI (runc, a pause container, the pod's network from the CNI bridge plugin, its service-account token
 * volume) — on the real control plane.
 *
 * The image is pulled once before the clock starts, and that first pull is reported on its own: the Kubernetes
 * pod-startup SLO excludes image pulls, and a node that runs a Deployment's second pod has the image already.
 *
 * Measured: Deployment create → every pod seen Running and Ready through a watch, per-pod creation → Running
 * p50/p99, bound → Running (the node's and provider's share), pods/s; then, once all are Running, the memory of each
 * sandbox read from /proc: the processes in the pod's cgroup (pause and `sleep`) and the containerd-shim-runc-v2
 * that is their parent, as RSS (shared pages counted in every process) and PSS (shared pages split: sums count
 * memory once), plus containerd's own RSS growth over the run divided by the pods. Then the Deployment is deleted
 * and the time until CRI lists no sandbox of the node is taken.
 *
 * The result keeps the figures of the host-process sandboxes the local provider ran before it moved onto CRI
 * (`previous`, read from git), which ignored `image:` and so pulled nothing: the comparison is of a start with its
 * image present against one that needed no image.
 *
 * The virtual node runs in this process, wired as `make run PROVIDER=local` wires it (test/support/local-network.ts
 * `startLocalNode`): the numbers of interest are the sandboxes' own processes and the host clock, which a second
 * process would not change; the node process's CPU and memory are bench/burst.ts's subject. Needs root (the
 * cluster's containerd and the provider's network guard).
 *
 *   flock /tmp/helpers/local-sandbox.lock node bench/sandbox.ts [--pods 100] [--reuse-cluster]
 *
 * Uses the bridge `spillway0` and the default pod CIDR: do not run it beside the local-provider e2e tests.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { imageRef } from '../hack/images/catalog.ts';
import { CriClient } from '../operator/providers/local/cri/client.ts';
import { NODE_LABEL, podCgroupParent } from '../operator/providers/local/plan.ts';
import { removeLocalSandboxes } from '../operator/providers/local/provider.ts';
import type { LocalCluster } from '../test/support/cluster.ts';
import { startLocalNode, type LocalNode } from '../test/support/local-network.ts';
import { createTestNamespace } from '../test/support/namespace.ts';
import { seedImages } from '../test/support/registry.ts';
import { benchCluster, componentPid } from './lib/cluster.ts';
import { ms, sec, type BenchOutcome, type SummaryRow } from './lib/outcome.ts';
import { barChart, cdf, lineChart, stack } from './lib/plot.ts';
import { deleteAndDrain, pinnedDeployment, PodProgress, waitNodeReady } from './lib/pod-progress.ts';
import { readMemoryKiB, readProc } from './lib/process.ts';
import { environment, printTable, repoRoot, writeResult } from './lib/results.ts';
import { nowMs, summarize, type Summary } from './lib/stats.ts';

const NAME = 'sandbox';
const NODE_NAME = 'spillway-bench-local';
/** The local provider advertises 110 pods (a kubelet's default) and the CNI network leases from a /24. */
const MAX_PODS = 110;
/**
 * The last commit of bench/results/sandbox.json measured on host-process sandboxes (before the local provider
 * ran pods through containerd): the figures the CRI runtime is compared with.
 */
const PREVIOUS_COMMIT = 'ba2f066';

/** RSS and PSS, KiB. */
interface Kib {
  rss: number;
  pss: number;
}

/** The memory of one sandbox, KiB, by part. */
interface SandboxMemory {
  uid: string;
  processes: number;
  shim: Kib;
  pause: Kib;
  container: Kib;
  /** CPU time of the shim and of the runc runs it waited for (utime + stime + cutime + cstime), seconds. */
  shimCpuSeconds: number;
}

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  argv0: string;
  cgroups: string[];
}

function readProcs(): Proc[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        const argv0 = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0] ?? '';
        // "<id>:<controllers>:<path>" per hierarchy (cgroup v1) or "0::<path>" (v2): the paths.
        const cgroups = readFileSync(`/proc/${p}/cgroup`, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1));
        return [{ pid: Number(p), ppid, comm, argv0, cgroups }];
      } catch {
        return []; // gone, or a kernel thread without a cmdline
      }
    });
}

const CLOCK_TICKS = 100; // USER_HZ, the unit of /proc's CPU times

/** A process's CPU time and that of its children it waited for, seconds; 0 once it is gone. */
function cpuWithChildren(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "(comm) ": state is index 0, utime 11, stime 12, cutime 13, cstime 14.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Busy CPU time of the whole machine since boot (all cores, not idle or iowait), seconds. */
function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const all = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return (all - (cpu[3] ?? 0) - (cpu[4] ?? 0)) / CLOCK_TICKS;
}

const add = (a: Kib, b: Kib | undefined): Kib => (b ? { rss: a.rss + b.rss, pss: a.pss + b.pss } : a);
const ZERO: Kib = { rss: 0, pss: 0 };

/**
 * The processes of each pod in `uids`: those in the pod's cgroup (`podCgroupParent`: the pause container and the
 * pod's containers below it) and the containerd-shim-runc-v2 that started them, which containerd leaves in its own
 * cgroup and which the shim's children name as their parent.
 */
function sandboxMemory(uids: string[]): SandboxMemory[] {
  const procs = readProcs();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  return uids.map((uid) => {
    const parent = podCgroupParent(NODE_NAME, uid);
    const inside = procs.filter((p) => p.cgroups.some((c) => c === parent || c.startsWith(`${parent}/`)));
    const shims = new Set(
      inside
        .map((p) => byPid.get(p.ppid))
        .filter((p): p is Proc => p !== undefined && p.argv0.endsWith('containerd-shim-runc-v2'))
        .map((p) => p.pid),
    );
    let m: SandboxMemory = {
      uid,
      processes: inside.length + shims.size,
      shim: ZERO,
      pause: ZERO,
      container: ZERO,
      shimCpuSeconds: 0,
    };
    for (const pid of shims) {
      m = {
        ...m,
        shim: add(m.shim, readMemoryKiB(pid)),
        shimCpuSeconds: m.shimCpuSeconds + cpuWithChildren(pid),
      };
    }
    for (const p of inside) {
      const part = p.comm === 'pause' ? 'pause' : 'container';
      m = { ...m, [part]: add(m[part], readMemoryKiB(p.pid)) };
    }
    return m;
  });
}

/** The figures of the host-process sandboxes (bench/results/sandbox.json at {@link PREVIOUS_COMMIT}). */
function previousFigures(): Record<string, unknown> {
  let old: {
    environment?: { date?: string; commit?: string };
    allRunningSeconds?: number;
    podsPerSecond?: number;
    pods?: number;
    podCreatedToRunningMs?: Summary;
    boundToRunningMs?: Summary;
    sandboxesGoneSeconds?: number;
    memoryPerSandbox?: { pssMiB?: Summary; rssMiB?: Summary; processes?: Summary };
  };
  try {
    old = JSON.parse(
      execFileSync('git', ['show', `${PREVIOUS_COMMIT}:bench/results/sandbox.json`], {
        cwd: repoRoot,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    ) as typeof old;
  } catch {
    return { source: `bench/results/sandbox.json at ${PREVIOUS_COMMIT}`, unavailable: 'not a git checkout' };
  }
  return {
    source: `bench/results/sandbox.json at ${PREVIOUS_COMMIT} (measured ${old.environment?.date}, code ${old.environment?.commit})`,
    runtime:
      'host-process sandboxes: Linux namespaces around a command run from the host filesystem as root; `image:` ' +
      'was ignored, so nothing was pulled or unpacked (no pause container, no shim, no runc)',
    pods: old.pods,
    allRunningSeconds: old.allRunningSeconds,
    podsPerSecond: old.podsPerSecond,
    podCreatedToRunningMs: { p50: old.podCreatedToRunningMs?.p50, p99: old.podCreatedToRunningMs?.p99 },
    boundToRunningMs: { p50: old.boundToRunningMs?.p50, p99: old.boundToRunningMs?.p99 },
    memoryPerSandboxMiB: {
      pssP50: old.memoryPerSandbox?.pssMiB?.p50,
      rssP50: old.memoryPerSandbox?.rssMiB?.p50,
      processes: old.memoryPerSandbox?.processes?.p50,
    },
    sandboxesGoneSeconds: old.sandboxesGoneSeconds,
  };
}

/** Why pods are not Running: each waiting pod's container state, and the namespace's warning events. */
async function notRunningReport(kc: KubeConfig, namespace: string): Promise<Record<string, unknown>> {
  const core = kc.makeApiClient(CoreV1Api);
  const pods = (await core.listNamespacedPod({ namespace })).items;
  const reasons = new Map<string, number>();
  for (const p of pods) {
    if (p.status?.phase === 'Running') continue;
    const w = p.status?.containerStatuses?.[0]?.state?.waiting;
    const reason = `${p.status?.phase ?? '?'}${w ? ` ${w.reason}: ${w.message ?? ''}` : ''}`;
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const events = (await core.listNamespacedEvent({ namespace })).items
    .filter((e) => e.type === 'Warning')
    .map((e) => `${e.reason} ×${e.count ?? 1}: ${e.message}`);
  return { notRunning: Object.fromEntries(reasons), warnings: [...new Set(events)].slice(0, 20) };
}

const mib = (kib: number) => Number((kib / 1024).toFixed(2));

export interface SandboxBenchOptions {
  pods?: number;
  /** A running cluster to use (bench/run.ts); otherwise a fresh one is started and stopped. */
  cluster?: { cluster: LocalCluster; kc: KubeConfig };
  reuseCluster?: boolean;
}

export async function sandboxBench(opts: SandboxBenchOptions = {}): Promise<BenchOutcome> {
  const pods = opts.pods ?? 100;
  if (pods > MAX_PODS) throw new Error(`--pods ${pods}: the local node takes at most ${MAX_PODS} pods`);
  if (process.getuid?.() !== 0)
    throw new Error('the sandbox benchmark needs root (containerd and the local provider do)');
  const env = environment();
  const own = !opts.cluster;
  const { cluster, kc } = opts.cluster ?? (await benchCluster({ reuse: opts.reuseCluster ?? false }));
  const core = kc.makeApiClient(CoreV1Api);
  const cri = new CriClient({ endpoint: cluster.criEndpoint });
  const nodeSandboxes = () => cri.listPodSandbox({ [NODE_LABEL]: NODE_NAME });
  let local: LocalNode | undefined;
  let ns: { name: string; remove: () => Promise<void> } | undefined;
  const log = (line: string) => console.log(`  sandbox: ${line}`);
  try {
    const seeded = await seedImages(cluster.registry, ['pause', 'busybox']);
    log(
      `registry ${cluster.registry}: pushed [${seeded.pushed.join(', ')}], present [${seeded.present.join(', ')}]`,
    );
    const image = imageRef('busybox', cluster.registry);
    // A reused cluster's containerd may have the image: remove it, so that the first pull is one.
    if (await cri.imageStatus(image)) {
      execFileSync('crictl', ['--runtime-endpoint', cluster.criEndpoint, 'rmi', image], { stdio: 'ignore' });
    }
    const pull0 = nowMs();
    await cri.pullImage(image);
    const firstPullSeconds = Number(((nowMs() - pull0) / 1000).toFixed(3));
    const imageSizeMiB = mib(((await cri.imageStatus(image))?.size ?? 0) / 1024);
    log(`first pull of ${image}: ${firstPullSeconds} s (${imageSizeMiB} MiB unpacked)`);

    local = await startLocalNode(kc, NODE_NAME, { criEndpoint: cluster.criEndpoint });
    await waitNodeReady(kc, NODE_NAME);
    ns = await createTestNamespace(kc, 'bench-sandbox');
    const progress = new PodProgress(kc, ns.name);
    await progress.start();
    await sleep(1000); // the node's first status and lease before the clock starts

    const containerdPid = componentPid(cluster, 'containerd');
    const containerdBefore = containerdPid ? readMemoryKiB(containerdPid) : undefined;
    // Where the start's CPU goes: the machine, containerd, this process (virtual node and provider), the shims.
    const cpuBefore = {
      machine: machineBusySeconds(),
      containerd: containerdPid ? (readProc(containerdPid)?.cpuSeconds ?? NaN) : NaN,
      containerdWithChildren: containerdPid ? cpuWithChildren(containerdPid) : NaN,
      self: process.cpuUsage(),
    };
    log(`${pods} pods on the local provider (containerd ${cluster.criEndpoint})`);
    const t0 = nowMs();
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns.name,
      body: pinnedDeployment(ns.name, 'sandboxes', NODE_NAME, pods, {
        name: 'app',
        image,
        imagePullPolicy: 'IfNotPresent',
        command: ['sleep', '3600'],
      }),
    });
    const done = await progress.waitRunning(pods, Math.max(180_000, pods * 2000), log);
    const run = progress.summary(t0, pods);
    log(`${run.running}/${pods} Running in ${run.allRunningSeconds?.toFixed(2) ?? 'TIMEOUT'} s`);
    progress.stop();
    const selfCpu = process.cpuUsage(cpuBefore.self);
    const startSeconds = (nowMs() - t0) / 1000;
    const cpu = {
      windowSeconds: Number(startSeconds.toFixed(2)),
      machineBusyCores: Number(((machineBusySeconds() - cpuBefore.machine) / startSeconds).toFixed(2)),
      containerdCpuSeconds: Number(
        ((containerdPid ? (readProc(containerdPid)?.cpuSeconds ?? NaN) : NaN) - cpuBefore.containerd).toFixed(
          2,
        ),
      ),
      // containerd's children it waited for: the CNI plugins (bridge, host-local, loopback) of each sandbox.
      containerdChildrenCpuSeconds: Number(
        (
          (containerdPid ? cpuWithChildren(containerdPid) : NaN) -
          cpuBefore.containerdWithChildren -
          ((containerdPid ? (readProc(containerdPid)?.cpuSeconds ?? NaN) : NaN) - cpuBefore.containerd)
        ).toFixed(2),
      ),
      virtualNodeAndProviderCpuSeconds: Number(((selfCpu.user + selfCpu.system) / 1e6).toFixed(2)),
    };
    log(`CPU over the start: ${JSON.stringify(cpu)}`);
    const failure = done ? undefined : await notRunningReport(kc, ns.name);
    if (failure) log(`not all Running: ${JSON.stringify(failure, null, 2)}`);

    await sleep(1000); // shims and containers settle after their start
    const uids = (await core.listNamespacedPod({ namespace: ns.name })).items
      .filter((p) => p.status?.phase === 'Running')
      .map((p) => p.metadata!.uid!);
    const memory = sandboxMemory(uids);
    const containerdAfter = containerdPid ? readMemoryKiB(containerdPid) : undefined;
    const containerdGrowthKiB =
      containerdBefore && containerdAfter ? containerdAfter.rss - containerdBefore.rss : undefined;
    const stats = await local.provider.statsSummary();
    const workingSet = stats.map((s) => s.memory?.workingSetBytes ?? 0).filter((b) => b > 0);

    const teardownSeconds = await deleteAndDrain(kc, ns.name, 'sandboxes');
    const gone0 = nowMs();
    let sandboxesLeft = -1;
    const sandboxesLeftOverTime: [number, number][] = [];
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      sandboxesLeft = (await nodeSandboxes()).length;
      sandboxesLeftOverTime.push([
        Number(((nowMs() - gone0) / 1000 + (teardownSeconds ?? 0)).toFixed(2)),
        sandboxesLeft,
      ]);
      if (sandboxesLeft === 0) break;
      await sleep(200);
    }
    const sandboxesGoneSeconds =
      sandboxesLeft === 0 && teardownSeconds !== null
        ? Number(((nowMs() - gone0) / 1000 + teardownSeconds).toFixed(2))
        : null;

    const total = (m: SandboxMemory) => add(add(m.shim, m.pause), m.container);
    const perContainerd =
      containerdGrowthKiB !== undefined && uids.length ? containerdGrowthKiB / uids.length : 0;
    const perSandbox = {
      pssMiB: summarize(memory.map((m) => mib(total(m).pss))),
      rssMiB: summarize(memory.map((m) => mib(total(m).rss))),
      withContainerdShare: {
        pssMiB: summarize(memory.map((m) => mib(total(m).pss + perContainerd))),
        rssMiB: summarize(memory.map((m) => mib(total(m).rss + perContainerd))),
      },
      shimCpuSeconds: summarize(memory.map((m) => m.shimCpuSeconds)),
      shimPssMiB: summarize(memory.map((m) => mib(m.shim.pss))),
      shimRssMiB: summarize(memory.map((m) => mib(m.shim.rss))),
      pausePssMiB: summarize(memory.map((m) => mib(m.pause.pss))),
      containerPssMiB: summarize(memory.map((m) => mib(m.container.pss))),
      processes: summarize(
        memory.map((m) => m.processes),
        0,
      ),
      ...(workingSet.length
        ? { cgroupWorkingSetMiB: summarize(workingSet.map((b) => b / (1024 * 1024))) }
        : {}),
    };
    const containerd = {
      rssBeforeMiB: containerdBefore ? mib(containerdBefore.rss) : null,
      rssAfterMiB: containerdAfter ? mib(containerdAfter.rss) : null,
      rssGrowthPerSandboxMiB: containerdGrowthKiB !== undefined && uids.length ? mib(perContainerd) : null,
    };
    const previous = previousFigures();
    const result = {
      benchmark: NAME,
      description:
        `A Deployment of ${pods} burst-always pods (busybox \`sleep 3600\` from the cluster registry) on a virtual ` +
        'node with the local provider: one containerd pod sandbox per pod through CRI (runc, a pause container, ' +
        'a containerd-shim-runc-v2, the CNI bridge network on spillway0, the service-account token volume), real ' +
        'control plane on loopback.',
      environment: env,
      caveat:
        'The control plane, containerd, the virtual node (in the benchmark process) and the sandboxes share the ' +
        'same cores. The image is pulled before the clock starts (firstPullSeconds; the pod-startup SLO excludes ' +
        'pulls). Memory is what /proc shows once all pods are Running; PSS sums count shared pages once. ' +
        '`previous` is the host-process runtime, which ignored images.',
      runtime: { criEndpoint: cluster.criEndpoint, image, imageSizeMiB, firstPullSeconds },
      pods,
      ...run,
      ...(failure ? { failure } : {}),
      cpu,
      teardownSeconds,
      sandboxesGoneSeconds,
      sandboxesLeftOverTime,
      memoryPerSandbox: perSandbox,
      memoryAllSandboxesPssMiB: Number(memory.reduce((a, m) => a + total(m).pss / 1024, 0).toFixed(1)),
      containerd,
      previous,
      limits: {
        nodePods: `${MAX_PODS} (LocalProvider capacity default; addresses from the /24 of containerd's CNI network)`,
      },
    };
    const prevRunning = (previous as { podsPerSecond?: number; allRunningSeconds?: number })
      .allRunningSeconds;
    const svg = stack([
      lineChart({
        title: `Pods Running after the Deployment create (${pods} containerd sandboxes)`,
        xLabel: 'seconds since create',
        yLabel: 'pods Running',
        series: [{ name: 'local (CRI)', points: run.runningOverTime }],
      }),
      lineChart({
        title: 'Pod seen bound → seen Running (virtual node + sandbox start), CDF',
        xLabel: 'ms',
        yLabel: 'pods (%)',
        series: [{ name: 'local (CRI)', points: cdf(progress.boundToRunning()) }],
      }),
      lineChart({
        title: 'Sandboxes CRI still lists after the Deployment delete',
        xLabel: 'seconds since delete (pods gone from the API at the first point)',
        yLabel: 'sandboxes',
        series: [{ name: 'local (CRI)', points: sandboxesLeftOverTime }],
      }),
      barChart({
        title: 'Memory per sandbox (MiB): shim + pause + container',
        yLabel: 'MiB',
        categories: ['PSS p50', 'PSS p99', 'RSS p50', 'RSS p99'],
        series: [
          {
            name: 'CRI sandbox',
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
    const prev = previous as {
      pods?: number;
      podsPerSecond?: number;
      podCreatedToRunningMs?: { p50?: number; p99?: number };
      boundToRunningMs?: { p50?: number; p99?: number };
      memoryPerSandboxMiB?: { pssP50?: number; rssP50?: number };
      sandboxesGoneSeconds?: number;
    };
    const before = (v: string) => `before (host processes, ${PREVIOUS_COMMIT}): ${v}`;
    const rows: SummaryRow[] = [
      {
        benchmark: NAME,
        metric: `${pods} sandboxes Running`,
        value: `${sec(run.allRunningSeconds)} (${run.podsPerSecond ?? '–'} pods/s)`,
        vsAnchor: before(
          `${prev.pods} pods in ${sec(prevRunning ?? null)} (${prev.podsPerSecond ?? '–'} pods/s)`,
        ),
      },
      {
        benchmark: NAME,
        metric: 'first image pull (before the clock)',
        value: `${sec(firstPullSeconds)} (${imageSizeMiB} MiB image)`,
        vsAnchor: before('no image'),
      },
      {
        benchmark: NAME,
        metric: 'pod created → Running p50 / p99',
        value: p(run.podCreatedToRunningMs, (v) => ms(v)),
        vsAnchor: before(`${ms(prev.podCreatedToRunningMs?.p50)} / ${ms(prev.podCreatedToRunningMs?.p99)}`),
      },
      {
        benchmark: NAME,
        metric: 'bound → Running p50 / p99',
        value: p(run.boundToRunningMs, (v) => ms(v)),
        vsAnchor: before(`${ms(prev.boundToRunningMs?.p50)} / ${ms(prev.boundToRunningMs?.p99)}`),
      },
      {
        benchmark: NAME,
        metric: 'memory per sandbox PSS / RSS (p50)',
        value: `${perSandbox.pssMiB.p50} MiB / ${perSandbox.rssMiB.p50} MiB`,
        vsAnchor: before(`${prev.memoryPerSandboxMiB?.pssP50} MiB / ${prev.memoryPerSandboxMiB?.rssP50} MiB`),
      },
      {
        benchmark: NAME,
        metric: 'containerd RSS growth per sandbox',
        value: containerd.rssGrowthPerSandboxMiB === null ? '–' : `${containerd.rssGrowthPerSandboxMiB} MiB`,
        vsAnchor: before('no containerd'),
      },
      {
        benchmark: NAME,
        metric: 'CPU over the start',
        value:
          `machine ${cpu.machineBusyCores} of ${env.cpus} cores busy; containerd ${cpu.containerdCpuSeconds} s ` +
          `+ CNI plugins ${cpu.containerdChildrenCpuSeconds} s, ` +
          `virtual node + provider ${cpu.virtualNodeAndProviderCpuSeconds} s, ` +
          `shim + runc ${perSandbox.shimCpuSeconds.p50} s per sandbox (p50)`,
      },
      {
        benchmark: NAME,
        metric: 'delete → all sandboxes gone',
        value: sec(sandboxesGoneSeconds),
        vsAnchor: before(sec(prev.sandboxesGoneSeconds)),
      },
    ];
    return { name: NAME, rows, files };
  } finally {
    await ns?.remove();
    if (local) {
      // The provider removes what the namespace's deletion leaves; removeLocalSandboxes below is the backstop.
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        if ((await nodeSandboxes().catch(() => [])).length === 0) break;
        await sleep(500);
      }
      await local.stop();
    }
    await core.deleteNode({ name: NODE_NAME }).catch(() => undefined);
    await removeLocalSandboxes({ nodeName: NODE_NAME, criEndpoint: cluster.criEndpoint }).catch(
      () => undefined,
    );
    rmSync(join('/run/spillway', NODE_NAME), { recursive: true, force: true });
    cri.close();
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
    ['metric', 'value', 'vs before'],
    outcome.rows.map((r) => [r.metric, r.value, r.vsAnchor]),
  );
  console.log(`results: ${outcome.files.json}, ${outcome.files.svg}`);
}
