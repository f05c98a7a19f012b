/**
 * Networking of local sandboxes (docs/architecture.md#networking-of-the-local-provider): the guard first, then the bridge `spillway0` holding the
 * node CIDR's first address, one veth pair per sandbox (host end on the bridge, `eth0` in the sandbox's
 * network namespace) and an IP per sandbox from the node CIDR, leased in a file that survives an operator
 * restart. The peer end lives in the sandbox's namespace, so the pair disappears with the sandbox.
 *
 * Safety: {@link LocalNetwork.start} installs the guard (its own nftables table and blackhole routes for the
 * pod and service CIDRs) and refuses to touch any address unless the guard is verifiably in place.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ProcessRef } from './runtime.ts';

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
  /** Directory of the IP lease files. */
  leaseDir: string;
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
    // Sandboxes talk to each other and to the host only: the bridge never forwards to or from elsewhere.
    `    iifname "${bridge}" oifname != "${bridge}" counter drop`,
    `    oifname "${bridge}" iifname != "${bridge}" counter drop`,
    `    ip daddr { ${set} } oifname != "${bridge}" counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** The veth's host-side name for a sandbox: `sw` + 12 hex digits of the UID (interface names max 15). */
export function vethName(uid: string): string {
  return `sw${uid.replaceAll('-', '').slice(0, 12)}`;
}

/** The bridge, the guard, the leases and the veths of one node's sandboxes. */
export class LocalNetwork {
  readonly bridge: string;
  /** The bridge's address: the sandboxes' default gateway, where host services (DNS) listen. */
  readonly gateway: string;
  readonly prefixLength: number;
  readonly #options: LocalNetworkOptions;
  readonly #first: number;
  readonly #last: number;
  #started = false;

  constructor(options: LocalNetworkOptions) {
    this.#options = options;
    this.bridge = options.bridge ?? 'spillway0';
    const { base, bits } = parseCIDR(options.nodeCIDR);
    this.prefixLength = bits;
    this.gateway = intToIp(base + 1);
    this.#first = base + 2;
    this.#last = base + 2 ** (32 - bits) - 2;
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
    mkdirSync(this.#options.leaseDir, { recursive: true });
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

  /** The lease of each IP: IP → pod UID. */
  leases(): Map<string, string> {
    const out = new Map<string, string>();
    let names: string[];
    try {
      names = readdirSync(this.#options.leaseDir);
    } catch {
      return out;
    }
    for (const ip of names) {
      try {
        out.set(ip, readFileSync(join(this.#options.leaseDir, ip), 'utf8').trim());
      } catch {
        /* released meanwhile */
      }
    }
    return out;
  }

  /** Leases an IP for `uid` (the same one again when it already has one). */
  lease(uid: string): string {
    if (!this.#started) throw new Error('local network not started: the guard must be installed first');
    for (const [ip, owner] of this.leases()) if (owner === uid) return ip;
    for (let n = this.#first; n <= this.#last; n++) {
      const ip = intToIp(n);
      try {
        const fd = openSync(join(this.#options.leaseDir, ip), 'wx');
        writeFileSync(fd, uid);
        closeSync(fd);
        return ip;
      } catch {
        /* taken: try the next */
      }
    }
    throw new Error(`no free address left in ${this.#options.nodeCIDR}`);
  }

  /**
   * Gives the sandbox whose PID 1 is `init` an `eth0` with `ip` on the bridge and a default route. `step` is
   * told after each step (tests crash the operator there).
   */
  async attach(
    uid: string,
    init: ProcessRef,
    ip: string,
    step: (name: AttachStep) => void = () => undefined,
  ): Promise<void> {
    if (!this.#started) throw new Error('local network not started: the guard must be installed first');
    const veth = vethName(uid);
    await run('ip', ['link', 'del', veth]).catch(() => undefined);
    await run('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(init.pid)]);
    await run('ip', ['link', 'set', veth, 'master', this.bridge, 'up']);
    step('veth');
    const inside = (...args: string[]) => run('nsenter', ['-t', String(init.pid), '-n', 'ip', ...args]);
    await inside('link', 'set', 'lo', 'up');
    await inside('addr', 'add', `${ip}/${this.prefixLength}`, 'dev', 'eth0');
    step('address');
    await inside('link', 'set', 'eth0', 'up');
    step('link-up');
    await inside('route', 'add', 'default', 'via', this.gateway);
  }

  /**
   * What is wrong with an attached sandbox's network, as {@link attach} left it (empty when nothing): the
   * veth on the bridge and up, `eth0` up with `ip`, the default route and the route to the service CIDR
   * through the gateway.
   */
  async verify(uid: string, init: ProcessRef, ip: string): Promise<string[]> {
    const json = async (argv: string[]): Promise<unknown[]> => {
      try {
        return JSON.parse((await run(argv[0]!, argv.slice(1))).stdout || '[]') as unknown[];
      } catch {
        return []; // no such device, no route
      }
    };
    const inside = ['nsenter', '-t', String(init.pid), '-n', 'ip', '-j'];
    const serviceIP = intToIp(parseCIDR(this.#options.serviceCIDR).base + 1);
    const [veth, eth0, defaults, service] = await Promise.all([
      json(['ip', '-j', 'link', 'show', 'dev', vethName(uid)]),
      json([...inside, 'addr', 'show', 'dev', 'eth0']),
      json([...inside, 'route', 'show', 'default']),
      json([...inside, 'route', 'get', serviceIP]),
    ]);
    return networkProblems(
      {
        veth: veth as IpLink[],
        eth0: eth0 as IpLink[],
        defaults: defaults as IpRoute[],
        service: service as IpRoute[],
      },
      {
        veth: vethName(uid),
        bridge: this.bridge,
        ip,
        prefixLength: this.prefixLength,
        gateway: this.gateway,
        serviceIP,
      },
    );
  }

  /** Removes the sandbox's veth (if its namespace did not take it along) and its lease. */
  async detach(uid: string): Promise<void> {
    await run('ip', ['link', 'del', vethName(uid)]).catch(() => undefined);
    for (const [ip, owner] of this.leases())
      if (owner === uid) rmSync(join(this.#options.leaseDir, ip), { force: true });
  }

  /** Removes leases and veths of sandboxes that no longer exist (after a crash); returns what went. */
  async collect(liveUids: Set<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const [ip, owner] of this.leases()) {
      if (liveUids.has(owner)) continue;
      rmSync(join(this.#options.leaseDir, ip), { force: true });
      removed.push(`lease ${ip}`);
    }
    const live = new Set([...liveUids].map(vethName));
    const { stdout } = await run('ip', ['-o', 'link', 'show', 'master', this.bridge]).catch(() => ({
      stdout: '',
    }));
    for (const m of stdout.matchAll(/^\d+: (sw[0-9a-f]{12})[@:]/gm)) {
      if (live.has(m[1]!)) continue;
      await run('ip', ['link', 'del', m[1]!]).catch(() => undefined);
      removed.push(`veth ${m[1]}`);
    }
    return removed;
  }
}

/** The steps of {@link LocalNetwork.attach} (the last one completes it). */
export type AttachStep = 'veth' | 'address' | 'link-up';

/** A link as `ip -j addr|link show` prints it (the fields read here). */
export interface IpLink {
  ifname: string;
  flags?: string[];
  master?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

/** A route as `ip -j route show|get` prints it (the fields read here). */
export interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
}

/** What is wrong with a sandbox's network given what `ip` shows of it (empty when all is as attached). */
export function networkProblems(
  seen: { veth: IpLink[]; eth0: IpLink[]; defaults: IpRoute[]; service: IpRoute[] },
  want: {
    veth: string;
    bridge: string;
    ip: string;
    prefixLength: number;
    gateway: string;
    serviceIP: string;
  },
): string[] {
  const problems: string[] = [];
  const [veth] = seen.veth;
  if (!veth) problems.push(`veth ${want.veth} is missing`);
  else if (veth.master !== want.bridge) problems.push(`veth ${want.veth} is not on ${want.bridge}`);
  else if (!veth.flags?.includes('UP')) problems.push(`veth ${want.veth} is down`);
  const [eth0] = seen.eth0;
  if (!eth0) problems.push('eth0 is missing');
  else {
    if (!eth0.flags?.includes('UP')) problems.push('eth0 is down');
    const has = eth0.addr_info?.some((a) => a.local === want.ip && a.prefixlen === want.prefixLength);
    if (!has) problems.push(`eth0 lacks ${want.ip}/${want.prefixLength}`);
  }
  const via = (r: IpRoute) => r.gateway === want.gateway && r.dev === 'eth0';
  if (!seen.defaults.some(via)) problems.push(`no default route via ${want.gateway}`);
  if (!seen.service.some(via))
    problems.push(`no route to the service CIDR (${want.serviceIP}) via ${want.gateway}`);
  return problems;
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
