/**
 * Real kubelet nodes for the local cluster (docs/architecture.md#real-nodes): each node is a host of its own on this
 * machine, a network namespace (`spillway-<node>`) with a veth on the node bridge `spillway1` and its own address,
 * and a mount namespace shared by its containerd (test/support/containerd.ts, pods on the node's `cni0` bridge over
 * the node's pod CIDR) and its kubelet (v1.36.3, cgroupfs, `failCgroupV1: false`, under a cgroup root of its own so
 * that two kubelets on one kernel never touch each other's pods). kube-proxy (nftables) runs in the node's network
 * namespace, as a node's kube-proxy does in its host network.
 *
 * The host is the router between the nodes, the virtual node's sandbox bridge (`spillway0`) and nothing else: routes
 * to each node's pod CIDR over its node address, forwarding only among `spillway*` links (the network guard), and a
 * gateway process on the node bridge's address forwarding the apiserver and the registry, which listen on loopback.
 * Nothing here is reachable from, or reaches, outside the machine.
 */
import { execFile } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { issueCert, type KeyPair } from '../../operator/shared/pki.ts';
import { clientKubeconfig, kubeProxyConfig } from '../../operator/providers/local/kube-proxy-config.ts';
import { containerdCommand, containerdPaths, type ContainerdOptions } from './containerd.ts';

const run = promisify(execFile);

/**
 * The link between the host and the real nodes: a bridge, the host's address on it, the nodes' network, and the
 * range the network guard blackholes around it (wider than the link, so that the link's own route stays).
 */
export const nodeNetwork = {
  bridge: 'spillway1',
  cidr: '10.249.0.0/24',
  gateway: '10.249.0.1',
  guarded: '10.249.0.0/16',
} as const;
/** Pod addresses of the real nodes (each node's CIDR is a /24 of it). */
export const realPodCIDR = '10.248.0.0/16';
/** Where the gateway process forwards on {@link nodeNetwork}'s gateway address: the apiserver and the registry. */
export const gatewayPorts = { apiserver: 6443, registry: 5000 } as const;
/** The cluster DNS addon's ClusterIP (as the local provider's, operator/providers/local/cluster-dns.ts). */
export const clusterDNSIP = '10.96.0.10';

/** One real node: its Node name, its address on the node network, its pod CIDR. */
export interface RealNode {
  name: string;
  ip: string;
  podCIDR: string;
}

/** The real nodes of a cluster that has them: two, small enough for 2 cores. */
export const defaultRealNodes: RealNode[] = [
  { name: 'worker-1', ip: '10.249.0.11', podCIDR: '10.248.1.0/24' },
  { name: 'worker-2', ip: '10.249.0.12', podCIDR: '10.248.2.0/24' },
];

/** The label every real node carries (set by its kubelet), so that tests and the demo can find them. */
export const REAL_NODE_LABEL = 'spillway.dev/node-kind';

/** A node's processes, as cluster components named `<node>/<part>`. */
export const nodeParts = ['containerd', 'kubelet', 'kube-proxy'] as const;
export type NodePart = (typeof nodeParts)[number];

/** The node's network namespace name (`ip netns`), and its path. */
export const netnsName = (node: RealNode) => `spillway-${node.name}`;
export const netnsPath = (node: RealNode) => `/run/netns/${netnsName(node)}`;
/** The host end of the node's veth (at most 15 characters). */
const hostVeth = (node: RealNode) => `swn-${node.name}`.slice(0, 15);

/** Where a node's files live: containerd under `<dir>/containerd`, the kubelet's root, PKI and configs. */
export function nodePaths(clusterDir: string, node: RealNode) {
  const dir = join(clusterDir, 'nodes', node.name);
  return {
    dir,
    kubeletRoot: join(dir, 'kubelet'),
    podLogs: join(dir, 'pod-logs'),
    kubeletConfig: join(dir, 'kubelet.yaml'),
    kubeconfig: join(dir, 'kubelet.kubeconfig'),
    pki: join(dir, 'pki'),
    resolvConf: join(dir, 'resolv.conf'),
    kubeProxyConfig: join(dir, 'kube-proxy.yaml'),
    kubeProxyKubeconfig: join(dir, 'kube-proxy.kubeconfig'),
  };
}

/** The containerd of a node: in the node's network namespace, pods on `cni0` over the node's pod CIDR. */
export function nodeContainerdOptions(
  clusterDir: string,
  binDir: string,
  node: RealNode,
  opts: { pauseImage: string; registry: string },
): ContainerdOptions {
  return {
    dir: nodePaths(clusterDir, node).dir,
    binDir,
    pauseImage: opts.pauseImage,
    registries: [opts.registry],
    // The registry listens on the host's loopback: the node reaches it through the gateway.
    registryServers: { [opts.registry]: `http://${nodeNetwork.gateway}:${gatewayPorts.registry}` },
    streamPort: 10010,
    nodeCIDR: node.podCIDR,
    bridge: 'cni0',
    netns: netnsPath(node),
  };
}

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}

/** `ip` that tolerates "already exists". */
async function ipIdempotent(args: string[]): Promise<void> {
  await run('ip', args).catch((err: { stderr?: string }) => {
    if (!/File exists|already exists/.test(String(err.stderr))) throw err;
  });
}

/**
 * The node network: the bridge with the gateway address, and per node a network namespace with a veth on the
 * bridge, its address, a default route through the host, loopback up, forwarding on (a node routes for its pods),
 * and on the host a route to the node's pod CIDR. Install the network guard first. Idempotent.
 */
export async function setUpNodeNetwork(nodes: RealNode[]): Promise<void> {
  const bits = nodeNetwork.cidr.split('/')[1];
  await ipIdempotent(['link', 'add', nodeNetwork.bridge, 'type', 'bridge']);
  await ip(['addr', 'replace', `${nodeNetwork.gateway}/${bits}`, 'dev', nodeNetwork.bridge]);
  await ip(['link', 'set', nodeNetwork.bridge, 'up']);
  writeFileSync(`/proc/sys/net/ipv4/conf/${nodeNetwork.bridge}/forwarding`, '1');
  for (const node of nodes) {
    const ns = netnsName(node);
    if (!existsSync(netnsPath(node))) await ip(['netns', 'add', ns]);
    await ipIdempotent(['link', 'add', hostVeth(node), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await ip(['link', 'set', hostVeth(node), 'master', nodeNetwork.bridge, 'up']);
    await ip(['-n', ns, 'addr', 'replace', `${node.ip}/${bits}`, 'dev', 'eth0']);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', ns, 'route', 'replace', 'default', 'via', nodeNetwork.gateway]);
    await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await ip(['route', 'replace', node.podCIDR, 'via', node.ip, 'dev', nodeNetwork.bridge]);
  }
  // The host routes between the node bridge and the sandbox bridge (the guard allows only spillway* links).
  for (const link of ['all', 'default']) writeFileSync(`/proc/sys/net/ipv4/conf/${link}/forwarding`, '1');
}

/** Removes the nodes' namespaces, veths, routes and the node bridge. Stop every node process first. */
export async function tearDownNodeNetwork(nodes: RealNode[]): Promise<void> {
  for (const node of nodes) {
    await run('ip', ['route', 'del', node.podCIDR]).catch(() => {});
    await run('ip', ['link', 'del', hostVeth(node)]).catch(() => {});
    await run('ip', ['netns', 'del', netnsName(node)]).catch(() => {});
  }
  await run('ip', ['link', 'del', nodeNetwork.bridge]).catch(() => {});
}

/** The kubelet's configuration: cgroupfs on cgroup v1, authenticated API on the node address, nothing evicted for disk. */
export function kubeletConfig(
  clusterDir: string,
  node: RealNode,
  opts: { criSocket: string; caFile: string },
): string {
  const p = nodePaths(clusterDir, node);
  const config = {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // This machine has cgroup v1 and no systemd: kubelet 1.35+ refuses v1 unless told.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    // Two kubelets share one kernel: each keeps its pods under a cgroup root of its own.
    cgroupRoot: `/spillway-${node.name}`,
    cgroupsPerQOS: true,
    enforceNodeAllocatable: ['pods'],
    containerRuntimeEndpoint: `unix://${opts.criSocket}`,
    // Not the shared /var/log/pods: each kubelet garbage-collects the log folders of pods it does not know, which
    // on one machine are the other node's.
    podLogsDir: p.podLogs,
    address: node.ip,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: node.ip,
    healthzPort: 10248,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: opts.caFile },
    },
    authorization: { mode: 'Webhook' },
    tlsCertFile: join(p.pki, 'kubelet.crt'),
    tlsPrivateKeyFile: join(p.pki, 'kubelet.key'),
    clusterDNS: [clusterDNSIP],
    clusterDomain: 'cluster.local',
    // Pods with dnsPolicy Default get this: no nameserver off the machine.
    resolvConf: p.resolvConf,
    failSwapOn: false,
    // The disk is shared with everything else on the machine: evict for memory only.
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    kubeAPIQPS: 50,
    kubeAPIBurst: 100,
    // Without CAP_SYS_RESOURCE the kubelet cannot lower its own OOM score (-999): keep the inherited one.
    oomScoreAdj: 0,
    maxPods: 110,
    logging: { verbosity: 1 },
  };
  return JSON.stringify(config, null, 2) + '\n';
}

/**
 * Writes a node's files: its client and serving certificates from the cluster CA (system:node:<name> in
 * system:nodes, as a kubelet's after TLS bootstrap), its kubeconfig to the apiserver through the gateway, the
 * kubelet's configuration, a resolv.conf without nameservers off the machine, and kube-proxy's identity and
 * configuration (system:kube-proxy).
 */
export async function writeNodeFiles(
  clusterDir: string,
  node: RealNode,
  opts: { ca: KeyPair; caFile: string; criSocket: string; clusterCIDRs: string[] },
): Promise<void> {
  const p = nodePaths(clusterDir, node);
  for (const d of [p.dir, p.pki, p.kubeletRoot, p.podLogs]) mkdirSync(d, { recursive: true, mode: 0o700 });
  const year = 365 * 24 * 3600_000;
  const server = `https://${nodeNetwork.gateway}:${gatewayPorts.apiserver}`;
  const client = await issueCert(opts.ca, {
    subject: `CN=system:node:${node.name}, O=system:nodes`,
    usage: 'client',
    validForMs: year,
  });
  writeFileSync(p.kubeconfig, clientKubeconfig(server, opts.ca.certPem, client, `system:node:${node.name}`), {
    mode: 0o600,
  });
  const serving = await issueCert(opts.ca, {
    subject: `CN=system:node:${node.name}, O=system:nodes`,
    dnsNames: [node.name],
    ipAddresses: [node.ip],
    usage: 'server',
    validForMs: year,
  });
  writeFileSync(join(p.pki, 'kubelet.crt'), serving.certPem);
  writeFileSync(join(p.pki, 'kubelet.key'), serving.keyPem, { mode: 0o600 });
  writeFileSync(p.kubeletConfig, kubeletConfig(clusterDir, node, opts));
  writeFileSync(p.resolvConf, `# ${node.name}: no nameserver beyond the cluster's\nsearch cluster.local\n`);
  const proxyClient = await issueCert(opts.ca, {
    subject: 'CN=system:kube-proxy',
    usage: 'client',
    validForMs: year,
  });
  writeFileSync(
    p.kubeProxyKubeconfig,
    clientKubeconfig(server, opts.ca.certPem, proxyClient, 'system:kube-proxy'),
    { mode: 0o600 },
  );
  writeFileSync(
    p.kubeProxyConfig,
    kubeProxyConfig({
      kubeconfig: p.kubeProxyKubeconfig,
      nodeName: node.name,
      clusterCIDR: opts.clusterCIDRs.join(','),
      nodePortAddresses: [`${node.ip}/32`],
      metricsPort: 10249,
      healthzPort: 10256,
      masqueradeAll: false,
      verbosity: 1,
    })
      .replace('"127.0.0.1:10249"', `"${node.ip}:10249"`)
      .replace('"127.0.0.1:10256"', `"${node.ip}:10256"`),
  );
}

/** The command lines of a node's processes (containerd's from test/support/containerd.ts). */
export function nodeCommands(clusterDir: string, binDir: string, node: RealNode): Record<NodePart, string[]> {
  const p = nodePaths(clusterDir, node);
  const c = containerdPaths(p.dir);
  return {
    containerd: containerdCommand(p.dir, binDir, netnsPath(node)),
    kubelet: [
      'nsenter',
      `--net=${netnsPath(node)}`,
      `--mount=${c.nsPin}`,
      '--',
      join(binDir, 'kubelet'),
      `--config=${p.kubeletConfig}`,
      `--kubeconfig=${p.kubeconfig}`,
      `--root-dir=${p.kubeletRoot}`,
      `--cert-dir=${p.pki}`,
      `--hostname-override=${node.name}`,
      `--node-ip=${node.ip}`,
      `--node-labels=${REAL_NODE_LABEL}=real`,
    ],
    'kube-proxy': [
      'nsenter',
      `--net=${netnsPath(node)}`,
      '--',
      join(binDir, 'kube-proxy'),
      `--config=${p.kubeProxyConfig}`,
    ],
  };
}

/** The URL a node part answers on when ready (kubelet and kube-proxy health on the node address). */
export function nodeHealthURL(node: RealNode, part: Exclude<NodePart, 'containerd'>): string {
  return part === 'kubelet' ? `http://${node.ip}:10248/healthz` : `http://${node.ip}:10256/healthz`;
}

/** Reads a PEM pair written by the cluster's PKI. */
export function readPair(pkiDir: string, name: string): KeyPair {
  return {
    certPem: readFileSync(join(pkiDir, `${name}.crt`), 'utf8'),
    keyPem: readFileSync(join(pkiDir, `${name}.key`), 'utf8'),
  };
}

/**
 * The node's cgroup root in every cgroup v1 hierarchy, which the kubelet requires to exist (its pods go under it);
 * cpuset children start with no CPUs or memory nodes, so they get the parent's.
 */
export function ensureCgroupRoot(node: RealNode): void {
  const root = '/sys/fs/cgroup';
  for (const hierarchy of readdirSync(root)) {
    const parent = join(root, hierarchy);
    if (!statSync(parent).isDirectory() || lstatSync(parent).isSymbolicLink()) continue;
    if (!existsSync(join(parent, 'cgroup.procs'))) continue;
    const dir = join(parent, `spillway-${node.name}`);
    mkdirSync(dir, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(dir, file)) && readFileSync(join(dir, file), 'utf8').trim() === '')
        writeFileSync(join(dir, file), readFileSync(join(parent, file), 'utf8'));
    }
  }
}
