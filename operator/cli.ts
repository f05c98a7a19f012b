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
import { fileURLToPath } from 'node:url';
import { VersionApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { elasticWorkloadCrd } from './elasticworkload/crd.ts';
import { ElasticWorkloadController, elasticWorkloadController } from './elasticworkload/controller.ts';
import { installCrd } from './elasticworkload/install.ts';
import { createProvider, nodePodCIDR, providerHelp, validateProvider } from './providers/index.ts';
import { apiErrorMessage, loadKubeConfig, makeClients } from './shared/client.ts';
import { LeaderElector } from './shared/leader.ts';
import { componentLogger } from './shared/log.ts';
import { serveMetrics } from './shared/metrics.ts';
import { KubernetesMetricsAuth, metricsServingCertificate } from './shared/metrics-auth.ts';
import { GracefulShutdown } from './shared/shutdown.ts';
import {
  firstTermOnly,
  hostPort,
  localStateDir,
  parseFlags,
  portProblems,
  providerOptions,
  virtualNodeEntries,
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

export const VERSION = '0.1.0';

const usage = `usage: spillway <run|controller|virtual-node|crds|version> [flags]

providers (--provider):
${providerHelp('  ')}

flags:
  --kubeconfig PATH        kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --namespace NS           spillway's namespace (default: spillway-system)
  --provider NAME          virtual node provider, one of the above (default: fake)
  --node-name NAME         virtual node name (default: spillway-virtual-<provider>)
  --node-ip IP             address the apiserver reaches the kubelet API on (default: 127.0.0.1)
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
  if (!['run', 'controller', 'virtual-node'].includes(command)) {
    process.stderr.write(`spillway: unknown command "${command}"\n${usage}`);
    return 2;
  }

  // Everything is checked before anything touches the cluster: a run that fails must leave it as it was.
  const metricsAuth = values['metrics-auth'];
  if (metricsAuth !== 'none' && metricsAuth !== 'kubernetes') {
    process.stderr.write(`spillway: --metrics-auth must be none or kubernetes, not "${metricsAuth}"\n`);
    return 2;
  }
  const tlsMode = values['tls-mode'];
  if (tlsMode !== 'self-managed' && tlsMode !== 'external') {
    process.stderr.write(`spillway: --tls-mode must be self-managed or external, not "${tlsMode}"\n`);
    return 2;
  }
  const badPort = portProblems(values);
  if (badPort) {
    process.stderr.write(`spillway: ${badPort}\n`);
    return 2;
  }
  const entries = command === 'controller' ? [] : virtualNodeEntries(values);
  for (const entry of entries) validateProvider(entry.provider, providerOptions(entry, values));
  const kubeconfigPath = values.kubeconfig ?? process.env.KUBECONFIG?.split(':')[0];
  if (command === 'run' && entries.some((e) => e.provider === 'local') && !kubeconfigPath)
    throw new Error('run --provider local needs --kubeconfig or $KUBECONFIG (CoreDNS reads it)');

  const log = componentLogger('spillway', { command });
  const { kc, origin } = loadKubeConfig(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {});
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
  if (command === 'run') {
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

  const watchNamespaces = values['watch-namespaces']
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const managedNodes = new Set(
    values['approve-node-csrs']
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean),
  );

  // Who checks scrapers' tokens: this process's identity, except in a virtual node process, where the first node's
  // own identity takes over once it has one (system:node:<name> may create TokenReviews and SubjectAccessReviews,
  // as a kubelet does; the bootstrap ServiceAccount may not).
  let reviewers: Pick<typeof clients, 'authentication' | 'authorization'> = clients;
  const metricsPort = Number(values['metrics-port']);
  if (metricsPort > 0) {
    // Bearer tokens must not cross the pod network in clear: with authentication, the server speaks HTTPS.
    const secured =
      metricsAuth === 'kubernetes'
        ? {
            auth: new KubernetesMetricsAuth({
              authentication: { createTokenReview: (r) => reviewers.authentication.createTokenReview(r) },
              authorization: {
                createSubjectAccessReview: (r) => reviewers.authorization.createSubjectAccessReview(r),
              },
            }),
            tls: await metricsServingCertificate({
              dnsNames: [`spillway-metrics.${values.namespace}.svc`, 'localhost'],
              ipAddresses: ['127.0.0.1'],
            }).then((pair) => ({ cert: pair.certPem, key: pair.keyPem })),
          }
        : {};
    const metrics = await serveMetrics({ host: values['metrics-host'], port: metricsPort, ...secured });
    shutdown.onShutdown('metrics', () => metrics.close());
    log.info({ url: metrics.url }, `serving metrics at ${metrics.url}`);
  }

  if (command === 'run' || command === 'controller') {
    const dev = command === 'run';
    if (dev) await installCrd(kc);
    await clients.core
      .createNamespace({ body: { metadata: { name: values.namespace } } })
      .catch(() => undefined);
    const webhooks = await startWebhooks({
      clients,
      namespace: values.namespace,
      devMode: dev,
      register: dev,
      owner: identity,
      tlsMode,
      host: values['webhook-host'] ?? (dev ? '127.0.0.1' : '0.0.0.0'),
      ...(values['webhook-port'] ? { port: Number(values['webhook-port']) } : {}),
    });
    shutdown.onShutdown('webhooks', () => webhooks.stop());
    log.info({ url: webhooks.server.url() }, `serving webhooks at ${webhooks.server.url()}`);
    // Every replica serves webhooks; only the leader reconciles ElasticWorkloads. Losing the Lease (another
    // replica took it, or the apiserver was unreachable past the renew deadline) stops the controller and the
    // elector campaigns again: the webhooks and virtual nodes in this process keep serving meanwhile.
    let controller: ElasticWorkloadController | undefined;
    // The virtual nodes' client certificates (operator/nodeidentity/): approved by the leader for the nodes this
    // spillway runs, asked by their bootstrap identity (under run: this process's own user, the same process).
    const bootstrapUsers = values['node-bootstrap-user'] ? [values['node-bootstrap-user']] : [];
    if (dev) {
      const me = await clients.authentication.createSelfSubjectReview({ body: {} });
      if (me.status?.userInfo?.username) bootstrapUsers.push(me.status.userInfo.username);
    }
    let approver: NodeCsrApprover | undefined;
    const elector = new LeaderElector({
      leases: clients.coordination,
      namespace: values.namespace,
      name: 'spillway-elasticworkload-controller',
      identity,
      logger: log,
      onStartedLeading: async () => {
        controller = elasticWorkloadController(kc, {
          identity,
          logger: log,
          ...(watchNamespaces.length > 0 ? { namespaces: watchNamespaces } : {}),
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

  if (command === 'run' || command === 'virtual-node') {
    // Under run, the approver above approves this process's own virtual nodes.
    if (command === 'run') for (const entry of entries) managedNodes.add(entry.config.name);
    for (const entry of entries) {
      const local = entry.provider === 'local';
      const podCIDR = nodePodCIDR(entry.provider, entry.config.podCIDR);
      const config = podCIDR ? { ...entry.config, podCIDR } : entry.config;
      const provider = await createProvider(entry.provider, providerOptions({ ...entry, config }, values));
      const node = await startVirtualNode({ kc, provider, config, logger: log });
      if (command === 'virtual-node' && reviewers === clients) reviewers = makeClients(node.identity.kc);
      shutdown.onShutdown(`virtual-node ${config.name}`, async () => {
        await node.stop();
        await provider.close();
      });
      if (local && command === 'run') {
        // A local control plane has no cluster DNS and no kube-proxy: the local provider brings its own.
        if (!kubeconfigPath) throw new Error('unreachable: checked above');
        const { startClusterNetwork } = await import('./providers/local/cluster-network.ts');
        const net = await startClusterNetwork(kc, kubeconfigPath, provider, {
          corednsBinary:
            values.coredns ??
            (process.env.SPILLWAY_BIN
              ? `${process.env.SPILLWAY_BIN}/coredns`
              : fileURLToPath(new URL('../bin/coredns', import.meta.url))),
          stateDir: localStateDir(config.name),
        });
        shutdown.onShutdown('local cluster network', () => net.stop());
      }
      const kubeletUrl = `https://${hostPort(config.kubeletHost ?? config.internalIP, config.kubeletPort)}`;
      log.info(
        { node: config.name, provider: provider.name, url: kubeletUrl },
        `serving the kubelet API of virtual node ${config.name} at ${kubeletUrl}`,
      );
    }
  }
  return new Promise<number>(() => {}); // runs until a signal; GracefulShutdown exits the process
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`spillway: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
