/**
 * Networking of local pods (docs/architecture.md#networking-of-the-local-provider): the guard first, then the
 * bridge `spillway0` holding the node CIDR's first address. The pods' veths and addresses come from the CNI
 * plugins containerd runs (bridge + host-local on this bridge and CIDR, the bridge's address as gateway); this
 * module makes sure that nothing of it is used before the guard is verifiably in place.
 *
 * Safety: {@link LocalNetwork.start} installs the guard (its own nftables table and blackhole routes for the
 * pod and service CIDRs) and creates the bridge only once the guard is there; the provider runs no sandbox
 * before `start` has resolved.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The guard's nftables table (inet family); the cluster's own guard (test/support/guard.ts) is another. */
export const LOCAL_GUARD_TABLE = 'spillway_local_guard';

/** Where the sandboxes live on the network. */
export interface LocalNetworkOptions {
  /** Bridge name; default `spillway0`. */
  bridge?: string;
  /** This node's share of the pod CIDR, e.g. `10.250.0.0/24`; its first address goes on the bridge. */
  nodeCIDR: string;
  /** The whole pod CIDR of local sandboxes (guarded), e.g. `10.250.0.0/16`. */
  podCIDR: string;
  /** The cluster's service CIDR (guarded), e.g. `10.96.0.0/16`. */
  serviceCIDR: string;
}

/** Parses `a.b.c.d/n` to its network address as a number and its prefix length. */
export function parseCIDR(cidr: string): { base: number; bits: number } {
  const [ip, bits] = cidr.split('/');
  const n = Number(bits);
  if (!ip || !Number.isInteger(n) || n < 8 || n > 30)
    throw new Error(`not an IPv4 CIDR between /8 and /30: ${cidr}`);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return { base: (ipToInt(ip) & mask) >>> 0, bits: n };
}

/** `a.b.c.d` to a 32-bit number. */
export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** A 32-bit number to `a.b.c.d`. */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The links the sandbox bridge may forward to and from: the project's own, all named spillway*. */
export const PEER_LINKS = 'spillway*';

/** The nftables ruleset of the guard: nothing to the pod or service CIDRs leaves except through the bridge. */
export function guardRuleset(bridge: string, cidrs: string[]): string {
  const set = cidrs.join(', ');
  return [
    `table inet ${LOCAL_GUARD_TABLE} {}`,
    `delete table inet ${LOCAL_GUARD_TABLE}`,
    `table inet ${LOCAL_GUARD_TABLE} {`,
    '  chain output {',
    '    type filter hook output priority -10; policy accept;',
    `    ip daddr { ${set} } oifname != { "lo", "${bridge}" } counter drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -10; policy accept;',
    // Sandboxes talk to each other, to the host and to the project's other links only (spillway*, e.g. the local
    // cluster's real nodes on spillway1): the bridge never forwards to or from anywhere else.
    `    iifname "${bridge}" oifname != "${PEER_LINKS}" counter drop`,
    `    oifname "${bridge}" iifname != "${PEER_LINKS}" counter drop`,
    `    ip daddr { ${set} } oifname != "${bridge}" counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Whether `ip` lies inside `cidr`. */
export function inCIDR(ip: string, cidr: string): boolean {
  const { base, bits } = parseCIDR(cidr);
  const mask = (~0 << (32 - bits)) >>> 0;
  return (ipToInt(ip) & mask) >>> 0 === base;
}

/** The guard and the bridge of one node's pods. */
export class LocalNetwork {
  readonly bridge: string;
  /** The bridge's address: the sandboxes' default gateway, where host services (DNS) listen. */
  readonly gateway: string;
  readonly prefixLength: number;
  readonly #options: LocalNetworkOptions;
  #started = false;

  /** Whether the guard and the bridge are in place (start() resolved). */
  get started(): boolean {
    return this.#started;
  }

  constructor(options: LocalNetworkOptions) {
    this.#options = options;
    this.bridge = options.bridge ?? 'spillway0';
    const { base, bits } = parseCIDR(options.nodeCIDR);
    this.prefixLength = bits;
    this.gateway = intToIp(base + 1);
  }

  /** The whole pod CIDR of local sandboxes (guarded). */
  get podCIDR(): string {
    return this.#options.podCIDR;
  }

  /** This node's pod CIDR (the CNI configuration's subnet). */
  get nodeCIDR(): string {
    return this.#options.nodeCIDR;
  }

  /** Installs the guard, verifies it, then creates the bridge (idempotent). Needs root. */
  async start(): Promise<void> {
    if (process.getuid?.() !== 0) {
      throw new Error('the local provider needs root (network namespaces, bridge, nftables): run it as root');
    }
    const cidrs = [this.#options.podCIDR, this.#options.serviceCIDR];
    for (const cidr of cidrs) await run('ip', ['route', 'replace', 'blackhole', cidr]);
    await nft(guardRuleset(this.bridge, cidrs));
    await this.#requireGuard(cidrs);
    await run('ip', ['link', 'add', this.bridge, 'type', 'bridge']).catch((err: { stderr?: string }) => {
      if (!String(err.stderr).includes('File exists')) throw err;
    });
    await run('ip', ['addr', 'replace', `${this.gateway}/${this.prefixLength}`, 'dev', this.bridge]);
    await run('ip', ['link', 'set', this.bridge, 'up']);
    // Forward only what arrives on the bridge (ClusterIP DNAT to another sandbox); the host stays no router.
    writeFileSync(`/proc/sys/net/ipv4/conf/${this.bridge}/forwarding`, '1');
    this.#started = true;
  }

  async #requireGuard(cidrs: string[]): Promise<void> {
    const { stdout: table } = await run('nft', ['list', 'table', 'inet', LOCAL_GUARD_TABLE]);
    const { stdout: routes } = await run('ip', ['route', 'show', 'type', 'blackhole']);
    for (const cidr of cidrs) {
      if (!table.includes(cidr) || !routes.includes(cidr)) {
        throw new Error(`network guard for ${cidr} is not in place: refusing to start sandbox networking`);
      }
    }
  }
}

/** Applies an nftables ruleset atomically. */
export async function nft(ruleset: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (err, _out, stderr) =>
      err ? reject(new Error(`nft: ${stderr || err.message}`)) : resolve(),
    );
    child.stdin?.end(ruleset);
  });
}
