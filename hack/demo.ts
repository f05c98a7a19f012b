/**
 * make demo: spillway on one machine. The local control plane (real apiserver, scheduler and controllers), its
 * registry, two real kubelet nodes on containerd with CoreDNS and metrics-server (test/support/real-nodes.ts), the
 * operator with the `local` provider (burst pods run from their images in containerd sandboxes on this host), and
 * examples/web as an ElasticWorkload scaled 2 → 10 → 3 while a table shows where every replica runs. At 10, a
 * client pod on the virtual node sends requests to the web Service through its ClusterIP, resolved by CoreDNS:
 * the replicas on the real nodes and the burst replicas on the virtual node (real nginx, all of them) answer, each
 * one's access log counts its share.
 *
 * Exits 0 when every step reached its expected distribution and every request was answered, non-zero with the
 * step that did not. KEEP=1 leaves everything running and prints the kubeconfig.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, type KubeConfig, type V1Deployment, type V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_REGISTRY, imageRef } from './images/catalog.ts';
import { defaultBinDir, LocalCluster, repoRoot } from '../test/support/cluster.ts';
import { freePort } from '../test/support/ports.ts';
import { kubectl } from '../test/support/kube.ts';
import { seedImages } from '../test/support/registry.ts';

const ns = 'spillway-demo';
const nodeName = 'spillway-virtual-local';
const keep = process.env.KEEP === '1';
/** Requests the client sends through the web Service at 10 replicas. */
const requests = 30;
/** The client's User-Agent: how its requests are told apart in the replicas' access logs (nginx logs to stdout). */
const agent = 'spillway-demo-client';

function fail(message: string): never {
  throw new Error(message);
}

async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await check().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > deadline) fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

function table(pods: V1Pod[], virtualNodes: Set<string>): string {
  const rows = pods
    .map((p) => {
      const node = p.spec?.nodeName ?? '(pending)';
      const where = virtualNodes.has(node) ? 'virtual node' : p.spec?.nodeName ? 'real node' : '-';
      const unit = p.metadata?.labels?.['spillway.dev/unit'] ?? 'source';
      return [p.metadata?.name ?? '', unit, node, p.status?.phase ?? '', where];
    })
    .sort((a, b) => a[4]!.localeCompare(b[4]!) || a[1]!.localeCompare(b[1]!) || a[0]!.localeCompare(b[0]!));
  const head = ['POD', 'TARGET', 'NODE', 'PHASE', 'WHERE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}

async function manifests(file: string): Promise<Record<string, unknown>[]> {
  return parseAllDocuments(readFileSync(join(repoRoot, file), 'utf8')).map(
    (d) => d.toJS() as Record<string, unknown>,
  );
}

async function apply(kubeconfig: string, objects: object[]): Promise<void> {
  const input = objects.map((o) => JSON.stringify(o)).join('\n');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(join(defaultBinDir, 'kubectl'), ['apply', '-n', ns, '-f', '-'], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kubectl apply exited ${code}`))));
    child.stdin.end(input);
  });
}

/** Scales the ElasticWorkload and waits for the distribution, printing the table whenever it changes. */
async function step(
  kc: KubeConfig,
  kubeconfig: string,
  replicas: number,
  expected: Record<string, number>,
  t0: number,
) {
  const core = kc.makeApiClient(CoreV1Api);
  await kubectl(kubeconfig, 'scale', 'ew', 'web', '-n', ns, `--replicas=${replicas}`);
  const want = Object.entries(expected)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  console.log(`\n── scale to ${replicas}: expecting ${want}`);
  let last = '';
  await until(`the distribution ${want} with every replica Ready`, 120_000, async () => {
    const { pods, virtual } = await livePods(core, 'app=web');
    const shown = table(pods, virtual);
    if (shown !== last) {
      console.log(`t=${((performance.now() - t0) / 1000).toFixed(1)}s\n${shown}\n`);
      last = shown;
    }
    const count: Record<string, number> = {};
    for (const p of pods) {
      // Ready, not only Running: the Service sends requests to ready replicas only.
      if (!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return undefined;
      const target = p.metadata?.labels?.['spillway.dev/unit'] ?? 'source';
      count[target] = (count[target] ?? 0) + 1;
    }
    const ok = Object.entries(expected).every(([k, v]) => (count[k] ?? 0) === v) && pods.length === replicas;
    return ok ? true : undefined;
  });
  console.log(`✓ ${replicas} replicas: ${want}`);
}

/** The pods of `selector` that are not being deleted, with the names of the virtual nodes. */
async function livePods(core: CoreV1Api, selector: string): Promise<{ pods: V1Pod[]; virtual: Set<string> }> {
  const pods = (await core.listNamespacedPod({ namespace: ns, labelSelector: selector })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
  const virtual = new Set(
    (await core.listNode({ labelSelector: 'spillway.dev/virtual-node=true' })).items.map(
      (n) => n.metadata!.name!,
    ),
  );
  return { pods, virtual };
}

/**
 * Sends {@link requests} requests to the web Service from a client pod on the virtual node, then counts, in each
 * replica's access log (on the real nodes and on the virtual node), the requests it answered.
 */
async function requestsThroughService(kc: KubeConfig, kubeconfig: string, registry: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const url = `http://web.${ns}.svc.cluster.local/`;
  // A burst pod (the placement webhook puts it on the virtual node) that only waits to be exec'd into.
  await apply(kubeconfig, [
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'client', labels: { 'spillway.dev/burst': 'always' } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'client', image: imageRef('busybox', registry), command: ['sleep', '3600'] }],
      },
    },
  ]);
  await until('the client pod Running', 120_000, async () =>
    (await core.readNamespacedPod({ namespace: ns, name: 'client' })).status?.phase === 'Running'
      ? true
      : undefined,
  );
  const svc = await core.readNamespacedService({ namespace: ns, name: 'web' });
  const { pods, virtual } = await livePods(core, 'app=web');
  const burst = pods.filter((p) => virtual.has(p.spec?.nodeName ?? ''));
  console.log(
    `\n── ${requests} requests from pod client (on ${nodeName}) to ${url} (ClusterIP ${svc.spec?.clusterIP}): ` +
      `${pods.length - burst.length} replicas on real nodes and ${burst.length} burst replicas serve them`,
  );
  // busybox's wget, each request bounded by `timeout` (not wget's own -T: busybox 1.35's wget crashes with it).
  const loop =
    `for i in $(seq ${requests}); do ` +
    `timeout 2 wget -q -U ${agent} -O /dev/null ${url} && echo answered || echo unanswered; done`;
  const out = await kubectl(kubeconfig, 'exec', '-n', ns, 'client', '--', 'sh', '-c', loop);
  const answered = out.split('\n').filter((l) => l === 'answered').length;
  const rows: string[][] = [];
  let logged = 0;
  const answeredBy = { real: 0, virtual: 0 };
  for (const p of pods) {
    const name = p.metadata!.name!;
    const log = await kubectl(kubeconfig, 'logs', '-n', ns, name);
    const count = log.split('\n').filter((l) => l.includes(`"${agent}"`)).length;
    logged += count;
    const kind = virtual.has(p.spec!.nodeName!) ? 'virtual' : 'real';
    answeredBy[kind] += count;
    rows.push([name, p.spec!.nodeName!, `${kind} node`, String(count)]);
  }
  const head = ['POD', 'NODE', 'WHERE', 'ANSWERED'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  console.log([head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n'));
  if (answered !== requests)
    fail(`${requests - answered} of ${requests} requests to ${url} were not answered`);
  if (logged !== answered)
    fail(`the client saw ${answered} answers, the replicas' access logs show ${logged}`);
  if (answeredBy.real === 0 || answeredBy.virtual === 0)
    fail(
      `the Service sent every request to one side (real nodes ${answeredBy.real}, virtual node ${answeredBy.virtual})`,
    );
  console.log(
    `✓ ${answered} of ${requests} requests to ${url} answered: ${answeredBy.real} by replicas on real nodes, ` +
      `${answeredBy.virtual} by burst replicas on the virtual node`,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    fail(
      'make demo runs pods in containerd sandboxes (mounts, namespaces, a bridge) and needs root (sudo make demo)',
    );
  const t0 = performance.now();
  const cluster = new LocalCluster();
  const started = await cluster.up((line) => console.log(`[cluster] ${line}`));
  const kubeconfig = cluster.kubeconfigPath;
  const kc = cluster.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  console.log(
    `control plane ready (${started ? 'started' : 'reused'}) after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  // The images the pods run, in the cluster's registry (built from the layer cache; pushed only if missing).
  const registry = cluster.registry;
  const seeded = await seedImages(registry, ['pause', 'busybox', 'nginx', 'coredns', 'metrics-server']);
  console.log(
    `registry ${registry}: ${seeded.pushed.length > 0 ? `pushed ${seeded.pushed.join(', ')}` : 'images already there'}`,
  );
  // The cluster's own nodes: two real kubelets, where examples/web's Deployment runs its first replicas.
  await cluster.addRealNodes((line) => console.log(`[cluster] ${line}`));
  console.log(
    `real nodes ${cluster.realNodes.map((n) => n.name).join(', ')} Ready after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const operator = spawn(
    process.execPath,
    [
      join(repoRoot, 'operator/cli.ts'),
      'run',
      '--provider',
      'local',
      '--node-name',
      nodeName,
      '--kubelet-port',
      String(await freePort()),
      '--metrics-port',
      '0',
      '--cri-endpoint',
      cluster.criEndpoint,
    ],
    {
      env: { ...process.env, KUBECONFIG: kubeconfig, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const operatorExit = new Promise<number | null>((resolve) => operator.on('exit', resolve));
  try {
    await until('the virtual node to be Ready', 60_000, async () => {
      const node = await core.readNode({ name: nodeName });
      return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
        ? true
        : undefined;
    });
    console.log(`operator running, virtual node ${nodeName} Ready`);
    // A previous run's namespace may still be terminating: new objects in it would be refused.
    await until(`namespace ${ns} of a previous run to finish terminating`, 120_000, async () => {
      const existing = await core.readNamespace({ name: ns }).catch(() => undefined);
      return existing?.metadata?.deletionTimestamp ? undefined : true;
    });
    await core.createNamespace({ body: { metadata: { name: ns } } }).catch(() => undefined);

    // examples/web as written; its image names the default cluster's registry, this cluster's may differ.
    const web = await manifests('examples/web/deployment.yaml');
    for (const obj of web) {
      if (obj.kind !== 'Deployment') continue;
      const c = (obj as V1Deployment).spec!.template.spec!.containers[0]!;
      c.image = c.image!.replace(`${DEFAULT_REGISTRY}/`, `${registry}/`);
      console.log(`examples/web runs ${c.image}`);
    }
    const ew = (await manifests('examples/web/elasticworkload.yaml'))[0]!;
    (ew.spec as { replicas: number }).replicas = 2;
    await apply(kubeconfig, [...web, ew]);
    await step(kc, kubeconfig, 2, { source: 2 }, t0);
    await step(kc, kubeconfig, 10, { source: 4, spot: 4, 'on-demand': 2 }, t0);
    await requestsThroughService(kc, kubeconfig, registry);
    await step(kc, kubeconfig, 3, { source: 3 }, t0);
    // The ElasticWorkload's own answer to "where are my replicas", once its status has caught up.
    await until('the ElasticWorkload status to show 3 ready', 30_000, async () => {
      const out = await kubectl(
        kubeconfig,
        'get',
        'ew',
        'web',
        '-n',
        ns,
        '-o',
        'jsonpath={.status.readyReplicas}/{.status.replicas}',
      );
      return out === '3/3' ? true : undefined;
    });
    console.log(`\n${await kubectl(kubeconfig, 'get', 'ew', '-n', ns, '-o', 'wide')}`);
    console.log(`demo passed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    if (keep) {
      operator.unref();
      console.log(
        `KEEP=1: everything is still running (operator pid ${operator.pid}).\nexport KUBECONFIG=${kubeconfig}`,
      );
    } else {
      await core.deleteNamespace({ name: ns }).catch(() => undefined);
      // Let the operator stop the sandboxes of the deleted namespace before it goes.
      await until('demo pods gone', 60_000, async () =>
        (await core.listNamespacedPod({ namespace: ns })).items.length === 0 ? true : undefined,
      ).catch(() => undefined);
      operator.kill('SIGTERM');
      await operatorExit;
      await core.deleteNode({ name: nodeName }).catch(() => undefined);
      if (started) await cluster.down();
    }
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
