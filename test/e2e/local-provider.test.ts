/**
 * e2e (issues 6 and 15): the local control plane + CoreDNS + a virtual node with the `local` provider over the
 * cluster's containerd. Pods run from images of the cluster's registry (`make images`: busybox, agnhost) in real
 * sandboxes on this host; what is asserted is what a user sees through the API and kubectl.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import {
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { CriClient } from '../../operator/providers/local/cri/client.ts';
import { NODE_LABEL } from '../../operator/providers/local/plan.ts';
import {
  defaultBinDir,
  defaultClusterDir,
  LocalCluster,
  testCluster,
  waitFor,
  type TestCluster,
} from '../support/cluster.ts';
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
let cri: CriClient;
const localCluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
/** Images of the cluster's registry (`make images` pushes them; `make cluster-up` seeds them). */
const BUSYBOX = () => imageRef('busybox', localCluster.registry);
const AGNHOST = () => imageRef('agnhost', localCluster.registry);

/** A pod spec that lands on the local virtual node (no webhooks run here: placement is explicit). */
function onLocalNode(spec: V1PodSpec): V1PodSpec {
  return {
    nodeSelector: { 'kubernetes.io/hostname': nodeName },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
    terminationGracePeriodSeconds: 2,
    ...spec,
  };
}

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

/** The UIDs of the pods that have a sandbox of this node in containerd. */
async function sandboxUids(): Promise<string[]> {
  const sandboxes = await cri.listPodSandbox({ [NODE_LABEL]: nodeName });
  return sandboxes.map((s) => s.metadata.uid);
}

/** Everything a pod could leave on the host: sandboxes and containers in containerd, state, mounts, cgroups. */
async function leftovers(): Promise<Record<string, unknown>> {
  const state = `/run/spillway/${nodeName}`;
  const cgroups = `/sys/fs/cgroup/memory/spillway/${nodeName}`;
  return {
    sandboxes: await sandboxUids(),
    containers: (await cri.listContainers({ labels: { [NODE_LABEL]: nodeName } })).map((c) => c.id),
    pods: existsSync(`${state}/pods`) ? readdirSync(`${state}/pods`) : [],
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
  cri = new CriClient({ endpoint: localCluster.criEndpoint });
  local = await startLocalNode(cluster.kc, nodeName, { criEndpoint: localCluster.criEndpoint });
  net = await startClusterNetwork(cluster.kc, cluster.kubeconfigPath, local.provider, {
    corednsBinary: join(defaultBinDir, 'coredns'),
    stateDir: dirname(cluster.kubeconfigPath),
    nodeName,
  });
  ns = await createTestNamespace(cluster.kc, 'e2e-local');
}, 180_000);

afterAll(async () => {
  await ns?.remove();
  if (local) {
    await waitFor(
      'sandboxes of the test namespace deleted',
      60_000,
      async () => (await sandboxUids()).length === 0,
    ).catch(() => undefined);
    await local.stop();
  }
  await net?.stop();
  await cluster?.kc
    .makeApiClient(CoreV1Api)
    .deleteNode({ name: nodeName })
    .catch(() => undefined);
  await removeLocalNetwork(dirname(cluster.kubeconfigPath));
  await removeNodeState(nodeName);
  cri?.close();
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
                  // The image's entrypoint (/agnhost) with these args: Kubernetes' command/args semantics.
                  name: 'http',
                  image: AGNHOST(),
                  args: ['netexec', '--http-port=8080'],
                  ports: [{ name: 'http', containerPort: 8080 }],
                  readinessProbe: {
                    exec: { command: ['test', '!', '-e', '/tmp/unhealthy'] },
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

    // busybox's nc, not its wget (which dies of SIGSEGV in the image); the name through CoreDNS with nslookup.
    const client = [
      `host=backend.${ns.name}.svc.cluster.local`,
      "ip=$(nslookup $host | awk '/^Address/ { a = $2 } END { print a }')",
      'echo resolved $ip',
      // kube-proxy applies a new endpoint about a second after the EndpointSlice shows it: ask until both backends
      // answered (at most 120 times, 0.2 s apart), not a fixed number of times that a slow sync could exhaust.
      'seen=""',
      'for i in $(seq 120); do',
      "  a=$(printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 80 | tail -n 1); echo answer $a",
      '  case " $seen " in *" $a "*) ;; *) seen="$seen $a" ;; esac',
      '  [ $(echo $seen | wc -w) -ge 2 ] && break; sleep 0.2',
      'done',
    ].join('\n');
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'client' },
        spec: onLocalNode({
          restartPolicy: 'Never',
          containers: [{ name: 'client', image: BUSYBOX(), command: ['sh', '-c', client] }],
        }),
      },
    });
    const done = await waitPhase('client', ['Succeeded', 'Failed']);
    const out = await logsOf('client');
    expect(done.status?.phase, out).toBe('Succeeded');
    const service = await core.readNamespacedService({ name: 'backend', namespace: ns.name });
    expect(out).toContain(`resolved ${service.spec?.clusterIP}`);
    const answered = [...new Set([...out.matchAll(/^answer (\S+)$/gm)].map((m) => m[1]))].sort();
    expect(answered, out).toEqual(backends.map((p) => p.metadata!.name!).sort());

    // (d) readiness: an unhealthy replica leaves the endpoints; healthy again, it comes back.
    const victim = backends[0]!.metadata!.name!;
    await kubectl('exec', '-n', ns.name, victim, '--', 'touch', '/tmp/unhealthy');
    await waitFor('victim out of endpoints', 60_000, async () => {
      const names = await readyEndpoints();
      return names.length === 1 && !names.includes(victim);
    });
    expect((await pod(victim)).status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
    await kubectl('exec', '-n', ns.name, victim, '--', 'rm', '/tmp/unhealthy');
    await waitFor('victim back in endpoints', 60_000, async () => (await readyEndpoints()).includes(victim));
  });

  it('reaches kubernetes.default.svc, and its service-account token lists pods with RBAC only (b)', async () => {
    // busybox's wget dies of SIGSEGV in the image (static glibc), so the HTTPS call is made with the pod's token
    // from here; the pod shows the name resolving and the TCP connection through the ClusterIP.
    const script = [
      "ip=$(nslookup kubernetes.default.svc.cluster.local | awk '/^Address/ { a = $2 } END { print a }')",
      'echo resolved $ip',
      'nc -w 5 $ip 443 </dev/null && echo reached',
      'exec sleep 3600',
    ].join('\n');
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'sa' },
        spec: onLocalNode({ containers: [{ name: 'c', image: BUSYBOX(), command: ['sh', '-c', script] }] }),
      },
    });
    await waitPhase('sa', ['Running']);
    const service = await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    await waitFor('the pod reached the apiserver', 30_000, async () =>
      (await logsOf('sa')).includes('reached'),
    ).catch(() => undefined);
    expect(await logsOf('sa')).toBe(`resolved ${service.spec?.clusterIP}\nreached\n`);
    const token = await kubectl(
      'exec',
      '-n',
      ns.name,
      'sa',
      '--',
      'cat',
      '/var/run/secrets/kubernetes.io/serviceaccount/token',
    );
    const asPod = new KubeConfig();
    asPod.loadFromOptions({
      clusters: [cluster.kc.getCurrentCluster()!],
      users: [{ name: 'pod', token }],
      contexts: [{ name: 'pod', cluster: cluster.kc.getCurrentCluster()!.name, user: 'pod' }],
      currentContext: 'pod',
    });
    const list = () =>
      asPod
        .makeApiClient(CoreV1Api)
        .listNamespacedPod({ namespace: ns.name })
        .then(
          () => 200,
          (err: { code?: number }) => err.code,
        );
    expect(await list()).toBe(403);
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
    await waitFor('the role binding in effect', 30_000, async () => (await list()) === 200);
  });

  it('shows exit codes, restarts and CrashLoopBackOff (c), and serves kubectl logs and exec (e)', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'crasher' },
        spec: onLocalNode({
          containers: [
            { name: 'app', image: BUSYBOX(), command: ['sh', '-c', 'echo run $(date +%s); exit 3'] },
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
              image: BUSYBOX(),
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
    // stdin that ends (`kubectl exec -i < file`, `kubectl cp`): the command sees its end and finishes.
    const counted = await new Promise<string>((resolve, reject) => {
      const child = execFile(
        `${defaultBinDir}/kubectl`,
        ['--kubeconfig', cluster.kubeconfigPath, 'exec', '-i', '-n', ns.name, 'sleeper', '--', 'wc', '-c'],
        { encoding: 'utf8', timeout: 30_000 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      );
      child.stdin?.end('twelve bytes');
    });
    expect(counted.trim()).toBe('12');
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
              image: BUSYBOX(),
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

  it('pulls as a kubelet: a missing image is ImagePullBackOff with the pod Pending; an image without command runs its entrypoint', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'missing' },
        spec: onLocalNode({
          containers: [{ name: 'app', image: `${localCluster.registry}/spillway/no-such-image:1` }],
        }),
      },
    });
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: onLocalNode({
          containers: [
            {
              name: 'nginx',
              image: imageRef('nginx', localCluster.registry),
              ports: [{ containerPort: 80 }],
            },
          ],
        }),
      },
    });
    await waitFor('ImagePullBackOff', 60_000, async () => {
      const p = await pod('missing');
      return p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff';
    });
    const missing = await pod('missing');
    expect(missing.status?.phase).toBe('Pending');
    expect(missing.status?.containerStatuses?.[0]?.state?.waiting?.message).toMatch(/no-such-image/);
    const web = await waitPhase('web', ['Running']);
    // From the host over the bridge, as the kubelet's probes reach a pod.
    const page = await fetch(`http://${web.status!.podIP}/`).then((r) => r.text());
    expect(page).toContain('nginx');
    expect((await pod('missing')).status?.phase).toBe('Pending');
  });

  it('survives a containerd restart: the pod keeps running, and its status follows again', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'steady' },
        spec: onLocalNode({
          containers: [
            {
              name: 'app',
              image: BUSYBOX(),
              command: ['sh', '-c', 'while [ ! -e /tmp/stop ]; do sleep 0.2; done; exit 5'],
            },
          ],
        }),
      },
    });
    const before = (await waitPhase('steady', ['Running'])).status!.containerStatuses![0]!;
    await cluster.stop('containerd');
    await cluster.start('containerd');
    await waitFor(
      'exec answering after the restart',
      60_000,
      async () =>
        (await kubectl('exec', '-n', ns.name, 'steady', '--', 'echo', 'up').catch(() => '')) === 'up\n',
    );
    const after = (await pod('steady')).status!.containerStatuses![0]!;
    expect(after.containerID).toBe(before.containerID);
    expect(after.restartCount).toBe(0);
    await kubectl('exec', '-n', ns.name, 'steady', '--', 'touch', '/tmp/stop');
    await waitFor('the exit seen and the container restarted', 60_000, async () => {
      const s = (await pod('steady')).status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 1 && s?.lastState?.terminated?.exitCode === 5;
    });
  });

  it('runs native sidecars: one feeds a shared emptyDir the container reads, Running and Ready; a restartPolicy Never pod completes Succeeded beside its sidecar', async () => {
    const shared = [{ name: 'shared', mountPath: '/shared' }];
    // Writes a tick a second; exits at once on SIGTERM (a shell as PID 1 would otherwise ignore it).
    const writer = {
      name: 'writer',
      image: BUSYBOX(),
      restartPolicy: 'Always',
      command: ['sh', '-c', "trap 'exit 0' TERM; while true; do date +%s > /shared/tick; sleep 1; done"],
      volumeMounts: shared,
      // The main container starts only once this passes: the sidecar has written its first tick.
      startupProbe: { exec: { command: ['test', '-s', '/shared/tick'] }, periodSeconds: 1 },
    };
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'sidecar-web' },
        spec: onLocalNode({
          volumes: [{ name: 'shared', emptyDir: {} }],
          initContainers: [writer],
          containers: [
            {
              name: 'reader',
              image: BUSYBOX(),
              command: ['sh', '-c', 'echo first tick $(cat /shared/tick); exec sleep 3600'],
              volumeMounts: shared,
            },
          ],
        }),
      },
    });
    let web: V1Pod | undefined;
    await waitFor('sidecar-web Ready', 90_000, async () => {
      web = await pod('sidecar-web');
      return web.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    });
    expect(web!.status?.phase).toBe('Running');
    expect(web!.status?.conditions?.find((c) => c.type === 'Initialized')?.status).toBe('True');
    expect(web!.status?.initContainerStatuses?.[0]).toMatchObject({
      name: 'writer',
      started: true,
      ready: true,
      state: { running: expect.anything() },
    });
    expect(web!.status?.containerStatuses?.[0]).toMatchObject({ name: 'reader', ready: true });
    await waitFor('the reader log', 30_000, async () => (await logsOf('sidecar-web')).includes('first tick'));
    expect(await logsOf('sidecar-web')).toMatch(/^first tick \d+\n$/);
    // The sidecar keeps writing while the main container runs.
    const tick = async () =>
      Number(
        await kubectl('exec', '-n', ns.name, 'sidecar-web', '-c', 'reader', '--', 'cat', '/shared/tick'),
      );
    const before = await tick();
    await waitFor('a later tick', 30_000, async () => (await tick()) > before);

    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'sidecar-job' },
        spec: onLocalNode({
          restartPolicy: 'Never',
          volumes: [{ name: 'shared', emptyDir: {} }],
          initContainers: [writer],
          containers: [
            {
              name: 'job',
              image: BUSYBOX(),
              command: ['sh', '-c', 'sleep 2; echo job saw tick $(cat /shared/tick)'],
              volumeMounts: shared,
            },
          ],
        }),
      },
    });
    const done = await waitPhase('sidecar-job', ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({ exitCode: 0 });
    expect(await logsOf('sidecar-job')).toMatch(/^job saw tick \d+\n$/);
    // Its sidecar was stopped after the job, not restarted.
    await waitFor('the sidecar stopped', 30_000, async () => {
      const s = (await pod('sidecar-job')).status?.initContainerStatuses?.[0];
      return s?.state?.terminated !== undefined && s.restartCount === 0;
    });
    await core.deleteNamespacedPod({ name: 'sidecar-web', namespace: ns.name });
    await core.deleteNamespacedPod({ name: 'sidecar-job', namespace: ns.name });
  });

  it('leaves nothing behind after deletes and after an operator restart (f)', async () => {
    await core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'survivor' },
        spec: onLocalNode({ containers: [{ name: 'app', image: BUSYBOX(), command: ['sleep', '3600'] }] }),
      },
    });
    const running = await waitPhase('survivor', ['Running']);
    const uid = running.metadata!.uid!;
    await local.stop();
    local = await startLocalNode(cluster.kc, nodeName, { criEndpoint: localCluster.criEndpoint });
    // The sandbox was adopted, not re-made: same IP, and the operator can still exec into it.
    expect((await pod('survivor')).status?.podIP).toBe(running.status?.podIP);
    expect(await kubectl('exec', '-n', ns.name, 'survivor', '--', 'echo', 'still here')).toBe('still here\n');
    expect(await sandboxUids()).toContain(uid);

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
    await waitFor('every sandbox gone', 90_000, async () => (await sandboxUids()).length === 0);
    expect(await leftovers()).toEqual({ sandboxes: [], containers: [], pods: [], mounts: [], cgroups: [] });
  });
});
