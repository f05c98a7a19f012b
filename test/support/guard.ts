/**
 * The network guard (docs/architecture.md#network-guard): before any pod or service address is used, the host gets blackhole routes
 * for the cluster's CIDRs and an nftables table that drops any packet to them leaving through an interface
 * other than the project's own bridges (spillway*). Nothing this project runs may send traffic beyond loopback and the network
 * namespaces its tests create; the guard makes a mistake fail closed instead of leaking onto a real network.
 */
import { execFileSync } from 'node:child_process';

/**
 * Every link this project makes is named spillway* (the sandbox bridge, the real nodes' bridge `spillway1`):
 * traffic to pod/service CIDRs may only leave through one of them, and they forward only among themselves.
 */
const ourLinks = 'spillway*';
const table = 'spillway_guard';

function run(cmd: string, args: string[], input?: string): void {
  execFileSync(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], input });
}

/**
 * Installs (idempotently) blackhole routes and the nftables drop for `cidrs`. Needs root; without it the
 * guard cannot be installed and this says so (the control plane alone sends nothing to these addresses).
 */
export function installNetworkGuard(cidrs: string[], log: (line: string) => void = () => {}): void {
  if (process.getuid?.() !== 0) {
    log('network guard: not root, guard not installed (nothing may use pod or service addresses)');
    return;
  }
  for (const cidr of cidrs) run('ip', ['route', 'replace', 'blackhole', cidr]);
  const set = cidrs.join(', ');
  const rules = [
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  chain output {`,
    `    type filter hook output priority -10; policy accept;`,
    `    ip daddr { ${set} } oifname != { "lo", "${ourLinks}" } counter drop`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority -10; policy accept;`,
    `    ip daddr { ${set} } oifname != "${ourLinks}" counter drop`,
    `    iifname "${ourLinks}" oifname != "${ourLinks}" counter drop`,
    `  }`,
    `}`,
  ].join('\n');
  run('nft', ['-f', '-'], rules);
  log(`network guard: blackhole routes and nftables drop installed for ${set}`);
}

/** True when the guard's nftables table is present. */
export function networkGuardInstalled(): boolean {
  try {
    run('nft', ['list', 'table', 'inet', table]);
    return true;
  } catch {
    return false;
  }
}
