/**
 * examples/ against the local control plane, with the operator as `make run` starts it (`spillway run`: CRD,
 * dev-mode webhooks, the ElasticWorkload controller and a fake virtual node): where each pod lands and which
 * capacity annotations it carries. Spark and Jenkins pods are built exactly as spark-submit 3.5 and the Jenkins
 * kubernetes plugin build them from the examples' templates.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type V1Container,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, testCluster, waitFor, type TestCluster } from '../support/cluster.ts';
import { startOperator, type OperatorProcess } from '../support/chart.ts';
import { kubectl } from '../support/kube.ts';
import { createTestNamespace } from '../support/namespace.ts';
import { freePort } from '../support/ports.ts';

const examples = join(repoRoot, 'examples');
const SPOT = { 'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo' };
const readYaml = <T>(...path: string[]) => parse(readFileSync(join(examples, ...path), 'utf8')) as T;

/** Where a pod was bound, and what spillway's webhook gave it. */
interface Placement {
  name: string;
  virtual: boolean;
  spotAnnotations: Record<string, string>;
}

describe('examples/ with the operator running as make run starts it', () => {
  let cluster: TestCluster;
  let core: CoreV1Api;
  let operator: OperatorProcess;
  let system: { name: string; remove: () => Promise<void> };
  const nodeName = `examples-virtual-${randomBytes(2).toString('hex')}`;
  const namespaces: Array<{ remove: () => Promise<void> }> = [];

  const virtualNodes = new Map<string, boolean>();
  async function isVirtual(node: string): Promise<boolean> {
    if (!virtualNodes.has(node)) {
      const n = await core.readNode({ name: node });
      virtualNodes.set(node, n.metadata?.labels?.['spillway.dev/virtual-node'] === 'true');
    }
    return virtualNodes.get(node)!;
  }

  /** Waits until `count` pods match `selector` and are bound, then reports each one's placement. */
  async function placements(namespace: string, selector: string, count: number): Promise<Placement[]> {
    let pods: V1Pod[] = [];
    await waitFor(`${count} pods ${selector} bound in ${namespace}`, 90_000, async () => {
      pods = (await core.listNamespacedPod({ namespace, labelSelector: selector })).items.filter(
        (p) => !p.metadata?.deletionTimestamp,
      );
      return pods.length === count && pods.every((p) => !!p.spec?.nodeName);
    });
    return Promise.all(
      pods.map(async (p) => ({
        name: p.metadata!.name!,
        virtual: await isVirtual(p.spec!.nodeName!),
        spotAnnotations: Object.fromEntries(
          Object.entries(p.metadata?.annotations ?? {}).filter(([k]) =>
            k.startsWith('k8s.aliyun.com/eci-spot'),
          ),
        ),
      })),
    );
  }

  const namespace = async (prefix: string) => {
    const ns = await createTestNamespace(cluster.kc, prefix);
    namespaces.push(ns);
    return ns.name;
  };

  beforeAll(async () => {
    cluster = await testCluster();
    core = cluster.kc.makeApiClient(CoreV1Api);
    // The operator's own namespace (its Lease and TLS Secret), so that it never waits on another run's Lease.
    system = await createTestNamespace(cluster.kc, 'examples-system');
    operator = startOperator(
      [
        'run',
        `--namespace=${system.name}`,
        '--provider=fake',
        `--node-name=${nodeName}`,
        `--kubelet-port=${await freePort()}`,
        '--metrics-port=0',
      ],
      cluster.kubeconfigPath,
    );
    await waitFor('the virtual node Ready and the webhooks registered', 90_000, async () => {
      const node = await core.readNode({ name: nodeName });
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      const m = await cluster.kc
        .makeApiClient(AdmissionregistrationV1Api)
        .readMutatingWebhookConfiguration({ name: 'spillway' });
      return !!ready && !!m.webhooks?.[0]?.clientConfig.url?.startsWith('https://127.0.0.1:');
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- operator output ---\n${operator.output().slice(-4000)}`);
    });
  });

  afterAll(async () => {
    for (const ns of namespaces) await ns.remove();
    await operator?.stop();
    await core?.deleteNode({ name: nodeName }).catch(() => undefined);
    await system?.remove();
  });

  it('web: 4 replicas on normal nodes, 2 on spot; scaled to 10, 4 on spot and 2 on-demand; the HPA reads its scale', async () => {
    const ns = await namespace('ex-web');
    await kubectl(cluster.kubeconfigPath, 'apply', '-n', ns, '-f', join(examples, 'web'));

    const start = await placements(ns, 'app=web', 6);
    const source = start.filter((p) => !p.name.startsWith('web-unit-'));
    const spot = start.filter((p) => p.name.startsWith('web-unit-spot-'));
    expect(source).toHaveLength(4);
    expect(source.every((p) => !p.virtual && Object.keys(p.spotAnnotations).length === 0)).toBe(true);
    expect(spot).toHaveLength(2);
    expect(spot.every((p) => p.virtual)).toBe(true);
    expect(spot.map((p) => p.spotAnnotations)).toEqual([SPOT, SPOT]);

    await kubectl(cluster.kubeconfigPath, 'scale', 'ew', 'web', '-n', ns, '--replicas=10');
    const peak = await placements(ns, 'app=web', 10);
    const count = (prefix: string) => peak.filter((p) => p.name.startsWith(prefix));
    expect(peak.filter((p) => !p.virtual)).toHaveLength(4);
    expect(count('web-unit-spot-').map((p) => [p.virtual, p.spotAnnotations])).toEqual(
      Array(4).fill([true, SPOT]),
    );
    expect(count('web-unit-on-demand-').map((p) => [p.virtual, p.spotAnnotations])).toEqual(
      Array(2).fill([true, {}]),
    );

    // The HorizontalPodAutoscaler targets the ElasticWorkload through its scale subresource.
    await waitFor('the HPA to read the ElasticWorkload scale', 90_000, async () => {
      const hpa = JSON.parse(
        await kubectl(cluster.kubeconfigPath, 'get', 'hpa', 'web', '-n', ns, '-o', 'json'),
      );
      return (
        hpa.status?.currentReplicas === 10 &&
        hpa.status?.conditions?.some(
          (c: { type: string; status: string }) => c.type === 'AbleToScale' && c.status === 'True',
        )
      );
    });
  });

  it('spark: the driver stays on a normal node, executors burst onto spot (pods as spark-submit makes them)', async () => {
    const ns = await namespace('ex-spark');
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'spark' } } });
    const appId = `spark-${randomBytes(16).toString('hex')}`;
    const prefix = `spark-pi-${randomBytes(8).toString('hex')}`;
    const common = {
      'spark-app-selector': appId,
      'spark-app-name': 'spark-pi',
      'spark-version': '3.5.3',
    };
    const driverTemplate = readYaml<V1Pod>('spark', 'pod-templates', 'driver.yaml');
    const executorTemplate = readYaml<V1Pod>('spark', 'pod-templates', 'executor.yaml');

    const driver = await core.createNamespacedPod({
      namespace: ns,
      body: sparkPod(driverTemplate, {
        name: `${prefix}-driver`,
        labels: { ...common, 'spark-role': 'driver' },
        container: {
          name: 'spark-kubernetes-driver',
          image: 'apache/spark:3.5.3',
          args: [
            'driver',
            '--properties-file',
            '/opt/spark/conf/spark.properties',
            '--class',
            'org.apache.spark.examples.SparkPi',
            'local:///opt/spark/examples/jars/spark-examples_2.12-3.5.3.jar',
            '10000',
          ],
          ports: [
            { name: 'driver-rpc-port', containerPort: 7078, protocol: 'TCP' },
            { name: 'blockmanager', containerPort: 7079, protocol: 'TCP' },
            { name: 'spark-ui', containerPort: 4040, protocol: 'TCP' },
          ],
          env: [
            { name: 'SPARK_USER', value: 'spark' },
            { name: 'SPARK_APPLICATION_ID', value: appId },
            { name: 'SPARK_DRIVER_BIND_ADDRESS', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            { name: 'SPARK_LOCAL_DIRS', value: '/var/data/spark-local' },
            { name: 'SPARK_CONF_DIR', value: '/opt/spark/conf' },
          ],
        },
        serviceAccountName: 'spark',
      }),
    });
    for (const id of ['1', '2', '3']) {
      const pod = sparkPod(executorTemplate, {
        name: `${prefix}-exec-${id}`,
        labels: {
          ...common,
          'spark-role': 'executor',
          'spark-exec-id': id,
          'spark-exec-resourceprofile-id': '0',
        },
        container: {
          name: 'spark-kubernetes-executor',
          image: 'apache/spark:3.5.3',
          args: ['executor'],
          ports: [{ name: 'blockmanager', containerPort: 7079, protocol: 'TCP' }],
          env: [
            { name: 'SPARK_USER', value: 'spark' },
            {
              name: 'SPARK_DRIVER_URL',
              value: `spark://CoarseGrainedScheduler@${prefix}-driver-svc.${ns}.svc:7078`,
            },
            { name: 'SPARK_EXECUTOR_CORES', value: '1' },
            { name: 'SPARK_EXECUTOR_MEMORY', value: '1g' },
            { name: 'SPARK_APPLICATION_ID', value: appId },
            { name: 'SPARK_CONF_DIR', value: '/opt/spark/conf' },
            { name: 'SPARK_EXECUTOR_ID', value: id },
            { name: 'SPARK_RESOURCE_PROFILE_ID', value: '0' },
            { name: 'SPARK_EXECUTOR_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            { name: 'SPARK_EXECUTOR_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            { name: 'SPARK_LOCAL_DIRS', value: '/var/data/spark-local' },
          ],
        },
        serviceAccountName: 'default',
      });
      // Executors are owned by the driver pod: deleting the driver cleans them up.
      pod.metadata!.ownerReferences = [
        {
          apiVersion: 'v1',
          kind: 'Pod',
          name: driver.metadata!.name!,
          uid: driver.metadata!.uid!,
          controller: true,
        },
      ];
      pod.spec!.hostname = `${prefix}-exec-${id}`;
      await core.createNamespacedPod({ namespace: ns, body: pod });
    }

    const [drv] = await placements(ns, 'spark-role=driver', 1);
    expect(drv).toMatchObject({ virtual: false, spotAnnotations: {} });
    const executors = await placements(ns, 'spark-role=executor', 3);
    expect(executors.map((p) => [p.virtual, p.spotAnnotations])).toEqual(Array(3).fill([true, SPOT]));

    // The spark-operator SparkApplication asks for exactly what the spark-submit templates ask for.
    const app = readYaml<{
      spec: {
        driver: { labels: Record<string, string>; affinity: unknown };
        executor: { labels: Record<string, string> };
      };
    }>('spark', 'sparkapplication.yaml');
    expect(app.spec.executor.labels).toEqual(executorTemplate.metadata!.labels);
    expect(app.spec.driver.labels).toEqual(driverTemplate.metadata!.labels);
    expect(app.spec.driver.affinity).toEqual(driverTemplate.spec!.affinity);
  });

  it('jenkins: spot agents burst onto spot, default agents stay (pods as the kubernetes plugin makes them)', async () => {
    const ns = await namespace('ex-jenkins');
    const casc = readYaml<{
      jenkins: { clouds: Array<{ kubernetes: { jenkinsUrl: string; templates: JenkinsTemplate[] } }> };
    }>('jenkins', 'jcasc.yaml');
    const cloud = casc.jenkins.clouds[0]!.kubernetes;
    for (const template of cloud.templates) {
      for (let i = 0; i < 2; i++) {
        await core.createNamespacedPod({ namespace: ns, body: jenkinsAgentPod(template, cloud.jenkinsUrl) });
      }
    }
    const spot = await placements(ns, 'jenkins/label=spot', 2);
    expect(spot.map((p) => [p.virtual, p.spotAnnotations])).toEqual(Array(2).fill([true, SPOT]));
    const regular = await placements(ns, 'jenkins/label=default', 2);
    expect(regular.map((p) => [p.virtual, p.spotAnnotations])).toEqual(Array(2).fill([false, {}]));

    // The Jenkins Helm chart values declare the same spot agent.
    const values = readYaml<{ additionalAgents: { spot: { yamlTemplate: string } } }>(
      'jenkins',
      'values.yaml',
    );
    const spotTemplate = cloud.templates.find((t) => t.label === 'spot')!;
    expect((parse(values.additionalAgents.spot.yamlTemplate) as V1Pod).metadata?.labels).toEqual(
      (parse(spotTemplate.yaml) as V1Pod).metadata?.labels,
    );
  });
});

/**
 * A pod as spark-submit 3.5 builds it: the template's metadata and spec, Spark's labels on top, the template
 * container named like Spark's (or a new one) filled with Spark's image, args, env, ports and resources, and the
 * local-dir volume. (spark-submit also mounts a ConfigMap of spark.properties; it makes no placement difference
 * and would need the ConfigMap, so it is left out.)
 */
function sparkPod(
  template: V1Pod,
  o: { name: string; labels: Record<string, string>; container: V1Container; serviceAccountName: string },
): V1Pod {
  const spec: V1PodSpec = structuredClone(template.spec ?? { containers: [] });
  const fromTemplate = spec.containers.find((c) => c.name === o.container.name) ?? { name: o.container.name };
  const container: V1Container = {
    ...fromTemplate,
    ...o.container,
    imagePullPolicy: 'IfNotPresent',
    resources: { requests: { cpu: '1', memory: '1408Mi' }, limits: { memory: '1408Mi' } },
    volumeMounts: [{ name: 'spark-local-dir-1', mountPath: '/var/data/spark-local' }],
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: o.name,
      labels: { ...template.metadata?.labels, ...o.labels },
      annotations: { ...template.metadata?.annotations },
    },
    spec: {
      ...spec,
      restartPolicy: 'Never',
      serviceAccountName: o.serviceAccountName,
      containers: [container, ...spec.containers.filter((c) => c.name !== o.container.name)],
      volumes: [...(spec.volumes ?? []), { name: 'spark-local-dir-1', emptyDir: {} }],
    },
  };
}

interface JenkinsTemplate {
  name: string;
  label: string;
  yaml: string;
}

/**
 * An agent pod as the Jenkins kubernetes plugin builds it from a template: the template's YAML merged with the
 * plugin's pod (the `jnlp` container with the agent's env, the workspace volume, `restartPolicy: Never`,
 * `kubernetes.io/os: linux`), the plugin's labels and annotations, and a `<template>-<suffix>` name.
 */
function jenkinsAgentPod(template: JenkinsTemplate, jenkinsUrl: string): V1Pod {
  const pod = parse(template.yaml) as V1Pod;
  const name = `${template.name}-${randomBytes(3).toString('hex').slice(0, 5)}`;
  const controller = jenkinsUrl.replace(/[^A-Za-z0-9]/g, '_').slice(0, 62) + 'x';
  const workspace = { name: 'workspace-volume', mountPath: '/home/jenkins/agent', readOnly: false };
  const jnlp: V1Container = {
    name: 'jnlp',
    image: 'jenkins/inbound-agent:3283.v92c105e0f819-1',
    env: [
      { name: 'JENKINS_SECRET', value: randomBytes(32).toString('hex') },
      { name: 'JENKINS_TUNNEL', value: 'jenkins-agent.jenkins.svc.cluster.local:50000' },
      { name: 'JENKINS_AGENT_NAME', value: name },
      { name: 'REMOTING_OPTS', value: '-noReconnectAfter 1d' },
      { name: 'JENKINS_NAME', value: name },
      { name: 'JENKINS_AGENT_WORKDIR', value: '/home/jenkins/agent' },
      { name: 'JENKINS_URL', value: `${jenkinsUrl}/` },
    ],
    resources: { requests: { cpu: '100m', memory: '256Mi' } },
    volumeMounts: [workspace],
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      labels: {
        ...pod.metadata?.labels,
        'jenkins/label': template.label.replace(/ /g, '_'),
        'jenkins/label-digest': createHash('sha1').update(template.label).digest('hex'),
        jenkins: 'slave',
        'kubernetes.jenkins.io/controller': controller,
      },
      annotations: {
        ...pod.metadata?.annotations,
        buildUrl: `${jenkinsUrl}/job/app/1/`,
        runUrl: 'job/app/1/',
      },
    },
    spec: {
      ...pod.spec,
      restartPolicy: 'Never',
      nodeSelector: { 'kubernetes.io/os': 'linux', ...pod.spec?.nodeSelector },
      containers: [
        ...(pod.spec?.containers ?? []).map((c) => ({
          ...c,
          tty: true,
          workingDir: '/home/jenkins/agent',
          volumeMounts: [...(c.volumeMounts ?? []), workspace],
        })),
        jnlp,
      ],
      volumes: [...(pod.spec?.volumes ?? []), { name: 'workspace-volume', emptyDir: {} }],
    },
  };
}
