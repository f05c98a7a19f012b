/**
 * e2e (issue 16, point 6): Spark executors on spot, for real. SparkPi is submitted as examples/spark/README.md
 * has a user do it: rbac.yaml, the pod templates as a ConfigMap, and submit-job.yaml, whose pod runs
 * `spark-submit --master k8s://https://kubernetes.default.svc:443 --deploy-mode cluster` from spillway/spark. The
 * operator runs as `spillway run --provider local` on the host (webhooks live, a virtual node whose pods run in
 * containerd), so executors really run. The driver lands on a real node; the executors, labelled by the executor
 * template (burst always, capacity spot), land on the virtual node with the spot annotation the placement webhook
 * adds, register with the driver through its headless Service, and the driver Succeeds with "Pi is roughly 3.14".
 *
 * The example files are applied as written but for what a test cluster differs in: the namespace (each test file
 * has its own, instead of `spark`) and the registry (this cluster's `localhost:PORT` instead of `localhost:5000`).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatchV1Api, CoreV1Api, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_REGISTRY } from '../../hack/images/catalog.ts';
import {
  defaultBinDir,
  defaultClusterDir,
  LocalCluster,
  repoRoot,
  testCluster,
  waitFor,
  type TestCluster,
} from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { startLocalOperator, type LocalOperator } from '../support/local-operator.ts';

const nodeName = 'spillway-spark-e2e';
const execFileAsync = promisify(execFile);
const localCluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
const examples = join(repoRoot, 'examples/spark');
const realNodes = inject('realNodes');
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let operator: LocalOperator | undefined;

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const run = execFileAsync(
    join(defaultBinDir, 'kubectl'),
    ['--kubeconfig', cluster.kubeconfigPath, ...args],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  if (stdin !== undefined) run.child.stdin!.end(stdin);
  return (await run).stdout;
}

/**
 * An example file's objects for this test: in the test's namespace rather than `spark`, images from this
 * cluster's registry rather than `localhost:5000`, and without the Namespace object (the test made its own).
 */
function exampleObjects(file: string): Record<string, unknown>[] {
  const text = readFileSync(join(examples, file), 'utf8')
    .replaceAll(`${DEFAULT_REGISTRY}/`, `${inject('registry')}/`)
    .replaceAll('namespace: spark', `namespace: ${ns.name}`)
    .replaceAll('spark.kubernetes.namespace=spark', `spark.kubernetes.namespace=${ns.name}`);
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as Record<string, unknown>)
    .filter((o) => o && o.kind !== 'Namespace');
}

/** The pod templates of examples/spark as spark-submit reads them from the ConfigMap the README has a user make. */
function podTemplates(): Record<string, string> {
  const dir = join(examples, 'pod-templates');
  return {
    'driver.yaml': readFileSync(join(dir, 'driver.yaml'), 'utf8'),
    'executor.yaml': readFileSync(join(dir, 'executor.yaml'), 'utf8'),
  };
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  expect(realNodes.length, 'the e2e tier runs on real nodes (as root)').toBeGreaterThanOrEqual(2);
  operator = await startLocalOperator(cluster.kc, cluster.kubeconfigPath, nodeName, localCluster.criEndpoint);
  ns = await createTestNamespace(cluster.kc, 'e2e-spark');
}, 240_000);

afterAll(async () => {
  await ns?.remove();
  await operator?.stop();
}, 180_000);

describe('SparkPi submitted in cluster mode', () => {
  it('runs the driver on a real node and the executors on the spot unit of the virtual node', async () => {
    const rbac = exampleObjects('rbac.yaml');
    await kubectl(['apply', '-f', '-'], rbac.map((o) => JSON.stringify(o)).join('\n'));
    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'spark-pod-templates' }, data: podTemplates() },
    });
    const t0 = Date.now();
    await kubectl(
      ['apply', '-f', '-'],
      exampleObjects('submit-job.yaml')
        .map((o) => JSON.stringify(o))
        .join('\n'),
    );

    // The driver deletes its executors and its Service when the application ends: look at them while they run.
    const executors = new Map<string, V1Pod>();
    let driverSvc: V1Service | undefined;
    let driver: V1Pod | undefined;
    let firstExecutorRunning: number | undefined;
    // A check that throws only counts as "not yet" in waitFor: a failure ends the wait and is thrown after it.
    let failure: string | undefined;
    await waitFor(
      'the driver pod to finish',
      600_000,
      async () => {
        const pods = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'spark-role' }))
          .items;
        const submit = (
          await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'job-name=spark-pi-submit' })
        ).items;
        if (submit.some((p) => p.status?.phase === 'Failed'))
          failure = 'spark-submit failed (its pod is Failed) before the driver finished';
        for (const p of pods.filter((p) => p.metadata?.labels?.['spark-role'] === 'executor')) {
          executors.set(p.metadata!.name!, p);
          if (p.status?.phase === 'Running') firstExecutorRunning ??= Date.now();
        }
        driver = pods.find((p) => p.metadata?.labels?.['spark-role'] === 'driver');
        driverSvc ??= (await core.listNamespacedService({ namespace: ns.name })).items.find((s) =>
          s.metadata!.name!.endsWith('-driver-svc'),
        );
        const phase = driver?.status?.phase;
        if (phase === 'Failed') failure = 'the driver pod failed';
        return phase === 'Succeeded' || failure !== undefined;
      },
      1000,
    );
    if (failure) {
      const tail = async (pod: string) =>
        kubectl(['-n', ns.name, 'logs', pod, '--tail=40']).catch((err: Error) => err.message);
      const submitLog = await tail('job/spark-pi-submit');
      const driverLog = driver ? await tail(driver.metadata!.name!) : '(no driver pod)';
      throw new Error(`${failure}\nspark-submit's log ends with:\n${submitLog}\nthe driver's:\n${driverLog}`);
    }
    const seconds = (ms: number) => Math.round(ms / 100) / 10;
    const driverStarted = Date.parse(String(driver!.status!.startTime));
    const driverEnded = Date.parse(
      String(driver!.status!.containerStatuses?.[0]?.state?.terminated?.finishedAt ?? new Date()),
    );
    process.stdout.write(
      `spark: submitted to driver Succeeded in ${seconds(Date.now() - t0)} s (driver ran ${seconds(driverEnded - driverStarted)} s; ` +
        `first executor Running ${firstExecutorRunning ? seconds(firstExecutorRunning - t0) : '?'} s after submission)\n`,
    );

    // The driver stays home: a real node, not the virtual one.
    expect(realNodes).toContain(driver!.spec!.nodeName);

    // Two executors, both on the virtual node, with the spot unit's labels and the webhook's spot annotation.
    expect(executors.size).toBe(2);
    for (const e of executors.values()) {
      expect(e.spec!.nodeName, e.metadata!.name).toBe(nodeName);
      expect(e.metadata!.labels).toMatchObject({
        'spillway.dev/burst': 'always',
        'spillway.dev/capacity': 'spot',
      });
      expect(e.metadata!.annotations).toMatchObject({ 'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo' });
    }

    // The executors reach the driver by its headless Service's DNS name, and the driver saw both register from
    // their addresses on the virtual node's network.
    expect(driverSvc?.spec?.clusterIP).toBe('None');
    for (const e of executors.values()) {
      const url = e.spec!.containers[0]!.env?.find((v) => v.name === 'SPARK_DRIVER_URL')?.value;
      expect(url).toBe(`spark://CoarseGrainedScheduler@${driverSvc!.metadata!.name}.${ns.name}.svc:7078`);
    }
    // As the README has a user read the answer: the driver's whole log.
    const log = await kubectl(['-n', ns.name, 'logs', '-l', 'spark-role=driver', '--tail=-1']);
    const registered = [...log.matchAll(/Registered executor .*\((10\.[\d.]+):\d+\) with ID (\d+)/g)];
    expect(registered.map((m) => m[2]).sort()).toEqual(['1', '2']);
    const executorIPs = [...executors.values()].map((e) => e.status?.podIP).filter(Boolean);
    for (const m of registered) expect(executorIPs).toContain(m[1]);
    expect(log).toMatch(/Pi is roughly 3\.14/);
    process.stdout.write(
      `spark: driver on ${driver!.spec!.nodeName}; executors ${[...executors.values()]
        .map((e) => `${e.metadata!.name} on ${e.spec!.nodeName} (${e.status?.podIP})`)
        .join(', ')}; ${/Pi is roughly [\d.]+/.exec(log)![0]}\n`,
    );

    // The submission followed the driver to its end and reports success.
    const batch = cluster.kc.makeApiClient(BatchV1Api);
    let job: Awaited<ReturnType<BatchV1Api['readNamespacedJob']>> | undefined;
    await waitFor('the submit Job to finish', 120_000, async () => {
      job = await batch.readNamespacedJob({ name: 'spark-pi-submit', namespace: ns.name });
      return (job.status?.succeeded ?? 0) + (job.status?.failed ?? 0) > 0;
    });
    expect(job!.status?.succeeded, 'the spark-pi-submit Job succeeded').toBe(1);
  }, 900_000);
});
