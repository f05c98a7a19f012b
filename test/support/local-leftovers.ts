/**
 * What a local-provider operator leaves behind when it dies without its shutdown (kill -9, a crash, a closed
 * terminal) outside containerd: the CoreDNS it ran for its sandboxes (its child, not detached). The sandboxes
 * themselves are containerd's pods, which `make cluster-down` removes through CRI with the cluster's containerd
 * (LocalCluster.down). Only the CoreDNS of the cluster's own local virtual nodes is stopped: another cluster's on
 * the same host is not its business.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where `spillway run --provider local` keeps node `name`'s state (operator/cli-flags.ts localStateDir). */
export const localStateDir = (name: string, root = '/run/spillway') => join(root, name);

/** The local virtual nodes registered in the cluster. */
export async function localVirtualNodes(kc: KubeConfig): Promise<string[]> {
  const nodes = await kc.makeApiClient(CoreV1Api).listNode({ labelSelector: 'spillway.dev/provider=local' });
  return nodes.items.map((n) => n.metadata!.name!);
}

/** The pids of CoreDNS servers whose `-conf` lies under `stateDir` (found in /proc by command line). */
export function findClusterDns(stateDir: string): number[] {
  const prefix = `${stateDir}/`;
  const found: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    const i = argv.indexOf('-conf');
    if (i >= 0 && argv[i + 1]?.startsWith(prefix)) found.push(Number(p));
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops (SIGTERM, then SIGKILL after 5 s) the CoreDNS servers these nodes' operators left; returns who had one. */
export async function stopLeftoverClusterDns(nodes: string[], root = '/run/spillway'): Promise<string[]> {
  const stopped: string[] = [];
  for (const node of nodes) {
    const pids = findClusterDns(localStateDir(node, root));
    if (pids.length === 0) continue;
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && pids.some(alive); i++) await sleep(50);
    for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
    stopped.push(node);
  }
  return stopped;
}
