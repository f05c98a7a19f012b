/**
 * e2e (issue 16, point 4): connectivity both ways between the real kubelet nodes (test/support/real-nodes.ts) and
 * a virtual node with the local provider. One Service has a backend on a real node and one on the virtual node; a
 * client on another real node and a client on the virtual node each reach both backends by pod IP, by ClusterIP
 * and by every DNS name (`svc`, `svc.ns`, the FQDN) through the cluster's CoreDNS addon; the headless Service
 * resolves to both; a burst pod reaches `kubernetes.default`. Every request is counted: all must be answered.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CoreV1Api, type V1Pod, type V1PodSpec } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import {
  startClusterNetwork,
  type LocalClusterNetwork,
} from '../../operator/providers/local/cluster-network.ts';
import { defaultBinDir, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { startLocalNode, tearDownLocalNode, type LocalNode } from '../support/local-network.ts';
import { join } from 'node:path';

const nodeName = 'spillway-real-e2e';
const execFileAsync = promisify(execFile);
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;
let net: LocalClusterNetwork;
const realNodes = inject('realNodes');
const AGNHOST = () => imageRef('agnhost', inject('registry'));

const onVirtualNode = (spec: V1PodSpec): V1PodSpec => ({
  nodeSelector: { 'kubernetes.io/hostname': nodeName },
  tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
  terminationGracePeriodSeconds: 1,
  ...spec,
});
const onRealNode = (node: string, spec: V1PodSpec): V1PodSpec => ({
  nodeSelector: { 'kubernetes.io/hostname': node },
  terminationGracePeriodSeconds: 1,
  ...spec,
});

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    join(defaultBinDir, 'kubectl'),
    ['--kubeconfig', cluster.kubeconfigPath, ...args],
    { encoding: 'utf8', timeout: 60_000 },
  );
  return stdout;
}

async function runningPod(
  name: string,
  spec: V1PodSpec,
  labels: Record<string, string> = {},
): Promise<V1Pod> {
  await core.createNamespacedPod({ namespace: ns.name, body: { metadata: { name, labels }, spec } });
  let pod: V1Pod | undefined;
  await waitFor(`pod ${name} Ready`, 120_000, async () => {
    pod = await core.readNamespacedPod({ name, namespace: ns.name });
    return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  });
  return pod!;
}

/**
 * `count` requests from `client` to `url` (agnhost netexec's /hostname), one curl each: the backends that
 * answered, and how many requests failed.
 */
async function requests(
  client: string,
  url: string,
  count: number,
): Promise<{ answers: string[]; failed: number }> {
  const script = [
    `for i in $(seq ${count}); do`,
    `  out=$(curl -s --max-time 3 ${url}) && echo "ok $out" || echo "failed"`,
    'done',
  ].join('\n');
  const out = await kubectl('-n', ns.name, 'exec', client, '--', 'sh', '-c', script);
  const lines = out.trim().split('\n');
  return {
    answers: lines.filter((l) => l.startsWith('ok ')).map((l) => l.slice(3)),
    failed: lines.filter((l) => !l.startsWith('ok ')).length,
  };
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  expect(realNodes.length, 'the e2e tier runs on real nodes (as root)').toBeGreaterThanOrEqual(2);
  local = await startLocalNode(cluster.kc, nodeName);
  net = await startClusterNetwork(cluster.kc, cluster.kubeconfigPath, local.provider, {
    corednsBinary: join(defaultBinDir, 'coredns'),
    stateDir: join(cluster.kubeconfigPath, '..'),
    nodeName,
  });
  ns = await createTestNamespace(cluster.kc, 'e2e-real');
}, 240_000);

afterAll(async () => {
  await ns?.remove();
  await net?.stop();
  await tearDownLocalNode(cluster.kc, nodeName, local);
}, 120_000);

describe('a cluster of real nodes and a virtual node', () => {
  const backend = (spec: (s: V1PodSpec) => V1PodSpec) =>
    spec({
      containers: [
        {
          name: 'http',
          image: AGNHOST(),
          args: ['netexec', '--http-port=8080'],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
        },
      ],
    });
  const client = (spec: (s: V1PodSpec) => V1PodSpec) =>
    spec({ containers: [{ name: 'client', image: AGNHOST(), args: ['pause'] }] });
  const pods: Record<string, V1Pod> = {};

  beforeAll(async () => {
    const labels = { app: 'both' };
    for (const svc of [
      { name: 'both', spec: { selector: labels, ports: [{ port: 80, targetPort: 8080 }] } },
      {
        name: 'both-headless',
        spec: { selector: labels, clusterIP: 'None', ports: [{ port: 8080, targetPort: 8080 }] },
      },
    ])
      await core.createNamespacedService({
        namespace: ns.name,
        body: { metadata: { name: svc.name }, spec: svc.spec },
      });
    const made = await Promise.all([
      runningPod(
        'backend-real',
        backend((s) => onRealNode(realNodes[0]!, s)),
        labels,
      ),
      runningPod('backend-virtual', backend(onVirtualNode), labels),
      runningPod(
        'client-real',
        client((s) => onRealNode(realNodes[1]!, s)),
      ),
      runningPod('client-virtual', client(onVirtualNode)),
    ]);
    for (const p of made) pods[p.metadata!.name!] = p;
    // Both backends in the Service's endpoints before anyone asks.
    await waitFor('both backends ready in the EndpointSlice', 60_000, async () => {
      const ready = new Set<string>();
      const slices = await kubectl(
        '-n',
        ns.name,
        'get',
        'endpointslices',
        '-l',
        'kubernetes.io/service-name=both',
        '-o',
        'json',
      );
      for (const s of (
        JSON.parse(slices) as {
          items: { endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[] }[];
        }
      ).items)
        for (const e of s.endpoints ?? []) if (e.conditions?.ready) e.addresses.forEach((a) => ready.add(a));
      return ready.size === 2;
    });
  }, 240_000);

  it('places the backends and clients where asked: real nodes run real pods from the registry', () => {
    expect(pods['backend-real']!.spec!.nodeName).toBe(realNodes[0]);
    expect(pods['client-real']!.spec!.nodeName).toBe(realNodes[1]);
    expect(pods['backend-virtual']!.spec!.nodeName).toBe(nodeName);
    expect(pods['backend-real']!.status!.podIP).toMatch(/^10\.248\./);
    expect(pods['backend-virtual']!.status!.podIP).toMatch(/^10\.250\./);
  });

  for (const from of ['client-real', 'client-virtual']) {
    it(`${from} reaches both backends by pod IP, ClusterIP and every DNS name, every request answered`, async () => {
      const svc = await core.readNamespacedService({ name: 'both', namespace: ns.name });
      const targets = [
        `http://${pods['backend-real']!.status!.podIP}:8080/hostname`,
        `http://${pods['backend-virtual']!.status!.podIP}:8080/hostname`,
      ];
      const byService = [
        `http://${svc.spec!.clusterIP}/hostname`,
        'http://both/hostname',
        `http://both.${ns.name}/hostname`,
        `http://both.${ns.name}.svc.cluster.local/hostname`,
      ];
      // The node's kube-proxy programs a new Service about a second after its EndpointSlice is ready: count from
      // the moment this client's node answers through the ClusterIP once, as a user would after a deploy.
      await waitFor(`${from}: the Service programmed on its node`, 60_000, async () => {
        const r = await requests(from, byService[0]!, 1);
        return r.failed === 0;
      });
      let total = 0;
      let failed = 0;
      const failedAt: string[] = [];
      for (const [i, url] of targets.entries()) {
        const r = await requests(from, url, 5);
        total += r.answers.length + r.failed;
        failed += r.failed;
        if (r.failed > 0) failedAt.push(`${url}: ${r.failed}`);
        expect(new Set(r.answers)).toEqual(new Set([i === 0 ? 'backend-real' : 'backend-virtual']));
      }
      for (const url of byService) {
        // kube-proxy spreads connections at random: ask until both backends answered (each asks ≤ 40 times).
        const seen = new Set<string>();
        for (let round = 0; round < 4 && seen.size < 2; round++) {
          const r = await requests(from, url, 10);
          total += r.answers.length + r.failed;
          failed += r.failed;
          if (r.failed > 0) failedAt.push(`${url}: ${r.failed}`);
          r.answers.forEach((a) => seen.add(a));
        }
        expect([...seen].sort(), url).toEqual(['backend-real', 'backend-virtual']);
      }
      process.stdout.write(`${from}: ${total - failed}/${total} requests answered\n`);
      expect(failed, failedAt.join(', ')).toBe(0);
    });
  }

  it('resolves the headless Service to both backends from both sides', async () => {
    const want = [pods['backend-real']!.status!.podIP!, pods['backend-virtual']!.status!.podIP!].sort();
    for (const from of ['client-real', 'client-virtual']) {
      const out = await kubectl(
        '-n',
        ns.name,
        'exec',
        from,
        '--',
        'dig',
        '+short',
        `both-headless.${ns.name}.svc.cluster.local`,
      );
      expect(out.trim().split('\n').sort(), from).toEqual(want);
    }
  });

  it('lets a burst pod reach kubernetes.default with its ServiceAccount token', async () => {
    const out = await kubectl(
      '-n',
      ns.name,
      'exec',
      'client-virtual',
      '--',
      'sh',
      '-c',
      'curl -s --max-time 5 --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt ' +
        '-H "Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" ' +
        'https://kubernetes.default.svc/version',
    );
    expect(JSON.parse(out)).toMatchObject({ gitVersion: 'v1.36.3' });
  });

  it('serves kubectl logs and exec for pods on the real nodes (the apiserver reaches their kubelets)', async () => {
    expect(await kubectl('-n', ns.name, 'exec', 'backend-real', '--', 'cat', '/etc/hostname')).toContain(
      'backend-real',
    );
    await requests('client-real', `http://${pods['backend-real']!.status!.podIP}:8080/hostname`, 1);
    expect(await kubectl('-n', ns.name, 'logs', 'backend-real')).toContain('GET /hostname');
  });
});
