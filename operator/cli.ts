#!/usr/bin/env node
/**
 * The `spillway` command.
 *
 *   spillway run            everything in one process against $KUBECONFIG (make run): applies the CRD, serves and
 *                           registers the webhooks (dev mode), runs the ElasticWorkload controller under leader
 *                           election and one virtual node
 *   spillway controller     the chart's controller+webhooks Deployment (webhook configurations come with the chart)
 *   spillway virtual-node   one virtual node (the chart's virtual node workload)
 *   spillway crds           prints the CRDs as YAML
 *   spillway version
 *
 * Before anything touches the cluster, every command checks its flags, every provider's configuration and that
 * the cluster answers; `run` also refuses to start beside another spillway (webhooks/ownership.ts). A run that
 * fails at start therefore leaves no CRD change, namespace or webhook configuration behind.
 */
import { hostname } from 'node:os';
import { VersionApi, type KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { elasticWorkloadCrd } from './elasticworkload/crd.ts';
import { ElasticWorkloadController, elasticWorkloadController } from './elasticworkload/controller.ts';
import { installCrd } from './elasticworkload/install.ts';
import { createProvider, providerHelp } from './providers/index.ts';
import { apiErrorCode, apiErrorMessage, loadKubeConfig, makeClients, type Clients } from './shared/client.ts';
import { LeaderElector } from './shared/leader.ts';
import { componentLogger, type Logger } from './shared/log.ts';
import { serveMetrics } from './shared/metrics.ts';
import { KubernetesMetricsAuth, metricsServingCertificate } from './shared/metrics-auth.ts';
import { GracefulShutdown } from './shared/shutdown.ts';
import {
  commandOptions,
  firstTermOnly,
  hostPort,
  isClusterCommand,
  localStateDir,
  namespaceErrorIsFine,
  parseFlags,
  UsageError,
  type ClusterCommand,
  type CommandOptions,
  type ControllerCommandOptions,
  type RunOptions,
  type VirtualNodeOptions,
} from './cli-flags.ts';
import { startVirtualNode } from './virtualnode/run.ts';
import { NodeCsrApprover } from './nodeidentity/approver.ts';
import { startWebhooks } from '../webhooks/run.ts';
import {
  acceptsConnections,
  otherSpillway,
  refusal,
  spillwayWebhookConfigurations,
} from '../webhooks/ownership.ts';
import { VERSION } from './shared/version.ts';

const usage = `usage: spillway <run|controller|virtual-node|crds|version> [flags]

providers (--provider):
${providerHelp('  ')}

flags:
  --kubeconfig PATH        kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --namespace NS           spillway's namespace (default: spillway-system)
  --provider NAME          virtual node provider, one of the above (default: fake)
  --node-name NAME         virtual node name (default: spillway-virtual-<provider>)
  --node-ip IP             address the apiserver reaches the kubelet API on (default: local: its sandbox bridge's
                           address, e.g. 10.250.0.1; others: 127.0.0.1)
  --kubelet-port PORT      kubelet API port (default: 10250)
  --capacity LIST          what the node advertises, e.g. cpu=64,memory=256Gi,pods=500,ephemeral-storage=1Ti
                           (default: the provider's; local: the host's nproc, MemTotal, 110 pods, state disk)
  --kubelet-host HOST      kubelet API listen address (default: the node IP; the chart sets 0.0.0.0)
  --webhook-port PORT      webhook server port (default: any free port in run, 9443 in controller)
  --webhook-host HOST      webhook server listen address (default: 127.0.0.1 in run, 0.0.0.0 in controller)
  --tls-mode MODE          webhook TLS: self-managed (default) or external (cert-manager writes the Secret)
  --metrics-port PORT      Prometheus metrics port (default: 8080; 0 disables)
  --metrics-host HOST      metrics listen address (default: 127.0.0.1; the chart sets 0.0.0.0)
  --metrics-auth MODE      none (default: plain HTTP, anyone who connects) or kubernetes (HTTPS; a bearer token
                           allowed get on the non-resource URL /metrics: TokenReview + SubjectAccessReview)
  --watch-namespaces LIST  controller: reconcile ElasticWorkloads only in these namespaces (comma-separated;
                           default: every namespace). The chart's controller.watchNamespaces sets it
  --approve-node-csrs LIST controller: approve node client certificates for these virtual nodes (comma-separated)
  --node-bootstrap-user U  controller: the user those requests must come from (the virtual nodes' ServiceAccount)
  --config FILE            virtual-node: several virtual nodes from one YAML file (see operator/virtualnode/config.ts)
  --provider-config FILE   eci: the provider configuration (docs/eci.md); credentials from RRSA or a Secret's env
  --coredns PATH           run --provider local: the CoreDNS binary for cluster DNS (default: bin/coredns)
  --cri-endpoint PATH      local: containerd's CRI socket (default: $SPILLWAY_CRI_ENDPOINT, else
                           <cluster dir>/containerd/containerd.sock of make cluster-up)
  --runtime-handler NAME   local: the containerd runtime handler sandboxes run with (default: runc)
  --workers N              run, controller: concurrent ElasticWorkload reconciles (default: 16)
  --capacity-cooldown S    run, controller: seconds a unit out of provider capacity waits before it is tried
                           again (default: 300)
  --pod-workers N          run, virtual-node: concurrent pod syncs per virtual node (default: 32)
  --max-create-attempts N  run, virtual-node: provider create attempts before a pod fails (default: 5)
`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseFlags(argv);
  const command = positionals[0];
  if (values.help || !command) {
    // Asked for (--help) it is an answer; shown because the command is missing, a usage error.
    process.stdout.write(usage);
    return values.help ? 0 : 2;
  }
  if (command === 'version') {
    process.stdout.write(`spillway ${VERSION}\n`);
    return 0;
  }
  if (command === 'crds') {
    process.stdout.write(stringify(elasticWorkloadCrd()));
    return 0;
  }
  if (!isClusterCommand(command)) {
    process.stderr.write(`spillway: unknown command "${command}"\n${usage}`);
    return 2;
  }
  // Everything is checked before anything touches the cluster: a run that fails must leave it as it was.
  return runCommand(commandOptions(command, values));
}

/** What every part of a cluster command shares. */
interface Process {
  kc: KubeConfig;
  clients: Clients;
  /** This process among spillway's replicas: the Lease holder, the dev-mode webhooks' owner. */
  identity: string;
  log: Logger;
  shutdown: GracefulShutdown;
}

/**
 * Who checks metrics scrapers' tokens: this process's identity, except in a virtual node process, where the
 * first node's own identity takes over once it has one (system:node:<name> may create TokenReviews and
 * SubjectAccessReviews, as a kubelet does; the bootstrap ServiceAccount may not).
 */
type Reviewers = { current: Pick<Clients, 'authentication' | 'authorization'> };

async function runCommand(options: CommandOptions): Promise<number> {
  const log = componentLogger('spillway', { command: options.command });
  const { kc, origin } = loadKubeConfig(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {});
  const clients = makeClients(kc);
  await kc
    .makeApiClient(VersionApi)
    .getCode()
    .catch((err: unknown) => {
      throw new Error(
        `cannot reach the cluster at ${kc.getCurrentCluster()?.server ?? '(no server)'} (kubeconfig: ${origin}): ${apiErrorMessage(err)}`,
      );
    });
  const identity = `${hostname()}-${process.pid}`;
  if (options.command === 'run') {
    // Two operators would judge the same pods and take turns on the Lease: refuse before registering anything.
    const other = await otherSpillway(
      await spillwayWebhookConfigurations(clients.admissionregistration),
      identity,
      (url) => acceptsConnections(url),
    );
    if (other) {
      process.stderr.write(`spillway: ${refusal(other)}\n`);
      return 1;
    }
  }
  const shutdown = new GracefulShutdown({ logger: log });
  shutdown.listen(firstTermOnly(process));
  log.info({ kubeconfig: origin, identity }, 'starting');
  const proc: Process = { kc, clients, identity, log, shutdown };

  const reviewers: Reviewers = { current: clients };
  await doing(`serving metrics on port ${options.metrics.port}`, () =>
    startMetrics(proc, options, reviewers),
  );
  // Under run, the controller's approver approves this process's own virtual nodes.
  if (options.command !== 'virtual-node') await startControlPlane(proc, options);
  if (options.command !== 'controller') await startNodes(proc, options, reviewers);
  return new Promise<number>(() => {}); // runs until a signal; GracefulShutdown exits the process
}

/** Runs `step`, and names what was being done in its error: `starting virtual node x: <what went wrong>`. */
async function doing<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw new Error(`${what}: ${apiErrorMessage(err)}`, { cause: err });
  }
}

async function startMetrics({ log, shutdown }: Process, options: CommandOptions, reviewers: Reviewers) {
  const { port, host, auth } = options.metrics;
  if (port <= 0) return;
  // Bearer tokens must not cross the pod network in clear: with authentication, the server speaks HTTPS.
  const secured =
    auth === 'kubernetes'
      ? {
          auth: new KubernetesMetricsAuth({
            authentication: {
              createTokenReview: (r) => reviewers.current.authentication.createTokenReview(r),
            },
            authorization: {
              createSubjectAccessReview: (r) => reviewers.current.authorization.createSubjectAccessReview(r),
            },
          }),
          tls: await metricsServingCertificate({
            dnsNames: [`spillway-metrics.${options.namespace}.svc`, 'localhost'],
            ipAddresses: ['127.0.0.1'],
          }).then((pair) => ({ cert: pair.certPem, key: pair.keyPem })),
        }
      : {};
  const metrics = await serveMetrics({ host, port, ...secured });
  shutdown.onShutdown('metrics', () => metrics.close());
  log.info({ url: metrics.url }, `serving metrics at ${metrics.url}`);
}

/** Creates spillway's namespace; fails on anything but what {@link namespaceErrorIsFine} allows. */
async function ensureNamespace(clients: Clients, name: string, command: ClusterCommand): Promise<void> {
  await clients.core.createNamespace({ body: { metadata: { name } } }).catch((err: unknown) => {
    if (namespaceErrorIsFine(command, apiErrorCode(err))) return;
    throw new Error(`creating namespace ${name}: ${apiErrorMessage(err)}`, { cause: err });
  });
}

/** The webhooks, and under the Lease the ElasticWorkload controller and the node certificate approver. */
async function startControlPlane(proc: Process, options: RunOptions | ControllerCommandOptions) {
  const { kc, clients, identity, log, shutdown } = proc;
  const dev = options.command === 'run';
  if (dev) await doing('installing the ElasticWorkload CRD', () => installCrd(kc));
  await ensureNamespace(clients, options.namespace, options.command);
  const webhooks = await doing('starting the webhooks', () =>
    startWebhooks({
      clients,
      namespace: options.namespace,
      devMode: dev,
      register: dev,
      owner: identity,
      tlsMode: options.webhooks.tlsMode,
      host: options.webhooks.host,
      ...(options.webhooks.port !== undefined ? { port: options.webhooks.port } : {}),
    }),
  );
  shutdown.onShutdown('webhooks', () => webhooks.stop());
  log.info({ url: webhooks.server.url() }, `serving webhooks at ${webhooks.server.url()}`);
  // Every replica serves webhooks; only the leader reconciles ElasticWorkloads. Losing the Lease (another
  // replica took it, or the apiserver was unreachable past the renew deadline) stops the controller and the
  // elector campaigns again: the webhooks and virtual nodes in this process keep serving meanwhile.
  let controller: ElasticWorkloadController | undefined;
  const { watchNamespaces, workers, capacityCooldownSeconds } = options.controller;
  const managedNodes = new Set([
    ...options.controller.approveNodeCsrs,
    ...(dev ? options.nodes.map((n) => n.config.name) : []),
  ]);
  // The virtual nodes' client certificates (operator/nodeidentity/): approved by the leader for the nodes this
  // spillway runs, asked by their bootstrap identity (under run: this process's own user, the same process).
  const bootstrapUsers = options.controller.nodeBootstrapUser ? [options.controller.nodeBootstrapUser] : [];
  if (dev) {
    const me = await doing('asking the apiserver who this process is', () =>
      clients.authentication.createSelfSubjectReview({ body: {} }),
    );
    if (me.status?.userInfo?.username) bootstrapUsers.push(me.status.userInfo.username);
  }
  let approver: NodeCsrApprover | undefined;
  const elector = new LeaderElector({
    leases: clients.coordination,
    namespace: options.namespace,
    name: 'spillway-elasticworkload-controller',
    identity,
    logger: log,
    onStartedLeading: async () => {
      controller = elasticWorkloadController(kc, {
        identity,
        logger: log,
        ...(watchNamespaces.length > 0 ? { namespaces: watchNamespaces } : {}),
        ...(workers !== undefined ? { workers } : {}),
        ...(capacityCooldownSeconds !== undefined ? { capacityCooldownSeconds } : {}),
      });
      await controller.start();
      if (bootstrapUsers.length > 0) {
        approver = new NodeCsrApprover({
          kc,
          policy: { isManagedNode: (name) => managedNodes.has(name), bootstrapUsers },
          logger: log,
        });
        await approver.start();
      }
    },
    onStoppedLeading: async () => {
      const stopping = controller;
      controller = undefined;
      await stopping?.stop();
      const approving = approver;
      approver = undefined;
      await approving?.stop();
    },
  });
  elector.start();
  shutdown.onShutdown('leader-election', () => elector.stop());
}

/** Each virtual node over its provider; under run, a local node's cluster network too. */
async function startNodes(proc: Process, options: RunOptions | VirtualNodeOptions, reviewers: Reviewers) {
  const { kc, clients, log, shutdown } = proc;
  for (const { provider: name, config, providerOptions } of options.nodes) {
    const provider = await doing(`starting the ${name} provider of virtual node ${config.name}`, () =>
      createProvider(name, providerOptions),
    );
    const node = await doing(`starting virtual node ${config.name}`, () =>
      startVirtualNode({ kc, provider, config, logger: log, pods: options.pods }),
    );
    if (options.command === 'virtual-node' && reviewers.current === clients)
      reviewers.current = makeClients(node.identity.kc);
    shutdown.onShutdown(`virtual-node ${config.name}`, async () => {
      await node.stop();
      await provider.close();
    });
    if (name === 'local' && options.command === 'run') {
      // A local control plane has no cluster DNS and no kube-proxy: spillway run brings them for local sandboxes.
      const { kubeconfigPath, coredns } = options;
      if (!kubeconfigPath) throw new Error('unreachable: checked with the flags');
      const net = await doing(
        `starting the local cluster network of virtual node ${config.name}`,
        async () => {
          const { startClusterNetwork } = await import('./providers/local/cluster-network.ts');
          return startClusterNetwork(kc, kubeconfigPath, provider, {
            corednsBinary: coredns,
            stateDir: localStateDir(config.name),
            nodeName: config.name,
            logger: log.child({ component: 'kube-proxy', node: config.name }),
          });
        },
      );
      shutdown.onShutdown('local cluster network', () => net.stop());
    }
    const kubeletUrl = `https://${hostPort(config.kubeletHost ?? config.internalIP, config.kubeletPort)}`;
    log.info(
      { node: config.name, provider: provider.name, url: kubeletUrl },
      `serving the kubelet API of virtual node ${config.name} at ${kubeletUrl}`,
    );
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`spillway: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
