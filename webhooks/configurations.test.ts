import type {
  AdmissionregistrationV1Api,
  V1MutatingWebhook,
  V1MutatingWebhookConfiguration,
  V1PodSpec,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { createCA } from '../operator/shared/pki.ts';
import { sandboxViolations } from '../api/sandbox-rules.ts';
import {
  JUDGED_OPERATION,
  MIGHT_RUN_ON_VIRTUAL_NODE,
  mutatingWebhookConfiguration,
  registerWebhookConfigurations,
  USES_UNSUPPORTED_FEATURE,
  validatingWebhookConfiguration,
  webhookConfigurationNames,
  type WebhookConfigurationOptions,
} from './configurations.ts';
import { WEBHOOK_PATHS } from './handlers.ts';

const chart: WebhookConfigurationOptions = {
  client: { service: { name: 'spillway-webhook', namespace: 'spillway-system' } },
  ownNamespace: 'spillway-system',
  caBundlePem: 'PEM',
};
const dev: WebhookConfigurationOptions = {
  client: { url: 'https://127.0.0.1:9443/' },
  ownNamespace: 'spillway',
};

const all = (o: WebhookConfigurationOptions) => [
  ...mutatingWebhookConfiguration(o).webhooks!,
  ...validatingWebhookConfiguration(o).webhooks!,
];
const byName = (o: WebhookConfigurationOptions, name: string) =>
  all(o).find((w) => w.name === name) as V1MutatingWebhook;

describe('webhook configurations', () => {
  it.each<[string, string, 'Fail' | 'Ignore', string, string | undefined]>([
    ['pods.placement.spillway.dev', WEBHOOK_PATHS.mutatePods, 'Fail', 'pod labels', 'IfNeeded'],
    [
      'namespaced-pods.placement.spillway.dev',
      WEBHOOK_PATHS.mutatePods,
      'Ignore',
      'namespace labels',
      'IfNeeded',
    ],
    ['daemonsets.placement.spillway.dev', WEBHOOK_PATHS.mutateDaemonSets, 'Ignore', 'DaemonSets', 'IfNeeded'],
    ['pods.sandbox.spillway.dev', WEBHOOK_PATHS.validatePods, 'Fail', 'validation', undefined],
    [
      'daemonset-pods.sandbox.spillway.dev',
      WEBHOOK_PATHS.validatePods,
      'Ignore',
      'DaemonSet pods',
      undefined,
    ],
  ])('%s → %s, failurePolicy %s (%s)', (name, path, failurePolicy, _what, reinvocation) => {
    const w = byName(chart, name);
    expect(w.failurePolicy).toBe(failurePolicy);
    expect(w.reinvocationPolicy).toBe(reinvocation);
    expect(w.clientConfig).toEqual({
      service: { name: 'spillway-webhook', namespace: 'spillway-system', port: 443, path },
      caBundle: Buffer.from('PEM').toString('base64'),
    });
    expect(byName(dev, name).clientConfig).toEqual({ url: `https://127.0.0.1:9443${path}` });
    expect(w).toMatchObject({
      sideEffects: 'None',
      admissionReviewVersions: ['v1'],
      timeoutSeconds: 3,
      matchPolicy: 'Equivalent',
    });
    expect(w.namespaceSelector!.matchExpressions![0]).toEqual({
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: ['kube-system', 'kube-node-lease', 'spillway-system'],
    });
  });

  it('only the namespace-scoped pod webhook selects labelled namespaces, and skips pods with labels', () => {
    const scoped = byName(chart, 'namespaced-pods.placement.spillway.dev');
    expect(scoped.namespaceSelector!.matchExpressions![1]).toEqual({
      key: 'spillway.dev/burst',
      operator: 'Exists',
    });
    const direct = byName(chart, 'pods.placement.spillway.dev');
    expect(direct.namespaceSelector!.matchExpressions).toHaveLength(1);
    expect(scoped.matchConditions![0]!.expression).toBe(`!(${direct.matchConditions![0]!.expression})`);
    for (const label of ['spillway.dev/burst', 'spillway.dev/capacity', 'alibabacloud.com/eci']) {
      expect(direct.matchConditions![0]!.expression).toContain(`'${label}'`);
    }
  });

  it('extra excluded namespaces are added once', () => {
    const w = byName(
      { ...chart, excludedNamespaces: ['kube-system', 'gatekeeper-system'] },
      'pods.sandbox.spillway.dev',
    );
    expect(w.namespaceSelector!.matchExpressions![0]!.values).toEqual([
      'kube-system',
      'kube-node-lease',
      'spillway-system',
      'gatekeeper-system',
    ]);
  });

  it('validation covers pod CREATE, UPDATE of unbound pods, and kubectl debug', () => {
    const w = byName(chart, 'pods.sandbox.spillway.dev');
    expect(w.rules!.map((r) => [r.resources, r.operations])).toEqual([
      [['pods'], ['CREATE', 'UPDATE']],
      [['pods/ephemeralcontainers'], ['UPDATE']],
    ]);
    expect(w.matchConditions!.map((c) => c.name)).toEqual([
      'not-a-daemonset-pod',
      'uses-unsupported-feature',
      'might-run-on-virtual-node',
      'create-or-unbound-update',
    ]);
    // Both webhooks send UPDATEs only when they can move a pod that is not bound yet.
    for (const webhook of [w, byName(chart, 'daemonset-pods.sandbox.spillway.dev')]) {
      expect(webhook.matchConditions!.at(-1)).toEqual({
        name: 'create-or-unbound-update',
        expression: JUDGED_OPERATION,
      });
    }
    // A toleration of the provider taint is how a pod without spillway's markers reaches a virtual node.
    expect(MIGHT_RUN_ON_VIRTUAL_NODE).toContain("t.key == 'virtual-kubelet.io/provider'");
    for (const field of ['schedulingGates', 'nodeSelector', 'affinity', 'tolerations']) {
      expect(JUDGED_OPERATION).toContain(`object.spec.${field} != oldObject.spec.${field}`);
    }
    // DaemonSet pods go to their own, fail-open webhook: exactly the complement.
    const ds = byName(chart, 'daemonset-pods.sandbox.spillway.dev');
    expect(w.matchConditions![0]!.expression).toBe(`!(${ds.matchConditions![0]!.expression})`);
    expect(ds.rules).toEqual(w.rules);
  });

  it('names the configurations for the TLS keeper', () => {
    expect(webhookConfigurationNames()).toEqual({ mutating: ['spillway'], validating: ['spillway'] });
    expect(mutatingWebhookConfiguration(chart).metadata!.name).toBe('spillway');
  });
});

describe('CEL matchConditions', () => {
  // The CEL prefilter must never be narrower than sandboxViolations, or a pod would escape validation.
  const everything: V1PodSpec = {
    hostNetwork: true,
    hostPID: true,
    hostIPC: true,
    volumes: [{ name: 'h', hostPath: { path: '/' } }],
    containers: [
      { name: 'a', securityContext: { privileged: true }, ports: [{ containerPort: 1, hostPort: 1 }] },
    ],
    initContainers: [{ name: 'i', securityContext: { privileged: true } }],
    ephemeralContainers: [{ name: 'e', securityContext: { privileged: true } }],
  };
  const owners = [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'd', uid: 'u' }];
  it.each(sandboxViolations(everything, owners).map((v) => [v.path]))('covers %s', (path) => {
    // e.g. spec.initContainers[0].securityContext.privileged → initContainers, privileged
    const words = path
      .replace(/\[\d+\]/g, '')
      .split('.')
      .filter((w) => !['spec', 'metadata', 'securityContext'].includes(w));
    for (const w of words) expect(USES_UNSUPPORTED_FEATURE).toContain(w);
  });

  it.each([
    ['uses-unsupported-feature', USES_UNSUPPORTED_FEATURE],
    ['might-run-on-virtual-node', MIGHT_RUN_ON_VIRTUAL_NODE],
    ['create-or-unbound-update', JUDGED_OPERATION],
  ])('%s has balanced parentheses and quotes', (_name, expr) => {
    let depth = 0;
    for (const ch of expr.replace(/'[^']*'/g, "''")) {
      depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
      expect(depth).toBeGreaterThanOrEqual(0);
    }
    expect(depth).toBe(0);
    expect((expr.match(/'/g) ?? []).length % 2).toBe(0);
  });
});

describe('registerWebhookConfigurations', () => {
  function fakeApi(existing: boolean, oldBundle = 'OLD') {
    const calls: string[] = [];
    const stored: Record<string, V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration> = {};
    const conflict = () => Object.assign(new Error('exists'), { code: 409 });
    const old = (kind: 'mutating' | 'validating') => {
      const base =
        kind === 'mutating' ? mutatingWebhookConfiguration(chart) : validatingWebhookConfiguration(chart);
      for (const w of base.webhooks!) w.clientConfig.caBundle = Buffer.from(oldBundle).toString('base64');
      return { ...base, metadata: { ...base.metadata, resourceVersion: '7' } };
    };
    const api = {
      createMutatingWebhookConfiguration: async ({ body }: { body: V1MutatingWebhookConfiguration }) => {
        calls.push('create mutating');
        if (existing) throw conflict();
        stored.mutating = body;
      },
      createValidatingWebhookConfiguration: async ({ body }: { body: V1ValidatingWebhookConfiguration }) => {
        calls.push('create validating');
        if (existing) throw conflict();
        stored.validating = body;
      },
      readMutatingWebhookConfiguration: async () => (calls.push('read mutating'), old('mutating')),
      readValidatingWebhookConfiguration: async () => (calls.push('read validating'), old('validating')),
      replaceMutatingWebhookConfiguration: async ({ body }: { body: V1MutatingWebhookConfiguration }) => {
        calls.push('replace mutating');
        stored.mutating = body;
      },
      replaceValidatingWebhookConfiguration: async ({ body }: { body: V1ValidatingWebhookConfiguration }) => {
        calls.push('replace validating');
        stored.validating = body;
      },
    };
    return { api: api as unknown as AdmissionregistrationV1Api, calls, stored };
  }

  it('creates both', async () => {
    const { api, calls, stored } = fakeApi(false);
    await registerWebhookConfigurations(api, chart);
    expect(calls).toEqual(['create mutating', 'create validating']);
    expect(stored.mutating!.webhooks).toHaveLength(3);
  });

  it('replaces existing ones at their resourceVersion', async () => {
    const { api, calls, stored } = fakeApi(true);
    await registerWebhookConfigurations(api, chart);
    expect(calls).toEqual([
      'create mutating',
      'read mutating',
      'replace mutating',
      'create validating',
      'read validating',
      'replace validating',
    ]);
    expect(stored.validating!.metadata!.resourceVersion).toBe('7');
  });

  it('keeps the CAs an existing configuration trusts (a rotation may be in flight)', async () => {
    const [a, b] = [await createCA('old', 86_400_000), await createCA('new', 86_400_000)];
    const { api, stored } = fakeApi(true, a.certPem);
    await registerWebhookConfigurations(api, { ...chart, caBundlePem: b.certPem });
    for (const w of stored.mutating!.webhooks!) {
      const bundle = Buffer.from(w.clientConfig.caBundle!, 'base64').toString();
      expect(bundle).toContain(a.certPem.trim());
      expect(bundle).toContain(b.certPem.trim());
    }
  });
});
