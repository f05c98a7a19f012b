/**
 * Configuration of the `eci` provider, validated with zod so that a wrong value stops the operator at start-up
 * with a message naming the field (`eci.vSwitchIds: ...`), never at the first pod. Credentials are part of it
 * but are never logged or echoed in an error: zod's messages name the field, not its value.
 */
import { z } from 'zod';

const rateLimit = z.object({
  /** Sustained calls per second. */
  qps: z.number().positive(),
  /** Calls allowed at once after a quiet period. */
  burst: z.number().int().positive(),
});

/** A rate limit of one ECI API action. */
export type RateLimit = z.infer<typeof rateLimit>;

/**
 * Client-side limits per action, below ECI's default API quotas so that a burst never earns a throttling storm.
 * Create/delete: 20/s with a burst of 100 (issue 7); describes are cheaper but polled, logs/exec are per user.
 */
export const DEFAULT_RATE_LIMITS: Readonly<Record<string, RateLimit>> = {
  CreateContainerGroup: { qps: 20, burst: 100 },
  DeleteContainerGroup: { qps: 20, burst: 100 },
  DescribeContainerGroups: { qps: 20, burst: 40 },
  DescribeContainerGroupStatus: { qps: 10, burst: 20 },
  DescribeContainerGroupEvents: { qps: 10, burst: 20 },
  UpdateContainerGroup: { qps: 10, burst: 20 },
  DescribeContainerLog: { qps: 10, burst: 20 },
  ExecContainerCommand: { qps: 10, burst: 20 },
  DescribeMultiContainerGroupMetric: { qps: 5, burst: 10 },
  DescribeRegions: { qps: 5, burst: 5 },
};

const credentials = z.discriminatedUnion('type', [
  /** An AccessKey pair, e.g. from a Secret's values (never from the operator's own env in production). */
  z.object({
    type: z.literal('access_key'),
    accessKeyId: z.string().min(1),
    accessKeySecret: z.string().min(1),
    securityToken: z.string().min(1).optional(),
  }),
  /** RRSA: a service-account token file exchanged for STS credentials of a RAM role (recommended on ACK). */
  z.object({
    type: z.literal('oidc_role_arn'),
    roleArn: z.string().startsWith('acs:ram::'),
    oidcProviderArn: z.string().startsWith('acs:ram::'),
    oidcTokenFilePath: z.string().min(1),
    roleSessionName: z.string().min(2).max(64).default('spillway'),
    stsEndpoint: z.string().optional(),
  }),
  /** The RAM role of the ECS instance the operator runs on (instance metadata service). */
  z.object({
    type: z.literal('ecs_ram_role'),
    roleName: z.string().min(1).optional(),
  }),
]);

/** How the provider authenticates; see docs/eci.md for RRSA. */
export type EciCredentials = z.infer<typeof credentials>;

/** What an ECI virtual node advertises unless configured (docs/eci.md). */
export const ECI_DEFAULT_CAPACITY = {
  cpu: '10000',
  memory: '40Ti',
  pods: '5000',
  ephemeralStorage: '150000Gi',
};

const spec = z.object({ cpu: z.number().positive(), memory: z.number().positive() });

/** The schema of {@link EciConfig}. */
export const EciConfigSchema = z
  .object({
    /** The region, e.g. `cn-hangzhou`. Required: the provider never guesses where to create instances. */
    regionId: z.string().regex(/^[a-z]{2,}-[a-z0-9-]+$/, 'must be a region ID such as cn-hangzhou'),
    /** API endpoint `host[:port]`; default the SDK's endpoint for the region. Tests point it at the fake. */
    endpoint: z
      .string()
      .regex(/^[A-Za-z0-9.-]+(:\d+)?$/, 'must be host or host:port, without a scheme')
      .optional(),
    protocol: z.enum(['https', 'http']).default('https'),
    /**
     * Which regional endpoint the default `endpoint` is: `public` (`eci.<region>.aliyuncs.com`) or `vpc`
     * (`eci-vpc.<region>.aliyuncs.com`, for clusters without Internet egress).
     */
    network: z.enum(['public', 'vpc']).default('public'),
    credentials,
    /** Tags every instance, so that list() and orphan collection see only this cluster's instances. */
    clusterId: z.string().min(1).max(128),
    /** The virtual node's name; tags every instance too (one node's GC never touches another's). */
    nodeName: z.string().min(1).max(128),
    /** vSwitches in one or more zones (at most 10); ECI picks by `scheduleStrategy`. */
    vSwitchIds: z
      .array(z.string().regex(/^vsw-[a-z0-9]+$/, 'must be a vSwitch ID (vsw-...)'))
      .min(1)
      .max(10),
    scheduleStrategy: z.enum(['VSwitchOrdered', 'VSwitchRandom']).default('VSwitchOrdered'),
    securityGroupId: z.string().regex(/^sg-[a-z0-9]+$/, 'must be a security group ID (sg-...)'),
    resourceGroupId: z.string().min(1).optional(),
    /** Zones of the vSwitches, for the node's topology labels (ECI's API would need a VPC call to learn them). */
    zoneIds: z.array(z.string()).default([]),
    /** What `spillway.dev/capacity: spot` means when the pod has no `k8s.aliyun.com/eci-spot-*` annotations. */
    spot: z
      .object({
        strategy: z.enum(['SpotAsPriceGo', 'SpotWithPriceLimit']).default('SpotAsPriceGo'),
        /** USD per hour; required with SpotWithPriceLimit. */
        priceLimit: z.number().positive().optional(),
        /** Protected hours before ECI may reclaim (0 or 1; unset: ECI's default of 1). */
        durationHours: z.number().int().min(0).max(1).optional(),
      })
      .refine((s) => s.strategy !== 'SpotWithPriceLimit' || s.priceLimit !== undefined, {
        message: 'priceLimit is required with strategy SpotWithPriceLimit',
        path: ['priceLimit'],
      })
      .default({ strategy: 'SpotAsPriceGo' }),
    /** The cluster DNS Service's ClusterIP, for pods with dnsPolicy ClusterFirst. */
    clusterDNS: z.ipv4().optional(),
    clusterDomain: z.string().default('cluster.local'),
    /**
     * The kube-proxy sidecar that makes ClusterIPs reachable from an instance (ECI's API has no such option).
     * Its identity may only read Services, EndpointSlices and Nodes: either a ServiceAccount the virtual node
     * mints short-lived tokens for (the chart's default, rotated in place), or a fixed kubeconfig.
     */
    kubeProxy: z
      .object({
        enabled: z.boolean().default(false),
        image: z.string().min(1).default('registry.k8s.io/kube-proxy:v1.36.3'),
        /** The ServiceAccount whose tokens (bound to the virtual Node) the sidecar uses. */
        serviceAccount: z.object({ namespace: z.string().min(1), name: z.string().min(1) }).optional(),
        /** Lifetime of each minted token; it is renewed at 80 % and pushed to running instances. */
        tokenExpirationSeconds: z.number().int().min(600).default(86_400),
        /** The apiserver URL instances reach over the VPC; default: the addresses behind default/kubernetes. */
        apiServer: z.url({ protocol: /^https$/ }).optional(),
        /** A fixed kubeconfig (from a Secret) instead of minted tokens; it is never rotated. */
        kubeconfig: z.string().min(1).optional(),
        /** The pod CIDR of the cluster, for kube-proxy's masquerading decisions. */
        clusterCIDR: z.string().optional(),
      })
      .refine((k) => !k.enabled || (k.serviceAccount === undefined) !== (k.kubeconfig === undefined), {
        message:
          'the kube-proxy sidecar needs exactly one of serviceAccount (minted, rotated tokens) or kubeconfig',
        path: ['serviceAccount'],
      })
      .default({
        enabled: false,
        image: 'registry.k8s.io/kube-proxy:v1.36.3',
        tokenExpirationSeconds: 86_400,
      }),
    /** The spec of a pod that states no resources. */
    defaultSpec: spec.default({ cpu: 2, memory: 4 }),
    /** Extra tags on every instance (cost allocation). At most 15: spillway uses 5 of ECI's 20. */
    tags: z
      .record(z.string().min(1).max(128), z.string().max(128))
      .refine((t) => Object.keys(t).length <= 15, 'at most 15 tags')
      .default({}),
    /** Client-side limits per API action, merged over {@link DEFAULT_RATE_LIMITS}. */
    rateLimits: z.record(z.string(), rateLimit).default({}),
    /** Retries on throttling, 5xx and network errors, with exponential back-off and jitter. */
    retry: z
      .object({
        maxAttempts: z.number().int().min(1).max(20).default(5),
        baseDelayMs: z.number().int().min(1).default(200),
        maxDelayMs: z.number().int().min(1).default(10_000),
      })
      .default({ maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 10_000 }),
    /**
     * How often the status poller asks what changed (DescribeContainerGroupStatus and
     * DescribeContainerGroupEvents with SinceSecond, then the changed groups by id).
     */
    pollIntervalMs: z.number().int().min(10).default(1000),
    /** How often it lists every instance of the node instead (paged DescribeContainerGroups), to miss nothing. */
    resyncIntervalMs: z.number().int().min(10).default(60_000),
    /** How often a followed log is polled. */
    logPollIntervalMs: z.number().int().min(10).default(1000),
    readTimeoutMs: z.number().int().positive().default(10_000),
    connectTimeoutMs: z.number().int().positive().default(5_000),
    /**
     * What the virtual node advertises. ECI's real limit is the account's quota in the region, which its API
     * does not report (the Quota Center is another service and another permission): set these to your quota.
     * The defaults fit ECI's default quotas; ephemeral storage is 5000 pods with the 30 GiB each instance gets free.
     */
    capacity: z
      .object({
        cpu: z.string().default(ECI_DEFAULT_CAPACITY.cpu),
        memory: z.string().default(ECI_DEFAULT_CAPACITY.memory),
        pods: z.string().default(ECI_DEFAULT_CAPACITY.pods),
        ephemeralStorage: z.string().default(ECI_DEFAULT_CAPACITY.ephemeralStorage),
      })
      .default(() => ({ ...ECI_DEFAULT_CAPACITY })),
  })
  .refine((c) => c.protocol === 'https' || c.endpoint !== undefined, {
    message: 'plain http is only allowed with an explicit endpoint (a local fake)',
    path: ['protocol'],
  });

/** Validated provider configuration, defaults applied. */
export type EciConfig = z.infer<typeof EciConfigSchema>;

/** The configuration as written (defaults optional). */
export type EciConfigInput = z.input<typeof EciConfigSchema>;

/**
 * Validates `input`; throws one Error listing every problem as `eci.<field>: <what is wrong>`. The input's values
 * are never part of the message (they may be credentials).
 */
export function parseEciConfig(input: unknown): EciConfig {
  const result = EciConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map(
    (i) => `eci.${i.path.map(String).join('.') || '(root)'}: ${issueMessage(i.code, i.path, i.message)}`,
  );
  throw new Error(`invalid ECI provider configuration:\n  ${lines.join('\n  ')}`);
}

/** Where credentials may come from, for the message about missing ones. */
const CREDENTIAL_SOURCES =
  'set credentials in the file, or RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) or ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET in the environment';

/**
 * One issue's message: zod says "expected string, received undefined" for a field that is simply absent, which
 * reads like a type error; a user writing the file from scratch wants "missing" and, for credentials, where from.
 */
export function issueMessage(code: string, path: readonly PropertyKey[], message: string): string {
  if (code !== 'invalid_type' || !message.endsWith('received undefined')) return message;
  return path.length === 1 && path[0] === 'credentials'
    ? `missing: ${CREDENTIAL_SOURCES}`
    : 'missing (required)';
}

/** The API endpoint: the configured one, else the region's public or VPC endpoint (the SDK has no default). */
export function eciEndpoint(config: Pick<EciConfig, 'endpoint' | 'network' | 'regionId'>): string {
  return config.endpoint ?? `${config.network === 'vpc' ? 'eci-vpc' : 'eci'}.${config.regionId}.aliyuncs.com`;
}

/** The effective limit of `action`: configured, else default, else a conservative 5/s. */
export function rateLimitFor(config: EciConfig, action: string): RateLimit {
  return config.rateLimits[action] ?? DEFAULT_RATE_LIMITS[action] ?? { qps: 5, burst: 5 };
}
