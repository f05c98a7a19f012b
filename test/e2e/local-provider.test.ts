/**
 * e2e (issue 6): the local control plane + CoreDNS + a virtual node with the `local` provider. Pods run as
 * real sandboxes on this host; what is asserted is what a user sees through the API and kubectl.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import {
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findSandboxProcesses } from '../../operator/providers/local/runtime.ts';
import { defaultBinDir, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { createTestNamespace } from '../support/namespace.ts';
import {
  startClusterNetwork,
  type LocalClusterNetwork,
} from '../../operator/providers/local/cluster-network.ts';
import {
  removeLocalNetwork,
  removeNodeState,
  startLocalNode,
  type LocalNode,
} from '../support/local-network.ts';

const nodeName = 'spillway-local-e2e';
const execFileAsync = promisify(execFile);
let cluster: TestCluster;
let core: CoreV1Api;
let ns: { name: string; remove: () => Promise<void> };
let local: LocalNode;
let net: LocalClusterNetwork;

/** A pod spec that lands on the local virtual node (no webhooks run here: placement is explicit). */
function onLocalNode(spec: V1PodSpec): V1PodSpec {
  return {
    nodeSelector: { 'kubernetes.io/hostname': nodeName },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
    terminationGracePeriodSeconds: 2,
    ...spec,
  };
}

const server = [
  'import http.server, socket, os',
  'class H(http.server.BaseHTTPRequestHandler):',
  '    def do_GET(self):',
  '        body = socket.gethostname().encode()',
  '        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()',
  '        self.wfile.write(body)',
  '    def log_message(self, *a): print(self.requestline, flush=True)',
  'http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()',
].join('\n');

/** Runs kubectl asynchronously: the kubelet API it reaches through the apiserver lives in this process. */
async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    `${defaultBinDir}/kubectl`,
    ['--kubeconfig', cluster.kubeconfigPath, ...args],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  return stdout;
}

async function pod(name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ name, namespace: ns.name });
}

async function waitPhase(name: string, phases: string[]): Promise<V1Pod> {
  let last: V1Pod | undefined;
  await waitFor(`pod ${name} in ${phases.join('/')}`, 90_000, async () => {
    last = await pod(name);
    return phases.includes(last.status?.phase ?? '');
  });
  return last!;
}

async function logsOf(name: string): Promise<string> {
  return core.readNamespacedPodLog({ name, namespace: ns.name });
}

function sandboxUids(): string[] {
  const dir = `/run/spillway/${nodeName}/sandboxes`;
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Everything a sandbox could leave on the host: state, leases, veths, processes, host mounts, cgroups. */
function leftovers(): Record<string, unknown> {
  const state = `/run/spillway/${nodeName}`;
  const cgroups = `/sys/fs/cgroup/memory/spillway/${nodeName}`;
  return {
    sandboxes: sandboxUids(),
    leases: existsSync(`${state}/leases`) ? readdirSync(`${state}/leases`) : [],
    veths: execFileSync('ip', ['-o', 'link', 'show', 'master', 'spillway0'], { encoding: 'utf8' }).trim(),
    processes: findSandboxProcesses(`${state}/sandboxes`).map((p) => p.ref.pid),
    mounts: readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(state)),
    cgroups: existsSync(cgroups)
      ? readdirSync(cgroups, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name)
      : [],
  };
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  local = await startLocalNode(cluster.kc, nodeName);
  net = await startClusterNetwork(cluster.kc, cluster.kubeconfigPath, local.provider, {
    corednsBinary: join(defaultBinDir, 'coredns'),
    stateDir: dirname(cluster.kubeconfigPath),
  });
  ns = await createTestNamespace(cluster.kc, 'e2e-local');
}, 180_000);

afterAll(async () => {
  await ns?.remove();
  if (local) {
    await waitFor(
      'sandboxes of the test namespace deleted',
      60_000,
      async () => sandboxUids().length === 0,
    ).catch(() => undefined);
    await local.stop();
  }
  await net?.stop();
  await cluster?.kc
    .makeApiClient(CoreV1Api)
    .deleteNode({ name: nodeName })
    .catch(() => undefined);
  removeLocalNetwork();
  if (sandboxUids().length === 0) removeNodeState(nodeName);
}, 120_000);

describe('local provider on a virtual node', () => {
  it('serves a ClusterIP Service resolved through CoreDNS from both replicas (a), with readiness in endpoints (d)', async () => {
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    const labels = { app: 'backend' };
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'backend' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: onLocalNode({
              containers: [
                {
                  name: 'http',
                  image: 'python:3',
                  command: ['sh', '-c', `touch /tmp/healthy; exec python3 -c '${server}'`],
                  ports: [{ name: 'http', containerPort: 8080 }],
                  readinessProbe: {
                    exec: { command: ['cat', '/tmp/healthy'] },
                    periodSeconds: 1,
                    failureThreshold: 1,
                  },
                },
              ],
            }),
          },
        },
      },
    });
    await core.createNamespacedService({
      namespace: ns.name,
      body: {
        metadata: { name: 'backend' },
        spec: { selector: labels, ports: [{ name: 'web', port: 80, targetPort: 'http' }] },
      },
    });
    const discovery = cluster.kc.makeApiClient(DiscoveryV1Api);
    const readyEndpoints = async () => {
      const slices = await discovery.listNamespacedEndpointSlice({
        namespace: ns.name,
        labelSelector: 'kubernetes.io/service-name=backend',
      });
      return slices.items
        .flatMap((s) => s.endpoints ?? [])
        .filter((e) => e.conditions?.ready)
        .map((e) => e.targetRef?.name);
    };
    await waitFor('2 ready backend endpoints', 90_000, async () => (await readyEndpoints()).length === 2);
    const backends = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=backend' }))
      .items;
    expect(
      backends.every((p) => p.spec?.nodeName === nodeName && p.status?.podIP?.startsWith('10.250.0.')),
    ).toBe(true);

    const client = [
      'import socket, urllib.request, collections',
      `host = "backend.${ns.name}.svc.cluster.local"`,
      'print("resolved", socket.gethostbyname(host))',
      'seen = collections.Counter()',
      'for _ in range(40):',
      '    r = urllib.request.urlopen(f"http://{host}/", timeout=5)',
      '    seen[(r.status, r.read().decode())] += 1',
      'for (status, who), n in sorted(seen.items()): print("answer", status, who, n)',
    ].join('\n');
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'client' },
        spec: onLocalNode({
          restartPolicy: 'Never',
          containers: [{ name: 'client', image: 'python:3', command: ['python3', '-c', client] }],
        }),
      },
    });
    const done = await waitPhase('client', ['Succeeded', 'Failed']);
    const out = await logsOf('client');
    expect(done.status?.phase, out).toBe('Succeeded');
    const service = await core.readNamespacedService({ name: 'backend', namespace: ns.name });
    expect(out).toContain(`resolved ${service.spec?.clusterIP}`);
    const answered = [...out.matchAll(/^answer 200 (\S+) \d+$/gm)].map((m) => m[1]).sort();
    expect(answered).toEqual(backends.map((p) => p.metadata!.name!).sort());

    // (d) readiness: an unhealthy replica leaves the endpoints; healthy again, it comes back.
    const victim = backends[0]!.metadata!.name!;
    await kubectl('exec', '-n', ns.name, victim, '--', 'rm', '/tmp/healthy');
    await waitFor('victim out of endpoints', 60_000, async () => {
      const names = await readyEndpoints();
      return names.length === 1 && !names.includes(victim);
    });
    expect((await pod(victim)).status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
    await kubectl('exec', '-n', ns.name, victim, '--', 'touch', '/tmp/healthy');
    await waitFor('victim back in endpoints', 60_000, async () => (await readyEndpoints()).includes(victim));
  });

  it('lists pods through kubernetes.default.svc with RBAC, and is refused without (b)', async () => {
    const script = [
      'import ssl, urllib.request, urllib.error',
      'd = "/var/run/secrets/kubernetes.io/serviceaccount"',
      'token = open(d + "/token").read()',
      'ctx = ssl.create_default_context(cafile=d + "/ca.crt")',
      `req = urllib.request.Request("https://kubernetes.default.svc/api/v1/namespaces/${ns.name}/pods", headers={"Authorization": "Bearer " + token})`,
      'try: print("status", urllib.request.urlopen(req, context=ctx, timeout=10).status)',
      'except urllib.error.HTTPError as e: print("status", e.code)',
    ].join('\n');
    const run = async (name: string) => {
      await core.createNamespacedPod({
        namespace: ns.name,
        body: {
          metadata: { name },
          spec: onLocalNode({
            restartPolicy: 'Never',
            containers: [{ name: 'c', image: 'python:3', command: ['python3', '-c', script] }],
          }),
        },
      });
      await waitPhase(name, ['Succeeded', 'Failed']);
      return logsOf(name);
    };
    expect(await run('sa-refused')).toContain('status 403');
    const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns.name,
      body: {
        metadata: { name: 'pod-reader' },
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns.name,
      body: {
        metadata: { name: 'pod-reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'default', namespace: ns.name }],
      },
    });
    expect(await run('sa-allowed')).toContain('status 200');
  });

  it('shows exit codes, restarts and CrashLoopBackOff (c), and serves kubectl logs and exec (e)', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'crasher' },
        spec: onLocalNode({
          containers: [
            { name: 'app', image: 'busybox', command: ['sh', '-c', 'echo run $(date +%s%N); exit 3'] },
          ],
        }),
      },
    });
    await waitFor('CrashLoopBackOff after restarts', 60_000, async () => {
      const s = (await pod('crasher')).status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 2 && s?.state?.waiting?.reason === 'CrashLoopBackOff';
    });
    const status = (await pod('crasher')).status!.containerStatuses![0]!;
    expect(status.lastState?.terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(await kubectl('logs', '-n', ns.name, 'crasher', '--previous')).toMatch(/^run \d+\n$/);

    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'sleeper' },
        spec: onLocalNode({
          containers: [
            {
              name: 'app',
              image: 'busybox',
              command: ['sh', '-c', 'echo hello from $HOSTNAME; exec sleep 3600'],
              env: [{ name: 'COLOR', value: 'blue' }],
            },
          ],
        }),
      },
    });
    await waitPhase('sleeper', ['Running']);
    await waitFor('first log line', 30_000, async () => (await logsOf('sleeper')).includes('hello'));
    expect(await kubectl('logs', '-n', ns.name, 'sleeper')).toBe('hello from sleeper\n');
    const shown = await kubectl('exec', '-n', ns.name, 'sleeper', '--', 'sh', '-c', 'echo $COLOR; hostname');
    expect(shown).toBe('blue\nsleeper\n');
    await expect(kubectl('exec', '-n', ns.name, 'sleeper', '--', 'sh', '-c', 'exit 7')).rejects.toThrow(
      /exit code 7/,
    );
  });

  it('restarts a container whose liveness probe fails, with the kubelet’s Unhealthy and Killing Events', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'unhealthy' },
        spec: onLocalNode({
          containers: [
            {
              name: 'app',
              image: 'busybox',
              command: ['sh', '-c', 'exec sleep 3600'],
              livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1 },
            },
          ],
        }),
      },
    });
    await waitFor('a restart by the liveness probe', 60_000, async () => {
      const s = (await pod('unhealthy')).status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 1;
    });
    await waitFor('Unhealthy and Killing Events on the pod', 30_000, async () => {
      const events = (
        await core.listNamespacedEvent({
          namespace: ns.name,
          fieldSelector: 'involvedObject.name=unhealthy',
        })
      ).items;
      return (
        events.some(
          (e) => e.reason === 'Unhealthy' && e.message === 'Liveness probe failed: exec ["false"]',
        ) &&
        events.some(
          (e) =>
            e.reason === 'Killing' && e.message === 'Container app failed liveness probe, will be restarted',
        )
      );
    });
  });

  it('builds again, after an operator restart, a sandbox whose network broke while the operator was away', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'rewired' },
        spec: onLocalNode({ containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
      },
    });
    const uid = (await waitPhase('rewired', ['Running'])).metadata!.uid!;
    // `ip -brief link show eth0` inside the pod: "eth0@ifN UP ..." or "... DOWN ...".
    const eth0 = async () => {
      const out = await kubectl(
        'exec',
        '-n',
        ns.name,
        'rewired',
        '--',
        'ip',
        '-brief',
        'link',
        'show',
        'eth0',
      );
      return out.trim().split(/\s+/)[1];
    };
    expect(await eth0()).toBe('UP');
    await local.stop();
    const file = `/run/spillway/${nodeName}/sandboxes/${uid}/sandbox.json`;
    const init = (JSON.parse(readFileSync(file, 'utf8')) as { processes: { init: { pid: number } } })
      .processes.init.pid;
    execFileSync('nsenter', ['-t', String(init), '-n', 'ip', 'link', 'set', 'eth0', 'down']);
    local = await startLocalNode(cluster.kc, nodeName);
    await waitFor(
      'the pod running again with eth0 up',
      90_000,
      async () => (await eth0().catch(() => '')) === 'UP',
    );
    await waitFor('the pod Ready with its new sandbox', 60_000, async () => {
      const p = await pod('rewired');
      const record = JSON.parse(readFileSync(file, 'utf8')) as { ip: string };
      const ready = p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      return ready && p.status?.podIP === record.ip;
    });
  });

  it('leaves nothing behind after deletes and after an operator restart (f)', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'survivor' },
        spec: onLocalNode({ containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
      },
    });
    const running = await waitPhase('survivor', ['Running']);
    const uid = running.metadata!.uid!;
    await local.stop();
    local = await startLocalNode(cluster.kc, nodeName);
    // The sandbox was adopted, not re-made: same IP, and the operator can still exec into it.
    expect((await pod('survivor')).status?.podIP).toBe(running.status?.podIP);
    expect(await kubectl('exec', '-n', ns.name, 'survivor', '--', 'echo', 'still here')).toBe('still here\n');
    expect(sandboxUids()).toContain(uid);

    await cluster.kc
      .makeApiClient(AppsV1Api)
      .deleteCollectionNamespacedDeployment({ namespace: ns.name, propagationPolicy: 'Foreground' });
    await waitFor(
      'backend pods gone',
      60_000,
      async () =>
        (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=backend' })).items.length ===
        0,
    );
    await core.deleteCollectionNamespacedPod({ namespace: ns.name });
    await waitFor('every sandbox gone', 90_000, async () => sandboxUids().length === 0);
    expect(leftovers()).toEqual({
      sandboxes: [],
      leases: [],
      veths: '',
      processes: [],
      mounts: [],
      cgroups: [],
    });
  });
});
