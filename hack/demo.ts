/**
 * make demo: spillway on one machine. The local control plane (real apiserver, scheduler and controllers, two
 * kwok "normal" nodes of 4 CPUs), the operator with the `local` provider (pods run as Linux-namespace sandboxes
 * on this host), and examples/web as an ElasticWorkload scaled 2 → 10 → 3 while a table shows where every
 * replica runs. A burst pod then calls a backend Service through its ClusterIP, resolved by CoreDNS.
 *
 * Exits 0 when every step reached its expected distribution, non-zero with the step that did not.
 * KEEP=1 leaves everything running and prints the kubeconfig.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { defaultBinDir, LocalCluster, repoRoot } from '../test/support/cluster.ts';
import { freePort } from '../test/support/ports.ts';
import { kubectl } from '../test/support/kube.ts';

const ns = 'spillway-demo';
const nodeName = 'spillway-virtual-local';
const keep = process.env.KEEP === '1';
// Images are not pulled by the local provider: the command runs on this host's filesystem.
const serve = ['python3', '-m', 'http.server', '8080'];

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
      const where = virtualNodes.has(node) ? 'virtual node' : p.spec?.nodeName ? 'normal node' : '-';
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
  await until(`the distribution ${want} with every replica Running`, 120_000, async () => {
    const pods = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=web' })).items.filter(
      (p) => !p.metadata?.deletionTimestamp,
    );
    const virtual = new Set(
      (await core.listNode({ labelSelector: 'spillway.dev/virtual-node=true' })).items.map(
        (n) => n.metadata!.name!,
      ),
    );
    const shown = table(pods, virtual);
    if (shown !== last) {
      console.log(`t=${((performance.now() - t0) / 1000).toFixed(1)}s\n${shown}\n`);
      last = shown;
    }
    const count: Record<string, number> = {};
    for (const p of pods) {
      if (p.status?.phase !== 'Running') return undefined;
      const target = p.metadata?.labels?.['spillway.dev/unit'] ?? 'source';
      count[target] = (count[target] ?? 0) + 1;
    }
    const ok = Object.entries(expected).every(([k, v]) => (count[k] ?? 0) === v) && pods.length === replicas;
    return ok ? true : undefined;
  });
  console.log(`✓ ${replicas} replicas: ${want}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    fail('make demo runs pods as Linux-namespace sandboxes and needs root (sudo make demo)');
  const t0 = performance.now();
  const cluster = new LocalCluster();
  const started = await cluster.up((line) => console.log(`[cluster] ${line}`));
  const kubeconfig = cluster.kubeconfigPath;
  const kc = cluster.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  console.log(
    `control plane ready (${started ? 'started' : 'reused'}) after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
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
    await core.createNamespace({ body: { metadata: { name: ns } } }).catch(() => undefined);

    // examples/web as written, with a command the host can run (the local provider does not pull images).
    const web = await manifests('examples/web/deployment.yaml');
    for (const obj of web) {
      if (obj.kind === 'Deployment') {
        const d = obj as V1Deployment;
        const c = d.spec!.template.spec!.containers[0]!;
        c.command = serve;
        delete c.resources;
      }
    }
    const ew = (await manifests('examples/web/elasticworkload.yaml'))[0]!;
    (ew.spec as { replicas: number }).replicas = 2;
    await apply(kubeconfig, [...web, ew]);
    await step(kc, kubeconfig, 2, { source: 2 }, t0);
    await step(kc, kubeconfig, 10, { source: 4, spot: 4, 'on-demand': 2 }, t0);

    // A backend on the virtual node, called by a burst replica through its ClusterIP and CoreDNS.
    const backendLabels = { app: 'backend', 'spillway.dev/burst': 'always' };
    await apply(kubeconfig, [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'backend' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'backend' } },
          template: {
            metadata: { labels: backendLabels },
            spec: {
              containers: [
                {
                  name: 'backend',
                  image: 'python',
                  command: serve,
                  ports: [{ containerPort: 8080 }],
                  readinessProbe: { tcpSocket: { port: 8080 } },
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'backend' },
        spec: { selector: { app: 'backend' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    ]);
    await until('backend ready', 60_000, async () => {
      const d = await kc
        .makeApiClient(AppsV1Api)
        .readNamespacedDeployment({ namespace: ns, name: 'backend' });
      return d.status?.readyReplicas === 2 ? true : undefined;
    });
    const burst =
      (await core.listNamespacedPod({ namespace: ns, labelSelector: 'spillway.dev/unit=spot' })).items[0] ??
      fail('no burst pod');
    const svc = await core.readNamespacedService({ namespace: ns, name: 'backend' });
    const url = `http://backend.${ns}.svc.cluster.local/`;
    const status = await until(
      `a burst pod to reach ${url}`,
      30_000,
      async () =>
        (
          await kubectl(
            kubeconfig,
            'exec',
            '-n',
            ns,
            burst.metadata!.name!,
            '--',
            'python3',
            '-c',
            `import urllib.request; print(urllib.request.urlopen('${url}', timeout=5).status)`,
          )
        ).trim() || undefined,
    );
    if (status !== '200') fail(`the burst pod got HTTP ${status} from ${url}`);
    console.log(
      `✓ burst pod ${burst.metadata?.name} → ${url} (ClusterIP ${svc.spec?.clusterIP}) → HTTP ${status}`,
    );

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
