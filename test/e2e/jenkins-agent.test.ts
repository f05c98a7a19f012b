/**
 * e2e (issue 16, point 7): Jenkins agents on spot, as real containers. examples/jenkins/local-standin.yaml is
 * applied as a user applies it: the controller stand-in of spillway/jenkins-agent (NOT Jenkins: its controller and
 * remoting.jar are not on Maven Central) as a Deployment with its two Services, which stays on a real node, and a
 * Job of two agent-shaped pods with the `spot` template's labels, which spillway's placement webhook sends to the
 * virtual node (`spillway run --provider local` on the host, so they really run). Each agent finds the controller
 * by its Services' DNS names, as an inbound agent does, runs the one "build" it is given and exits 0; the test
 * reads what the controller received.
 *
 * The file is applied as written but for what a test cluster differs in: its namespaces (the test's own, instead
 * of `jenkins` and `jenkins-agents`, and so the DNS names in the agents' environment) and the registry (this
 * cluster's `localhost:PORT` instead of `localhost:5000`).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
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

const nodeName = 'spillway-jenkins-e2e';
const execFileAsync = promisify(execFile);
const localCluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
const realNodes = inject('realNodes');
let cluster: TestCluster;
let core: CoreV1Api;
let controllerNs: { name: string; remove: () => Promise<void> };
let agentsNs: { name: string; remove: () => Promise<void> };
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

/** local-standin.yaml for this test: its namespaces and this cluster's registry, without the Namespace objects. */
function standInObjects(): Record<string, unknown>[] {
  const text = readFileSync(join(repoRoot, 'examples/jenkins/local-standin.yaml'), 'utf8')
    .replaceAll(`${DEFAULT_REGISTRY}/`, `${inject('registry')}/`)
    .replaceAll('namespace: jenkins-agents', `namespace: ${agentsNs.name}`)
    .replaceAll(/namespace: jenkins$/gm, `namespace: ${controllerNs.name}`)
    .replaceAll('.jenkins.svc.cluster.local', `.${controllerNs.name}.svc.cluster.local`);
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as Record<string, unknown>)
    .filter((o) => o && o.kind !== 'Namespace');
}

beforeAll(async () => {
  cluster = await testCluster();
  core = cluster.kc.makeApiClient(CoreV1Api);
  expect(realNodes.length, 'the e2e tier runs on real nodes (as root)').toBeGreaterThanOrEqual(2);
  operator = await startLocalOperator(cluster.kc, cluster.kubeconfigPath, nodeName, localCluster.criEndpoint);
  controllerNs = await createTestNamespace(cluster.kc, 'e2e-jenkins');
  agentsNs = await createTestNamespace(cluster.kc, 'e2e-jenkins-agents');
}, 240_000);

afterAll(async () => {
  await agentsNs?.remove();
  await controllerNs?.remove();
  await operator?.stop();
}, 180_000);

describe('Jenkins agent pods on spot with a controller stand-in on a real node', () => {
  it('runs the agents on the virtual node, and each reaches the controller through its Services', async () => {
    const t0 = Date.now();
    await kubectl(
      ['apply', '-f', '-'],
      standInObjects()
        .map((o) => JSON.stringify(o))
        .join('\n'),
    );
    const batch = cluster.kc.makeApiClient(BatchV1Api);
    // A check that throws only counts as "not yet" in waitFor: a failed agent ends the wait and is thrown after.
    let failed = 0;
    await waitFor(
      'the spot-agents Job complete',
      300_000,
      async () => {
        const job = await batch.readNamespacedJob({ name: 'spot-agents', namespace: agentsNs.name });
        failed = job.status?.failed ?? 0;
        return (job.status?.succeeded ?? 0) === 2 || failed > 0;
      },
      1000,
    );
    if (failed > 0) {
      const logs = await kubectl([
        '-n',
        agentsNs.name,
        'logs',
        '-l',
        'jenkins/label=spot',
        '--tail=20',
      ]).catch(String);
      throw new Error(`${failed} agent pod(s) of spot-agents failed; the agents' logs:\n${logs}`);
    }
    process.stdout.write(
      `jenkins: local-standin.yaml applied to 2 agents done in ${(Date.now() - t0) / 1000} s\n`,
    );

    // The controller stand-in stays home: on a real node.
    const [controller] = (
      await core.listNamespacedPod({
        namespace: controllerNs.name,
        labelSelector: 'app.kubernetes.io/name=jenkins',
      })
    ).items;
    expect(realNodes).toContain(controller?.spec?.nodeName);

    // Both agents ran to completion on the virtual node, as spot capacity.
    const agents = (
      await core.listNamespacedPod({ namespace: agentsNs.name, labelSelector: 'jenkins/label=spot' })
    ).items;
    expect(agents).toHaveLength(2);
    for (const a of agents) {
      const name = a.metadata!.name!;
      expect(a.spec!.nodeName, name).toBe(nodeName);
      expect(a.status!.phase, name).toBe('Succeeded');
      expect(a.metadata!.annotations, name).toMatchObject({
        'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo',
      });
      const log = await kubectl(['-n', agentsNs.name, 'logs', name]);
      expect(log, name).toContain(
        `GET http://jenkins.${controllerNs.name}.svc.cluster.local:8080/tcpSlaveAgentListener/ answered HTTP 200`,
      );
      expect(log, name).toContain(
        `connected to jenkins-agent.${controllerNs.name}.svc.cluster.local:50000 as ${name}`,
      );
      expect(log, name).toMatch(/got: RUN build-\d+/);
      expect(log, name).toContain('got: BYE');
    }

    // What the controller received: each agent by name, from its address on the virtual node's network, and
    // the answer to the build it was given.
    const log = await kubectl(['-n', controllerNs.name, 'logs', controller!.metadata!.name!]);
    process.stdout.write(`jenkins: the controller stand-in's log:\n${log}`);
    for (const a of agents) {
      const name = a.metadata!.name!;
      expect(log).toContain(`agent ${name} connected from /${a.status!.podIP}:`);
      expect(log).toMatch(new RegExp(`agent ${name} answered DONE build-\\d+`));
    }
  }, 600_000);
});
