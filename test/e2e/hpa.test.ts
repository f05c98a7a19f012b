/**
 * e2e (issue 16, point 5): peak bursting with a real HorizontalPodAutoscaler. An ElasticWorkload is the HPA's
 * target; CPU comes from metrics-server (the cluster addon), which scrapes the real kubelets and the virtual
 * node's /metrics/resource. Load from a client pod drives the HPA up, the overflow goes to the spot unit on the
 * virtual node, `kubectl top pod` shows the burst pods, the load stops and scale-in removes the burst replicas
 * first. The timeline (HPA replicas, replicas per place, CPU) goes to `<BENCH_RESULTS_DIR or the cluster
 * folder>/hpa.{json,svg}`.
 */
import { writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AutoscalingV2Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { lineChart } from '../../bench/lib/plot.ts';
import {
  defaultBinDir,
  defaultClusterDir,
  LocalCluster,
  testCluster,
  waitFor,
  type TestCluster,
} from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { startLocalOperator, type LocalOperator } from '../support/local-operator.ts';

const nodeName = 'spillway-hpa-e2e';
const execFileAsync = promisify(execFile);
const localCluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let operator: LocalOperator | undefined;
const AGNHOST = () => imageRef('agnhost', inject('registry'));

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    join(defaultBinDir, 'kubectl'),
    ['--kubeconfig', cluster.kubeconfigPath, ...args],
    { encoding: 'utf8', timeout: 60_000 },
  );
  return stdout;
}

/** One sample of the timeline. */
interface Sample {
  t: number;
  hpaDesired: number;
  cpuPercent: number | null;
  source: number;
  burst: number;
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  operator = await startLocalOperator(cluster.kc, cluster.kubeconfigPath, nodeName, localCluster.criEndpoint);
  ns = await createTestNamespace(cluster.kc, 'e2e-hpa');
}, 240_000);

afterAll(async () => {
  await ns?.remove();
  await operator?.stop();
}, 180_000);

describe('a real HPA over an ElasticWorkload', () => {
  it('scales up under load onto the spot unit, shows burst pods in kubectl top, and scales in burst-first', async () => {
    const labels = { app: 'web' };
    // Each /shell request burns CPU in the replica that serves it: load follows requests, as a web service's does.
    const manifest = [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              terminationGracePeriodSeconds: 1,
              containers: [
                {
                  name: 'web',
                  image: AGNHOST(),
                  args: ['netexec', '--http-port=8080'],
                  ports: [{ containerPort: 8080 }],
                  resources: { requests: { cpu: '100m', memory: '32Mi' }, limits: { memory: '64Mi' } },
                  readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'web' },
        spec: { selector: labels, ports: [{ port: 80, targetPort: 8080 }] },
      },
      {
        apiVersion: 'elastic.spillway.dev/v1alpha1',
        kind: 'ElasticWorkload',
        metadata: { name: 'web' },
        spec: {
          sourceTarget: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', min: 2, max: 2 },
          replicas: 2,
          elasticUnit: [
            {
              name: 'spot',
              labels: { 'spillway.dev/burst': 'always', 'spillway.dev/capacity': 'spot' },
              max: 4,
            },
          ],
        },
      },
      {
        apiVersion: 'autoscaling/v2',
        kind: 'HorizontalPodAutoscaler',
        metadata: { name: 'web' },
        spec: {
          scaleTargetRef: {
            apiVersion: 'elastic.spillway.dev/v1alpha1',
            kind: 'ElasticWorkload',
            name: 'web',
          },
          minReplicas: 2,
          maxReplicas: 6,
          metrics: [
            {
              type: 'Resource',
              resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } },
            },
          ],
          // The test's patience, not production advice: scale in as soon as the load is gone.
          behavior: {
            scaleDown: { stabilizationWindowSeconds: 0 },
            scaleUp: { stabilizationWindowSeconds: 0 },
          },
        },
      },
    ];
    await new Promise<void>((resolve, reject) => {
      const child = execFile(
        join(defaultBinDir, 'kubectl'),
        ['--kubeconfig', cluster.kubeconfigPath, 'apply', '-n', ns.name, '-f', '-'],
        (err) => (err ? reject(err) : resolve()),
      );
      child.stdin!.end(manifest.map((m) => JSON.stringify(m)).join('\n'));
    });

    const autoscaling = cluster.kc.makeApiClient(AutoscalingV2Api);
    const t0 = Date.now();
    const timeline: Sample[] = [];
    const sample = async (): Promise<{ pods: V1Pod[]; s: Sample }> => {
      const hpa = await autoscaling.readNamespacedHorizontalPodAutoscaler({
        name: 'web',
        namespace: ns.name,
      });
      const pods = (
        await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' })
      ).items.filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase === 'Running');
      const burst = pods.filter((p) => p.spec?.nodeName === nodeName).length;
      const s: Sample = {
        t: (Date.now() - t0) / 1000,
        hpaDesired: hpa.status?.desiredReplicas ?? 0,
        cpuPercent: hpa.status?.currentMetrics?.[0]?.resource?.current.averageUtilization ?? null,
        source: pods.length - burst,
        burst,
      };
      // A sample a second, and every change: enough for the plot.
      const last = timeline[timeline.length - 1];
      const changed =
        !last || (['hpaDesired', 'cpuPercent', 'source', 'burst'] as const).some((k) => last[k] !== s[k]);
      if (changed || s.t - last.t >= 1) timeline.push(s);
      return { pods, s };
    };
    const watch = async (what: string, timeoutMs: number, done: (s: Sample, pods: V1Pod[]) => boolean) =>
      waitFor(what, timeoutMs, async () => {
        const { pods, s } = await sample();
        return done(s, pods);
      });

    await watch(
      '2 replicas on the real nodes and a CPU reading',
      180_000,
      (s) => s.source === 2 && s.cpuPercent !== null,
    );

    // The load: one client on a real node, sending CPU-burning requests back to back through the Service.
    const work = 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; hostname';
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'load' },
        spec: {
          terminationGracePeriodSeconds: 0,
          nodeSelector: { 'spillway.dev/node-kind': 'real' },
          containers: [
            {
              name: 'load',
              image: AGNHOST(),
              command: [
                'sh',
                '-c',
                `while true; do curl -s -G --max-time 10 http://web/shell --data-urlencode 'cmd=${work}' >/dev/null; done`,
              ],
            },
          ],
        },
      },
    });
    await watch(
      'the HPA at 6 with 4 replicas Running on the spot unit',
      300_000,
      (s) => s.hpaDesired === 6 && s.burst === 4,
    );
    const ew = JSON.parse(await kubectl('-n', ns.name, 'get', 'ew', 'web', '-o', 'json')) as {
      status: { replicas?: number };
      spec: { replicas: number };
    };
    expect(ew.spec.replicas).toBe(6);
    const spot = (
      await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'spillway.dev/unit=spot' })
    ).items;
    expect(spot.map((p) => p.spec?.nodeName)).toEqual(Array(4).fill(nodeName));

    // kubectl top pod lists the burst pods with their CPU, read by metrics-server from the virtual node.
    let top = '';
    await waitFor('kubectl top pod to show every burst pod', 120_000, async () => {
      top = await kubectl('-n', ns.name, 'top', 'pod', '-l', 'spillway.dev/unit=spot', '--no-headers').catch(
        () => '',
      );
      return spot.every((p) => top.includes(p.metadata!.name!));
    });
    expect(top).toMatch(/\d+m/);

    // Load gone: the HPA scales in to 2, and the burst replicas go first: the source keeps its 2.
    await core.deleteNamespacedPod({ name: 'load', namespace: ns.name, gracePeriodSeconds: 0 });
    let sourceMin = Infinity;
    await watch('the HPA back at 2 with nothing on the virtual node', 300_000, (s) => {
      sourceMin = Math.min(sourceMin, s.source);
      return s.hpaDesired === 2 && s.burst === 0 && s.source === 2;
    });
    expect(sourceMin, 'the source never lost a replica while the burst scaled in').toBe(2);

    const out = process.env.BENCH_RESULTS_DIR ?? localCluster.dir;
    writeFileSync(join(out, 'hpa.json'), JSON.stringify({ name: 'hpa', samples: timeline }, null, 2) + '\n');
    writeFileSync(
      join(out, 'hpa.svg'),
      lineChart({
        title: 'HPA over an ElasticWorkload: replicas by place under load (load starts, then stops)',
        xLabel: 'seconds',
        yLabel: 'replicas',
        series: [
          { name: 'HPA desired', points: timeline.map((s) => [s.t, s.hpaDesired]) },
          { name: 'on real nodes', points: timeline.map((s) => [s.t, s.source]) },
          { name: 'on the virtual node (spot)', points: timeline.map((s) => [s.t, s.burst]) },
        ],
      }),
    );
  }, 900_000);
});
