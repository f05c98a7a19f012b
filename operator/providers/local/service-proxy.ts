/**
 * The service proxy of local sandboxes: kube-proxy's job, for traffic arriving from the bridge only. It keeps
 * an nftables table (`ip spillway_proxy`) in sync with Services and EndpointSlices: each ClusterIP port (TCP
 * and UDP, several and named ports) is DNATed to one of its ready endpoints, chosen at random per connection;
 * traffic from a sandbox to a sandbox through a ClusterIP is masqueraded so that replies come back through the
 * host and are un-NATed. Headless Services get no rules (they resolve through DNS only).
 *
 * The ruleset is a pure function of the objects ({@link proxyRules}, {@link proxyRuleset}); the table is
 * replaced atomically in one `nft -f` transaction on each (debounced) change.
 */
import type { KubeConfig, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { DiscoveryV1Api, CoreV1Api } from '@kubernetes/client-node';
import { informerFor, type SupervisedInformer } from '../../shared/informer.ts';
import { componentLogger, type Logger } from '../../shared/log.ts';
import { nft } from './network.ts';

/** The proxy's nftables table (ip family). */
export const PROXY_TABLE = 'spillway_proxy';

/** One ClusterIP port and where it leads. */
export interface ProxyRule {
  /** `namespace/name:port-name`, for comments and logs. */
  service: string;
  clusterIP: string;
  protocol: 'tcp' | 'udp';
  port: number;
  endpoints: { ip: string; port: number }[];
}

/** The ClusterIP rules for `services` given their `slices`; only ready endpoints, sorted for stable output. */
export function proxyRules(services: V1Service[], slices: V1EndpointSlice[]): ProxyRule[] {
  const rules: ProxyRule[] = [];
  for (const svc of services) {
    const ns = svc.metadata?.namespace ?? 'default';
    const name = svc.metadata?.name ?? '';
    const ips = (svc.spec?.clusterIPs ?? [svc.spec?.clusterIP]).filter(
      (ip): ip is string => !!ip && ip !== 'None' && !ip.includes(':'),
    );
    if (ips.length === 0 || svc.spec?.type === 'ExternalName') continue;
    const own = slices.filter(
      (s) =>
        s.metadata?.namespace === ns &&
        s.metadata?.labels?.['kubernetes.io/service-name'] === name &&
        s.addressType === 'IPv4',
    );
    for (const port of svc.spec?.ports ?? []) {
      const protocol = (port.protocol ?? 'TCP').toLowerCase();
      if (protocol !== 'tcp' && protocol !== 'udp') continue;
      const endpoints = new Map<string, { ip: string; port: number }>();
      for (const slice of own) {
        const sp = slice.ports?.find(
          (p) => (p.name ?? '') === (port.name ?? '') && (p.protocol ?? 'TCP').toLowerCase() === protocol,
        );
        if (!sp?.port) continue;
        for (const ep of slice.endpoints ?? []) {
          if (ep.conditions?.ready === false) continue;
          for (const ip of ep.addresses) endpoints.set(`${ip}:${sp.port}`, { ip, port: sp.port });
        }
      }
      for (const clusterIP of ips) {
        rules.push({
          service: `${ns}/${name}:${port.name ?? port.port}`,
          clusterIP,
          protocol,
          port: port.port,
          endpoints: [...endpoints.values()].sort((a, b) =>
            `${a.ip}:${a.port}`.localeCompare(`${b.ip}:${b.port}`),
          ),
        });
      }
    }
  }
  return rules.sort((a, b) =>
    `${a.clusterIP}:${a.port}/${a.protocol}`.localeCompare(`${b.clusterIP}:${b.port}/${b.protocol}`),
  );
}

/** The whole `ip spillway_proxy` table for `rules`, as one atomic nft transaction (replaces the table). */
export function proxyRuleset(rules: ProxyRule[], bridge: string, podCIDR: string): string {
  const lines = [
    `table ip ${PROXY_TABLE} {}`,
    `delete table ip ${PROXY_TABLE}`,
    `table ip ${PROXY_TABLE} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname "${bridge}" jump services`,
    '  }',
    '  chain services {',
  ];
  const chains: string[] = [];
  rules.forEach((r, i) => {
    if (r.endpoints.length === 0) return;
    const comment = r.service.replaceAll('"', '');
    lines.push(
      `    ip daddr ${r.clusterIP} ${r.protocol} dport ${r.port} jump svc-${i} comment "${comment}"`,
    );
    const targets = r.endpoints.map((e, n) => `${n} : ${e.ip} . ${e.port}`).join(', ');
    chains.push(
      `  chain svc-${i} {`,
      `    meta l4proto ${r.protocol} dnat ip to numgen random mod ${r.endpoints.length} map { ${targets} }`,
      '  }',
    );
  });
  lines.push('  }', ...chains);
  lines.push(
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${podCIDR} ip daddr ${podCIDR} ct status dnat masquerade`,
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

/** Options of a {@link ServiceProxy}. */
export interface ServiceProxyOptions {
  kc: KubeConfig;
  bridge?: string;
  /** The local sandboxes' pod CIDR (masquerade scope), e.g. `10.250.0.0/16`. */
  podCIDR?: string;
  /** Coalesces bursts of changes into one ruleset write. Default 50 ms. */
  debounceMs?: number;
  logger?: Logger;
}

/** Keeps the nftables DNAT rules in sync with the cluster's Services and EndpointSlices. */
export class ServiceProxy {
  readonly #options: Required<Omit<ServiceProxyOptions, 'logger'>>;
  readonly #log: Logger;
  readonly #services: SupervisedInformer<V1Service>;
  readonly #slices: SupervisedInformer<V1EndpointSlice>;
  #timer: NodeJS.Timeout | undefined;
  #last = '';
  #syncing: Promise<void> = Promise.resolve();
  /** Ruleset writes so far (a test waits on it). */
  syncs = 0;

  constructor(options: ServiceProxyOptions) {
    this.#options = { bridge: 'spillway0', podCIDR: '10.250.0.0/16', debounceMs: 50, ...options };
    this.#log = options.logger ?? componentLogger('service-proxy');
    const core = options.kc.makeApiClient(CoreV1Api);
    const discovery = options.kc.makeApiClient(DiscoveryV1Api);
    this.#services = informerFor<V1Service>(options.kc, 'proxy-services', {
      path: '/api/v1/services',
      list: () => core.listServiceForAllNamespaces(),
    });
    this.#slices = informerFor<V1EndpointSlice>(options.kc, 'proxy-endpointslices', {
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      list: () => discovery.listEndpointSliceForAllNamespaces(),
    });
  }

  /** Starts watching; resolves after the first ruleset is in place. */
  async start(): Promise<void> {
    const schedule = () => this.#schedule();
    this.#services.onAdd(schedule);
    this.#services.onUpdate(schedule);
    this.#services.onDelete(schedule);
    this.#slices.onAdd(schedule);
    this.#slices.onUpdate(schedule);
    this.#slices.onDelete(schedule);
    this.#services.start();
    this.#slices.start();
    await Promise.all([this.#services.synced, this.#slices.synced]);
    await this.sync();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.sync().catch((err: unknown) => {
        this.#log.warn({ err: String(err) }, 'service proxy sync failed; retrying');
        setTimeout(() => this.#schedule(), 1000).unref();
      });
    }, this.#options.debounceMs);
  }

  /** Writes the ruleset for the current objects (skipped when unchanged). */
  async sync(): Promise<void> {
    const run = async () => {
      const ruleset = proxyRuleset(
        proxyRules(this.#services.list(), this.#slices.list()),
        this.#options.bridge,
        this.#options.podCIDR,
      );
      if (ruleset === this.#last) return;
      await nft(ruleset);
      this.#last = ruleset;
      this.syncs++;
    };
    this.#syncing = this.#syncing.then(run, run);
    return this.#syncing;
  }

  /** Stops watching and removes the proxy's table. */
  async stop(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    await Promise.all([this.#services.stop(), this.#slices.stop()]);
    await this.#syncing.catch(() => undefined);
    await nft(`table ip ${PROXY_TABLE} {}\ndelete table ip ${PROXY_TABLE}\n`);
  }
}
