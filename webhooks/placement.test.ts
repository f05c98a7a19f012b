import type {
  V1Affinity,
  V1NodeSelectorRequirement,
  V1Pod,
  V1PodSpec,
  V1PreferredSchedulingTerm,
  V1Toleration,
} from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { expectPatchGives } from './admission.fixtures.ts';
import { OFF_VIRTUAL_NODE, ON_VIRTUAL_NODE, PREFER_TOLERATION, PROVIDER_TOLERATION } from '../api/taints.ts';
import { DEFAULT_PLACEMENT_POLICY, placePod } from './placement.ts';
import { resolveBurst } from '../api/placement.ts';

const base: V1PodSpec = { containers: [{ name: 'app', image: 'nginx' }] };

function pod(labels: Record<string, string> = {}, spec: Partial<V1PodSpec> = {}, meta: object = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', labels, ...meta },
    spec: { ...base, ...spec },
  };
}

interface Placement {
  tolerations: V1Toleration[];
  required: V1NodeSelectorRequirement[][];
  preferred: V1PreferredSchedulingTerm[];
}

const always: Placement = {
  tolerations: [PROVIDER_TOLERATION, PREFER_TOLERATION],
  required: [[ON_VIRTUAL_NODE]],
  preferred: [],
};
const overflow: Placement = {
  tolerations: [PROVIDER_TOLERATION],
  required: [],
  preferred: [{ weight: 100, preference: { matchExpressions: [OFF_VIRTUAL_NODE] } }],
};
const none: Placement = { tolerations: [], required: [], preferred: [] };

function placement(p: V1Pod): Placement {
  const na = p.spec?.affinity?.nodeAffinity;
  return {
    tolerations: p.spec?.tolerations ?? [],
    required: (na?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? []).map(
      (t) => t.matchExpressions ?? [],
    ),
    preferred: na?.preferredDuringSchedulingIgnoredDuringExecution ?? [],
  };
}

const dsOwner = { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'ds', uid: 'u' }] };

// name, pod, namespace labels, expected placement, warnings (regexes)
const decisions: [string, V1Pod, Record<string, string> | undefined, Placement, RegExp[]][] = [
  ['no labels', pod(), undefined, none, []],
  ['pod burst=always', pod({ 'spillway.dev/burst': 'always' }), undefined, always, []],
  ['pod burst=overflow', pod({ 'spillway.dev/burst': 'overflow' }), undefined, overflow, []],
  ['ACK eci=true counts as always', pod({ 'alibabacloud.com/eci': 'true' }), undefined, always, []],
  ['ACK eci=false is no opinion', pod({ 'alibabacloud.com/eci': 'false' }), undefined, none, []],
  ['namespace burst=always', pod(), { 'spillway.dev/burst': 'always' }, always, []],
  ['namespace burst=overflow', pod(), { 'spillway.dev/burst': 'overflow' }, overflow, []],
  ['namespace without the label', pod(), { team: 'a' }, none, []],
  [
    'pod label wins over namespace',
    pod({ 'spillway.dev/burst': 'overflow' }),
    { 'spillway.dev/burst': 'always' },
    overflow,
    [],
  ],
  [
    'pod eci=true wins over namespace overflow',
    pod({ 'alibabacloud.com/eci': 'true' }),
    { 'spillway.dev/burst': 'overflow' },
    always,
    [],
  ],
  [
    'spillway label wins over eci',
    pod({ 'spillway.dev/burst': 'overflow', 'alibabacloud.com/eci': 'true' }),
    undefined,
    overflow,
    [],
  ],
  [
    'unknown pod value is ignored',
    pod({ 'spillway.dev/burst': 'alwyas' }),
    undefined,
    none,
    [/ignoring pod label spillway\.dev\/burst=alwyas/],
  ],
  [
    'unknown pod value falls back to namespace',
    pod({ 'spillway.dev/burst': 'never' }),
    { 'spillway.dev/burst': 'always' },
    always,
    [/ignoring pod label/],
  ],
  [
    'unknown namespace value is ignored',
    pod(),
    { 'spillway.dev/burst': 'yes' },
    none,
    [/ignoring namespace label spillway\.dev\/burst=yes/],
  ],
  [
    'namespace label skips DaemonSet pods',
    pod({}, {}, dsOwner),
    { 'spillway.dev/burst': 'always' },
    none,
    [],
  ],
  [
    'namespace label skips mirror pods',
    pod({}, {}, { annotations: { 'kubernetes.io/config.mirror': 'x' } }),
    { 'spillway.dev/burst': 'always' },
    none,
    [],
  ],
  [
    'a pod label still applies to a DaemonSet pod',
    pod({ 'spillway.dev/burst': 'always' }, {}, dsOwner),
    undefined,
    always,
    [],
  ],
];

describe('placePod: decisions', () => {
  it.each(decisions)('%s', (_name, raw, nsLabels, expected, warnings) => {
    const before = structuredClone(raw);
    const { object, patch, warnings: got } = placePod(raw, nsLabels);
    expect(placement(object)).toEqual(expected);
    expect(got).toHaveLength(warnings.length);
    warnings.forEach((w, i) => expect(got[i]).toMatch(w));
    expect(raw).toEqual(before); // the raw request object is never modified
    expectPatchGives(raw, patch, object); // the patch does to the raw object what the decision did
  });

  it.each(decisions)('is idempotent: %s', (_name, raw, nsLabels) => {
    const once = placePod(raw, nsLabels).object;
    const again = placePod(once, nsLabels);
    expect(again.object).toEqual(once);
    expect(again.patch).toEqual([]);
  });
});

const term = (key: string, values: string[]) => ({ matchExpressions: [{ key, operator: 'In', values }] });

describe('placePod: merging with what the pod already has', () => {
  it.each<[string, V1Affinity, string[][][]]>([
    [
      'ON_VIRTUAL_NODE goes into every existing term (terms are ORed)',
      {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [term('zone', ['a']), term('zone', ['b'])],
          },
        },
      },
      [
        [
          ['zone', 'a'],
          ['spillway.dev/virtual-node', 'true'],
        ],
        [
          ['zone', 'b'],
          ['spillway.dev/virtual-node', 'true'],
        ],
      ],
    ],
    [
      'a term that already has it is left alone',
      {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [ON_VIRTUAL_NODE] }, term('zone', ['b'])],
          },
        },
      },
      [
        [['spillway.dev/virtual-node', 'true']],
        [
          ['zone', 'b'],
          ['spillway.dev/virtual-node', 'true'],
        ],
      ],
    ],
    [
      'a matchFields-only term gets matchExpressions',
      {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n'] }] }],
          },
        },
      },
      [[['spillway.dev/virtual-node', 'true']]],
    ],
    [
      'pod affinity only: a node affinity is added beside it',
      { podAffinity: {} },
      [[['spillway.dev/virtual-node', 'true']]],
    ],
  ])('%s', (_name, affinity, expected) => {
    const raw = pod({ 'spillway.dev/burst': 'always' }, { affinity });
    const { object, patch } = placePod(raw, undefined);
    expectPatchGives(raw, patch, object);
    const terms =
      object.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms;
    expect(terms.map((t) => (t.matchExpressions ?? []).map((e) => [e.key, ...(e.values ?? [])]))).toEqual(
      expected,
    );
    if (affinity.podAffinity) expect(object.spec!.affinity!.podAffinity).toEqual({});
  });

  it('keeps matchFields next to the added expression', () => {
    const fields = [{ key: 'metadata.name', operator: 'In', values: ['n'] }];
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: fields }] },
      },
    };
    const { object } = placePod(pod({ 'spillway.dev/burst': 'always' }, { affinity }), undefined);
    expect(
      object.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms,
    ).toEqual([{ matchFields: fields, matchExpressions: [ON_VIRTUAL_NODE] }]);
  });

  it.each<[string, V1Toleration[], V1Toleration[]]>([
    ['no tolerations', [], [PROVIDER_TOLERATION, PREFER_TOLERATION]],
    ['a wildcard toleration covers both', [{ operator: 'Exists' }], [{ operator: 'Exists' }]],
    [
      'the user tolerates the provider key for every effect',
      [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
      [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }, PREFER_TOLERATION],
    ],
    [
      'a toleration of one provider value does not cover all providers',
      [{ key: 'virtual-kubelet.io/provider', operator: 'Equal', value: 'eci', effect: 'NoSchedule' }],
      [
        { key: 'virtual-kubelet.io/provider', operator: 'Equal', value: 'eci', effect: 'NoSchedule' },
        PROVIDER_TOLERATION,
        PREFER_TOLERATION,
      ],
    ],
    [
      'unrelated tolerations are kept in order',
      [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }, PROVIDER_TOLERATION, PREFER_TOLERATION],
    ],
  ])('tolerations: %s', (_name, tolerations, expected) => {
    const raw = pod({ 'spillway.dev/burst': 'always' }, { tolerations });
    const { object, patch } = placePod(raw, undefined);
    expect(object.spec!.tolerations).toEqual(expected);
    expectPatchGives(raw, patch, object);
  });

  it('overflow keeps existing preferred terms and appends its own', () => {
    const mine = { weight: 5, preference: term('disk', ['ssd']) };
    const affinity = { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [mine] } };
    const { object } = placePod(pod({ 'spillway.dev/burst': 'overflow' }, { affinity }), undefined);
    expect(placement(object).preferred).toEqual([mine, ...overflow.preferred]);
  });

  it('overflow does not tolerate the PreferNoSchedule taint (TaintToleration keeps scoring against it)', () => {
    const { object } = placePod(pod({ 'spillway.dev/burst': 'overflow' }), undefined);
    expect(object.spec!.tolerations!.some((t) => t.effect === 'PreferNoSchedule')).toBe(false);
  });
});

const features: [string, Partial<V1PodSpec>, object, string][] = [
  ['hostNetwork', { hostNetwork: true }, {}, 'spec.hostNetwork'],
  ['hostPID', { hostPID: true }, {}, 'spec.hostPID'],
  ['hostIPC', { hostIPC: true }, {}, 'spec.hostIPC'],
  ['hostPath', { volumes: [{ name: 'h', hostPath: { path: '/' } }] }, {}, 'spec.volumes[0].hostPath'],
  [
    'privileged',
    { containers: [{ name: 'a', securityContext: { privileged: true } }] },
    {},
    'spec.containers[0].securityContext.privileged',
  ],
  [
    'privileged init',
    { initContainers: [{ name: 'i', securityContext: { privileged: true } }] },
    {},
    'spec.initContainers[0].securityContext.privileged',
  ],
  [
    'hostPort',
    { containers: [{ name: 'a', ports: [{ containerPort: 80, hostPort: 80 }] }] },
    {},
    'spec.containers[0].ports[0].hostPort',
  ],
  ['DaemonSet owner', {}, dsOwner, 'metadata.ownerReferences'],
];

describe('placePod: overflow pods a sandbox cannot run', () => {
  it.each(features)('%s: no toleration, virtual nodes excluded, and a warning', (_name, spec, meta, path) => {
    const raw = pod({ 'spillway.dev/burst': 'overflow' }, spec, meta);
    const { object, patch, warnings } = placePod(raw, undefined);
    expect(placement(object)).toEqual({ tolerations: [], required: [[OFF_VIRTUAL_NODE]], preferred: [] });
    expectPatchGives(raw, patch, object);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('will not spill to a virtual node');
    expect(warnings[0]).toContain(path);
    expect(placePod(object, undefined).object).toEqual(object);
  });

  it('also through a namespace label', () => {
    const { object, warnings } = placePod(pod({}, { hostNetwork: true }), {
      'spillway.dev/burst': 'overflow',
    });
    expect(placement(object).required).toEqual([[OFF_VIRTUAL_NODE]]);
    expect(warnings[0]).toMatch(/^namespace label spillway\.dev\/burst=overflow: .*spec\.hostNetwork/);
  });
});

describe('placePod: capacity', () => {
  const spot = { 'k8s.aliyun.com/eci-spot-strategy': 'SpotAsPriceGo' };
  it.each<
    [string, Record<string, string>, Record<string, string>, Record<string, string> | undefined, RegExp[]]
  >([
    ['spot', { 'spillway.dev/capacity': 'spot' }, {}, spot, []],
    [
      'spot with burst=always',
      { 'spillway.dev/capacity': 'spot', 'spillway.dev/burst': 'always' },
      {},
      spot,
      [],
    ],
    ['on-demand adds nothing (ECI default)', { 'spillway.dev/capacity': 'on-demand' }, {}, undefined, []],
    [
      'unknown class',
      { 'spillway.dev/capacity': 'cheap' },
      {},
      undefined,
      [/ignoring pod label spillway\.dev\/capacity=cheap/],
    ],
    [
      'the user annotation wins',
      { 'spillway.dev/capacity': 'spot' },
      {
        'k8s.aliyun.com/eci-spot-strategy': 'SpotWithPriceLimit',
        'k8s.aliyun.com/eci-spot-price-limit': '0.5',
      },
      {
        'k8s.aliyun.com/eci-spot-strategy': 'SpotWithPriceLimit',
        'k8s.aliyun.com/eci-spot-price-limit': '0.5',
      },
      [/keeping annotation k8s\.aliyun\.com\/eci-spot-strategy=SpotWithPriceLimit/],
    ],
    ['an identical annotation is no news', { 'spillway.dev/capacity': 'spot' }, spot, spot, []],
  ])('%s', (_name, labels, annotations, expected, warnings) => {
    const meta = Object.keys(annotations).length ? { annotations } : {};
    const raw = pod(labels, {}, meta);
    const { object, patch, warnings: got } = placePod(raw, undefined);
    expect(object.metadata!.annotations).toEqual(expected);
    expectPatchGives(raw, patch, object);
    expect(got.map(String)).toEqual(warnings.map((w) => expect.stringMatching(w)));
  });

  it('uses a configured provider map', () => {
    const policy = {
      ...DEFAULT_PLACEMENT_POLICY,
      capacityAnnotations: { spot: { 'x/spot': '1' }, 'on-demand': { 'x/spot': '0' } },
    };
    expect(
      placePod(pod({ 'spillway.dev/capacity': 'on-demand' }), undefined, policy).object.metadata!.annotations,
    ).toEqual({ 'x/spot': '0' });
  });
});

describe('resolveBurst', () => {
  it('names its source', () => {
    expect(resolveBurst(pod(), { 'spillway.dev/burst': 'always' })).toEqual({
      mode: 'always',
      source: 'namespace label spillway.dev/burst=always',
    });
  });
});
