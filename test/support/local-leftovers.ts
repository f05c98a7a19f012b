/**
 * What a local-provider operator leaves behind when it dies without its shutdown (kill -9, a crash, a closed
 * terminal): sandboxes still running on this host, their veths and IP leases, and the CoreDNS it ran for them. `make cluster-down` ends them for
 * the virtual nodes of the cluster it stops, and only those (another cluster's sandboxes on the same host are not
 * its business), found with the local provider's own discovery (/proc, by state directory).
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalNetwork } from '../../operator/providers/local/network.ts';
import {
  findSandboxProcesses,
  isAlive,
  refOf,
  signalProcess,
  type FoundProcess,
  type ProcessRef,
} from '../../operator/providers/local/runtime.ts';

/** Where `spillway run --provider local` keeps node `name`'s state (operator/providers/local/provider.ts). */
export const localStateDir = (name: string, root = '/run/spillway') => join(root, name);

/** The local virtual nodes registered in the cluster: their names and pod CIDRs. */
export async function localVirtualNodes(kc: KubeConfig): Promise<{ name: string; podCIDR?: string }[]> {
  const nodes = await kc.makeApiClient(CoreV1Api).listNode({ labelSelector: 'spillway.dev/provider=local' });
  return nodes.items.map((n) => ({
    name: n.metadata!.name!,
    ...(n.spec?.podCIDR ? { podCIDR: n.spec.podCIDR } : {}),
  }));
}

/**
 * The cluster DNS server (CoreDNS) a local operator started for node `stateDir`'s sandboxes: it is the
 * operator's child, not detached, so a `kill -9` of the operator alone leaves it running. Found in /proc by its
 * `-conf` under the state directory.
 */
export function findClusterDns(stateDir: string): ProcessRef[] {
  const prefix = `${stateDir}/`;
  const found: ProcessRef[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return found;
  }
  for (const p of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('-conf');
    if (i < 0 || !argv[i + 1]?.startsWith(prefix)) continue;
    const ref = refOf(Number(p));
    if (ref) found.push(ref);
  }
  return found;
}

/** What {@link stopLocalSandboxes} ended, per node. */
export interface StoppedSandboxes {
  node: string;
  sandboxes: string[];
  /** CoreDNS processes stopped. */
  dns: number;
  /** Processes that outlived SIGKILL (not root: another user's sandboxes cannot be signalled). */
  survivors: FoundProcess[];
}

/**
 * SIGKILLs every sandbox process of these nodes (PID 1 of a sandbox takes everything in it along), waits for them
 * to go, then removes each sandbox's veth and IP leases. Idempotent; a node without sandboxes costs a /proc scan.
 */
export async function stopLocalSandboxes(
  nodes: { name: string; podCIDR?: string }[],
  root = '/run/spillway',
): Promise<StoppedSandboxes[]> {
  const result: StoppedSandboxes[] = [];
  for (const node of nodes) {
    const stateDir = localStateDir(node.name, root);
    const found = findSandboxProcesses(join(stateDir, 'sandboxes'));
    const dns = findClusterDns(stateDir);
    if (found.length === 0 && dns.length === 0) continue;
    for (const p of found) signalProcess(p.ref, 'SIGKILL');
    for (const ref of dns) signalProcess(ref, 'SIGTERM');
    for (let i = 0; i < 100 && [...found.map((p) => p.ref), ...dns].some(isAlive); i++) await sleep(50);
    const uids = [...new Set(found.map((p) => p.uid))];
    const network = new LocalNetwork({
      nodeCIDR: node.podCIDR ?? '10.250.0.0/24',
      podCIDR: '10.250.0.0/16',
      serviceCIDR: '10.96.0.0/16',
      leaseDir: join(stateDir, 'leases'),
    });
    // Only these sandboxes' veths and leases: the bridge is shared with every other local node on the host.
    for (const uid of uids) await network.detach(uid);
    result.push({
      node: node.name,
      sandboxes: uids,
      dns: dns.length,
      survivors: [...found, ...dns.map((ref) => ({ uid: 'coredns', ref }))].filter((p) => isAlive(p.ref)),
    });
  }
  return result;
}
