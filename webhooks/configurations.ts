/**
 * spillway's MutatingWebhookConfiguration and ValidatingWebhookConfiguration, with every setting chosen on
 * purpose. The principle for failure policies: fail closed where the object itself asked for spillway (or
 * where a sandbox would otherwise run something it cannot), fail open where spillway acts on objects that
 * did not ask, so that an outage of spillway never blocks workloads that do not use it.
 */
import type {
  AdmissionregistrationV1Api,
  AdmissionregistrationV1WebhookClientConfig,
  V1LabelSelector,
  V1LabelSelectorRequirement,
  V1MatchCondition,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import {
  BURST_LABEL,
  ECI_LABEL,
  NODE_TYPE_LABEL,
  POD_PLACEMENT_LABELS,
  VIRTUAL_NODE_LABEL,
} from '../api/labels.ts';
import { PROVIDER_TAINT_KEY } from '../api/taints.ts';
import { WEBHOOK_PATHS } from './handlers.ts';
import { DEV_OWNER_ANNOTATION } from './ownership.ts';
import { mergeBundles } from './tls.ts';

/** How the apiserver reaches the webhook server. */
export type WebhookClient =
  /** The chart: a Service in front of the operator's replicas (the certificate names `<svc>.<ns>.svc`). */
  | { service: { name: string; namespace: string; port?: number } }
  /** Dev mode (`make run`): the local process, e.g. `https://127.0.0.1:9443` (the certificate carries the IP). */
  | { url: string };

/** Options of the configuration builders. */
export interface WebhookConfigurationOptions {
  client: WebhookClient;
  /** The CA bundle (PEM) the apiserver trusts the server with; the TLS keeper keeps it current afterwards. */
  caBundlePem?: string;
  /** spillway's own namespace: never sent to its webhooks, so that spillway can always start itself. */
  ownNamespace: string;
  /** Further namespaces to leave alone (kube-system and kube-node-lease always are). */
  excludedNamespaces?: string[];
  /** Name of both configurations; default `spillway`. */
  name?: string;
  /** Per-call timeout; default 3 s. */
  timeoutSeconds?: number;
  /** Dev mode: the identity of the process the configurations point at (webhooks/ownership.ts). */
  owner?: string;
}

/** Name, label and (dev mode) owner of both configurations. */
function configurationMetadata(o: WebhookConfigurationOptions) {
  return {
    name: o.name ?? 'spillway',
    labels: { 'app.kubernetes.io/name': 'spillway' },
    ...(o.owner ? { annotations: { [DEV_OWNER_ANNOTATION]: o.owner } } : {}),
  };
}

/** The names of the configurations (for the TLS keeper's bundle targets). */
export function webhookConfigurationNames(name = 'spillway'): { mutating: string[]; validating: string[] } {
  return { mutating: [name], validating: [name] };
}

const q = (s: string) => `'${s}'`;
const list = (items: readonly string[]) => `[${items.map(q).join(', ')}]`;
const AFFINITY = 'object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution';

/** CEL: the pod carries one of `keys` as a label. */
function hasLabel(keys: readonly string[]): string {
  return `has(object.metadata.labels) && ${list(keys)}.exists(k, k in object.metadata.labels)`;
}

/** CEL: `field` is true on the pod spec. */
const specFlag = (field: string) => `(has(object.spec.${field}) && object.spec.${field})`;

/** CEL: a container group has a privileged container or a hostPort. */
function containersUnsupported(group: string): string {
  return (
    `(has(object.spec.${group}) && object.spec.${group}.exists(c, ` +
    '(has(c.securityContext) && has(c.securityContext.privileged) && c.securityContext.privileged) || ' +
    '(has(c.ports) && c.ports.exists(p, has(p.hostPort) && p.hostPort != 0))))'
  );
}

/** CEL: the pod is owned by a DaemonSet. */
export const IS_DAEMONSET_POD =
  "has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, r.kind == 'DaemonSet')";

/**
 * CEL mirror of `sandboxViolations` (api/sandbox-rules.ts): true when the pod uses anything a sandbox
 * cannot run. It may be broader than the function, never narrower (a pod it misses is never validated); a unit
 * test checks that every violation the function reports is named here.
 */
export const USES_UNSUPPORTED_FEATURE = [
  specFlag('hostNetwork'),
  specFlag('hostPID'),
  specFlag('hostIPC'),
  '(has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.hostPath)))',
  containersUnsupported('containers'),
  containersUnsupported('initContainers'),
  containersUnsupported('ephemeralContainers'),
  `(${IS_DAEMONSET_POD})`,
].join(' || ');

/**
 * CEL: the pod tolerates the provider taint every virtual node registers with (NoSchedule): without such a
 * toleration the scheduler places it on no virtual node, whatever its selector says. An empty key tolerates
 * every key; the operator and value are not looked at (broader, never narrower).
 */
export const TOLERATES_PROVIDER_TAINT =
  "(has(object.spec.tolerations) && object.spec.tolerations.exists(t, (!has(t.effect) || t.effect == '' || " +
  `t.effect == 'NoSchedule') && (!has(t.key) || t.key == '' || t.key == ${q(PROVIDER_TAINT_KEY)})))`;

/**
 * CEL: the pod might reach a virtual node: a burst label, a node name (checked against the node cache by the
 * webhook), a toleration of the provider taint (then the webhook matches its nodeSelector and affinity against
 * the virtual nodes), a nodeSelector on the virtual-node labels, or a required node affinity that does not
 * exclude virtual nodes in every term. Namespace-wide `burst: always` is caught through the toleration the
 * placement webhook has added by then. This assumes virtual nodes keep the provider taint (they register with
 * it); a node an admin removed it from is still guarded by the node's own UnsupportedPodSpec check.
 */
export const MIGHT_RUN_ON_VIRTUAL_NODE = [
  `(${hasLabel([BURST_LABEL, ECI_LABEL])})`,
  "(has(object.spec.nodeName) && object.spec.nodeName != '')",
  TOLERATES_PROVIDER_TAINT,
  `(has(object.spec.nodeSelector) && ${list([VIRTUAL_NODE_LABEL, NODE_TYPE_LABEL])}.exists(k, k in object.spec.nodeSelector))`,
  `(has(object.spec.affinity) && has(object.spec.affinity.nodeAffinity) && has(${AFFINITY}) && ` +
    `has(${AFFINITY}.nodeSelectorTerms) && !${AFFINITY}.nodeSelectorTerms.all(t, has(t.matchExpressions) && ` +
    `t.matchExpressions.exists(e, e.key == ${q(VIRTUAL_NODE_LABEL)} && e.operator == 'NotIn' && ` +
    `has(e.values) && 'true' in e.values)))`,
].join(' || ');

function clientConfig(client: WebhookClient, path: string, caBundlePem?: string) {
  const caBundle = caBundlePem ? Buffer.from(caBundlePem).toString('base64') : undefined;
  const config: AdmissionregistrationV1WebhookClientConfig =
    'url' in client
      ? { url: `${client.url.replace(/\/$/, '')}${path}` }
      : { service: { ...client.service, port: client.service.port ?? 443, path } };
  return caBundle ? { ...config, caBundle } : config;
}

function namespaceSelector(
  o: WebhookConfigurationOptions,
  extra: V1LabelSelectorRequirement[] = [],
): V1LabelSelector {
  const excluded = ['kube-system', 'kube-node-lease', o.ownNamespace, ...(o.excludedNamespaces ?? [])];
  return {
    matchExpressions: [
      // kubernetes.io/metadata.name is set by the apiserver on every namespace and cannot be forged.
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [...new Set(excluded)] },
      ...extra,
    ],
  };
}

const common = (o: WebhookConfigurationOptions) => ({
  // v1 only: the server answers nothing else.
  admissionReviewVersions: ['v1'],
  // The webhooks only compute patches and verdicts; nothing is written, so dry-run requests are safe.
  sideEffects: 'None',
  // The server answers in milliseconds; a longer wait only means a hung replica, and every pod creation
  // (twice under reinvocation) would pay for it.
  timeoutSeconds: o.timeoutSeconds ?? 3,
  // Also match requests through other API versions of the same resources (converted for us).
  matchPolicy: 'Equivalent',
});

/** Builds the MutatingWebhookConfiguration: pod placement (two scopes) and the DaemonSet guard. */
export function mutatingWebhookConfiguration(o: WebhookConfigurationOptions): V1MutatingWebhookConfiguration {
  const podRules = [
    {
      apiGroups: [''],
      apiVersions: ['v1'],
      resources: ['pods'],
      operations: ['CREATE'],
      scope: 'Namespaced',
    },
  ];
  const podLabelled: V1MatchCondition = {
    name: 'has-spillway-labels',
    expression: hasLabel(POD_PLACEMENT_LABELS),
  };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: configurationMetadata(o),
    webhooks: [
      {
        ...common(o),
        name: 'pods.placement.spillway.dev',
        clientConfig: clientConfig(o.client, WEBHOOK_PATHS.mutatePods, o.caBundlePem),
        rules: podRules,
        namespaceSelector: namespaceSelector(o),
        // Only pods that carry a spillway label are sent at all (no cost for any other pod).
        matchConditions: [podLabelled],
        // Fail: these pods asked for spillway. Admitted unmutated they would be placed wrongly for good (a pod
        // is scheduled once), while a rejected create is retried by its controller and succeeds once a replica
        // answers. spillway's namespace is excluded, so spillway itself can always start.
        failurePolicy: 'Fail',
        // A later webhook (e.g. a sidecar injector) may rewrite affinity or tolerations; run again, idempotently.
        reinvocationPolicy: 'IfNeeded',
      },
      {
        ...common(o),
        name: 'namespaced-pods.placement.spillway.dev',
        clientConfig: clientConfig(o.client, WEBHOOK_PATHS.mutatePods, o.caBundlePem),
        rules: podRules,
        // matchConditions cannot see namespace labels (namespaceObject is null for webhooks), but a
        // namespaceSelector can: pods in namespaces labelled spillway.dev/burst come through this scope.
        namespaceSelector: namespaceSelector(o, [{ key: BURST_LABEL, operator: 'Exists' }]),
        // Pods with labels of their own already went through the webhook above: do not call twice.
        matchConditions: [{ name: 'no-spillway-labels', expression: `!(${hasLabel(POD_PLACEMENT_LABELS)})` }],
        // Ignore: this scope covers every pod of a namespace, most of which never asked; skipped, a pod keeps
        // no toleration and so stays on real nodes, which is where it would run without spillway.
        failurePolicy: 'Ignore',
        reinvocationPolicy: 'IfNeeded',
      },
      {
        ...common(o),
        name: 'daemonsets.placement.spillway.dev',
        clientConfig: clientConfig(o.client, WEBHOOK_PATHS.mutateDaemonSets, o.caBundlePem),
        rules: [
          {
            apiGroups: ['apps'],
            apiVersions: ['v1'],
            resources: ['daemonsets'],
            operations: ['CREATE', 'UPDATE'],
            scope: 'Namespaced',
          },
        ],
        namespaceSelector: namespaceSelector(o),
        // Ignore: DaemonSets are infrastructure (CNI, logging, monitoring) and must stay deployable while
        // spillway is down. A DaemonSet pod that reaches a virtual node anyway is denied by the validating
        // webhook and failed by the virtual node (UnsupportedPodSpec); the guard is added on its next update.
        failurePolicy: 'Ignore',
        reinvocationPolicy: 'IfNeeded',
      },
    ],
  };
}

/** CEL: the UPDATE changed `spec.<field>` (set, unset, or a different value). */
const changed = (field: string) =>
  `(has(object.spec.${field}) != has(oldObject.spec.${field}) || ` +
  `(has(object.spec.${field}) && object.spec.${field} != oldObject.spec.${field}))`;

/**
 * CEL: a request the validating webhooks judge at all: anything but a pod UPDATE; `kubectl debug`; or an UPDATE
 * of a pod not bound yet that changes where it may be scheduled (the same fields as validate.ts
 * `updateMayMovePod`: removing scheduling gates releases it, a gated pod may change its selector and affinity,
 * any pod may add tolerations). Every other update (labels, annotations, finalizers, and anything on a bound pod,
 * which nothing can move) is never sent, so it costs nothing and an outage of spillway cannot block it.
 */
export const JUDGED_OPERATION =
  "request.operation != 'UPDATE' || " +
  "(has(request.subResource) && request.subResource == 'ephemeralcontainers') || " +
  "((!has(oldObject.spec.nodeName) || oldObject.spec.nodeName == '') && (" +
  ['schedulingGates', 'nodeSelector', 'affinity', 'tolerations'].map(changed).join(' || ') +
  '))';

/** Builds the ValidatingWebhookConfiguration: what a sandbox cannot run. */
export function validatingWebhookConfiguration(
  o: WebhookConfigurationOptions,
): V1ValidatingWebhookConfiguration {
  const rules = [
    // UPDATE: a pod's scheduling gates can be removed, and a gated pod's selector changed, after its create.
    {
      apiGroups: [''],
      apiVersions: ['v1'],
      resources: ['pods'],
      operations: ['CREATE', 'UPDATE'],
      scope: 'Namespaced',
    },
    // `kubectl debug` adds (possibly privileged) ephemeral containers to running pods.
    {
      apiGroups: [''],
      apiVersions: ['v1'],
      resources: ['pods/ephemeralcontainers'],
      operations: ['UPDATE'],
      scope: 'Namespaced',
    },
  ];
  const base = {
    ...common(o),
    clientConfig: clientConfig(o.client, WEBHOOK_PATHS.validatePods, o.caBundlePem),
    rules,
    namespaceSelector: namespaceSelector(o),
  };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: configurationMetadata(o),
    webhooks: [
      {
        ...base,
        name: 'pods.sandbox.spillway.dev',
        // All must hold: only pods that use an unsupported feature AND might reach a virtual node are sent.
        matchConditions: [
          { name: 'not-a-daemonset-pod', expression: `!(${IS_DAEMONSET_POD})` },
          { name: 'uses-unsupported-feature', expression: USES_UNSUPPORTED_FEATURE },
          { name: 'might-run-on-virtual-node', expression: MIGHT_RUN_ON_VIRTUAL_NODE },
          { name: 'create-or-unbound-update', expression: JUDGED_OPERATION },
        ],
        // Fail: a denied feature must never reach a sandbox, and the matchConditions keep the blast radius of
        // an outage to exactly the pods that would need a verdict.
        failurePolicy: 'Fail',
      },
      {
        ...base,
        name: 'pods.providers.spillway.dev',
        // The pods the first webhook does not see (no unsupported feature) that might reach a virtual node: the
        // server denies those that every provider of the virtual nodes they may land on refuses by its static
        // rules, so that a ReplicaSet backs off with FailedCreate instead of creating pods the node would fail.
        matchConditions: [
          { name: 'not-a-daemonset-pod', expression: `!(${IS_DAEMONSET_POD})` },
          { name: 'no-unsupported-feature', expression: `!(${USES_UNSUPPORTED_FEATURE})` },
          { name: 'might-run-on-virtual-node', expression: MIGHT_RUN_ON_VIRTUAL_NODE },
          { name: 'create-or-unbound-update', expression: JUDGED_OPERATION },
        ],
        // Ignore: while spillway is down, such a pod still reaches the virtual node, which refuses it there
        // (UnsupportedPodSpec): a worse message, not a sandbox escape.
        failurePolicy: 'Ignore',
      },
      {
        ...base,
        name: 'daemonset-pods.sandbox.spillway.dev',
        // DaemonSet pods are pinned by node name, which CEL cannot tell virtual or not: the server decides.
        matchConditions: [
          { name: 'daemonset-pod', expression: IS_DAEMONSET_POD },
          { name: 'create-or-unbound-update', expression: JUDGED_OPERATION },
        ],
        // Ignore: DaemonSet pods are infrastructure (node-exporter, CNI, log agents) and must keep coming up on
        // new real nodes while spillway is down. Their real guard is the DaemonSet's node affinity (no pod is
        // created for a virtual node); this webhook and the virtual node's UnsupportedPodSpec are backstops.
        failurePolicy: 'Ignore',
      },
    ],
  };
}

const statusOf = (err: unknown) => (err as { code?: number } | null)?.code;

function keepTrusted<T extends V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration>(
  wanted: T,
  existing: T,
): T {
  // Keep CAs the existing configuration trusts (a rotation may be in flight on another replica).
  const now = new Date();
  const byName = new Map((existing.webhooks ?? []).map((w) => [w.name, w.clientConfig.caBundle]));
  for (const w of wanted.webhooks ?? []) {
    const old = byName.get(w.name);
    if (!old) continue;
    const merged = mergeBundles(
      Buffer.from(old, 'base64').toString(),
      Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString(),
      now,
    );
    if (merged) w.clientConfig.caBundle = Buffer.from(merged).toString('base64');
  }
  return { ...wanted, metadata: { ...wanted.metadata, resourceVersion: existing.metadata?.resourceVersion } };
}

/**
 * Creates both configurations, or replaces them if they exist (keeping CAs they already trust). Call it after
 * the server is listening and the TLS keeper has run once: the Fail-policy webhooks take effect immediately.
 */
export async function registerWebhookConfigurations(
  api: AdmissionregistrationV1Api,
  o: WebhookConfigurationOptions,
): Promise<void> {
  const mutating = mutatingWebhookConfiguration(o);
  const validating = validatingWebhookConfiguration(o);
  const name = mutating.metadata!.name!;
  for (let attempt = 0; ; attempt++) {
    try {
      try {
        await api.createMutatingWebhookConfiguration({ body: mutating });
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
        const existing = await api.readMutatingWebhookConfiguration({ name });
        await api.replaceMutatingWebhookConfiguration({ name, body: keepTrusted(mutating, existing) });
      }
      try {
        await api.createValidatingWebhookConfiguration({ body: validating });
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
        const existing = await api.readValidatingWebhookConfiguration({ name });
        await api.replaceValidatingWebhookConfiguration({ name, body: keepTrusted(validating, existing) });
      }
      return;
    } catch (err) {
      // Another replica registered at the same moment: read again.
      if (statusOf(err) !== 409 || attempt >= 3) throw err;
    }
  }
}
