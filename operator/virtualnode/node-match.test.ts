import type { V1Node, V1NodeSelectorTerm, V1PodSpec, V1Toleration } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { nodeObject } from './node.ts';
import { PROVIDER_TOLERATION } from '../../api/taints.ts';
import {
  mayRunOnVirtualNode,
  UNKNOWN_VALUE,
  virtualNodeFit,
  virtualNodeTemplate,
} from '../../api/node-match.ts';

const capacity = {
  cpu: '1000',
  memory: '4Ti',
  pods: '1000',
  labels: { 'example.com/generation': '3' },
  nodeInfo: {
    operatingSystem: 'linux',
    architecture: 'amd64',
    kernelVersion: '',
    osImage: '',
    containerRuntimeVersion: '',
  },
};
// A virtual node exactly as operator/virtualnode/node.ts registers it.
const vn = nodeObject({ name: 'vn-eci', internalIP: '10.0.0.9', kubeletPort: 10250 }, 'eci', capacity);
// One with an extra NoExecute taint from the node's configuration.
const dedicated = nodeObject(
  {
    name: 'vn-dedicated',
    internalIP: '10.0.0.10',
    kubeletPort: 10250,
    taints: [{ key: 'team', value: 'ml', effect: 'NoExecute' }],
  },
  'eci',
  capacity,
);

const app = { containers: [{ name: 'app', image: 'nginx' }] };
const tolerate = { tolerations: [{ ...PROVIDER_TOLERATION }] };
const required = (...nodeSelectorTerms: V1NodeSelectorTerm[]): Partial<V1PodSpec> => ({
  affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms } } },
});
const expr = (key: string, operator: string, values?: string[]): V1NodeSelectorTerm => ({
  matchExpressions: [{ key, operator, ...(values ? { values } : {}) }],
});
const field = (operator: string, values: string[]): V1NodeSelectorTerm => ({
  matchFields: [{ key: 'metadata.name', operator, values }],
});
const tol = (...tolerations: V1Toleration[]) => ({ tolerations });

// [case, pod spec (beyond containers), the virtual nodes, may run on one]
const cases: [string, Partial<V1PodSpec>, V1Node[], boolean][] = [
  // The escapes that reached the virtual node through the marker-only check.
  [
    'nodeSelector kubernetes.io/hostname=<virtual node>',
    { nodeSelector: { 'kubernetes.io/hostname': 'vn-eci' }, ...tolerate },
    [vn],
    true,
  ],
  [
    'nodeSelector spillway.dev/provider=eci',
    { nodeSelector: { 'spillway.dev/provider': 'eci' }, ...tolerate },
    [vn],
    true,
  ],
  [
    'affinity spillway.dev/virtual-node Exists',
    { ...required(expr('spillway.dev/virtual-node', 'Exists')), ...tolerate },
    [vn],
    true,
  ],
  [
    'affinity type NotIn [normal]',
    { ...required(expr('type', 'NotIn', ['normal'])), ...tolerate },
    [vn],
    true,
  ],
  [
    'a gated pod pointed at the virtual node (gates only delay it)',
    {
      schedulingGates: [{ name: 'example.com/wait' }],
      nodeSelector: { 'kubernetes.io/hostname': 'vn-eci' },
      ...tolerate,
    },
    [vn],
    true,
  ],
  [
    'matchFields metadata.name In [<virtual node>]',
    { ...required(field('In', ['vn-eci'])), ...tolerate },
    [vn],
    true,
  ],
  ['bound by nodeName (skips the scheduler: no toleration needed)', { nodeName: 'vn-eci' }, [vn], true],
  // The normal cases.
  ['no constraints, no toleration of the provider taint', {}, [vn], false],
  ['no constraints, tolerates the provider taint', tolerate, [vn], true],
  ['tolerates every taint (empty key, Exists)', tol({ operator: 'Exists' }), [vn], true],
  ['tolerates every NoSchedule taint', tol({ operator: 'Exists', effect: 'NoSchedule' }), [vn], true],
  [
    'tolerates the provider key only for NoExecute',
    tol({ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoExecute' }),
    [vn],
    false,
  ],
  ['tolerates provider=eci (Equal)', tol({ key: 'virtual-kubelet.io/provider', value: 'eci' }), [vn], true],
  [
    'tolerates provider=local only',
    tol({ key: 'virtual-kubelet.io/provider', operator: 'Equal', value: 'local' }),
    [vn],
    false,
  ],
  ['only the soft PreferNoSchedule taint untolerated', tolerate, [vn], true],
  [
    'nodeSelector on a real node',
    { nodeSelector: { 'kubernetes.io/hostname': 'kwok-node-0' }, ...tolerate },
    [vn],
    false,
  ],
  [
    'nodeSelector virtual-node=true and a label the node lacks',
    { nodeSelector: { 'spillway.dev/virtual-node': 'true', disk: 'ssd' }, ...tolerate },
    [vn],
    false,
  ],
  [
    'overflow: virtual-node NotIn [true]',
    { ...required(expr('spillway.dev/virtual-node', 'NotIn', ['true'])), ...tolerate },
    [vn],
    false,
  ],
  [
    'virtual-node DoesNotExist',
    { ...required(expr('spillway.dev/virtual-node', 'DoesNotExist')), ...tolerate },
    [vn],
    false,
  ],
  ['type In [normal]', { ...required(expr('type', 'In', ['normal'])), ...tolerate }, [vn], false],
  [
    'Gt below the node value',
    { ...required(expr('example.com/generation', 'Gt', ['2'])), ...tolerate },
    [vn],
    true,
  ],
  [
    'Lt below the node value',
    { ...required(expr('example.com/generation', 'Lt', ['2'])), ...tolerate },
    [vn],
    false,
  ],
  [
    'Gt on a label that is not a number',
    { ...required(expr('type', 'Gt', ['1'])), ...tolerate },
    [vn],
    false,
  ],
  [
    'matchFields metadata.name NotIn [<virtual node>]',
    { ...required(field('NotIn', ['vn-eci'])), ...tolerate },
    [vn],
    false,
  ],
  [
    'matchFields pinned to a real node (DaemonSet pods)',
    { ...required(field('In', ['kwok-node-0'])), ...tol({ operator: 'Exists' }) },
    [vn],
    false,
  ],
  [
    'one ORed term admits the virtual node',
    {
      ...required(expr('type', 'In', ['normal']), expr('kubernetes.io/hostname', 'In', ['vn-eci'])),
      ...tolerate,
    },
    [vn],
    true,
  ],
  [
    'an expression and a field in one term must both hold',
    { ...required({ ...expr('type', 'Exists'), ...field('In', ['other']) }), ...tolerate },
    [vn],
    false,
  ],
  ['an empty term matches nothing', { ...required({}), ...tolerate }, [vn], false],
  ['bound to a real node', { nodeName: 'kwok-node-0', ...tolerate }, [vn], false],
  ['the node’s own NoExecute taint is not tolerated', tolerate, [dedicated], false],
  [
    'every taint of that node tolerated',
    tol({ ...PROVIDER_TOLERATION }, { key: 'team', operator: 'Exists' }),
    [dedicated],
    true,
  ],
  [
    'the second of two nodes admits it',
    { nodeSelector: { 'kubernetes.io/hostname': 'vn-eci' }, ...tolerate },
    [dedicated, vn],
    true,
  ],
  // No virtual node registered yet: the labels and taints one registers with, values and names unknown.
  ['(none yet) tolerates the provider taint', tolerate, [], true],
  ['(none yet) no toleration', {}, [], false],
  ['(none yet) any provider', { nodeSelector: { 'spillway.dev/provider': 'local' }, ...tolerate }, [], true],
  [
    '(none yet) provider=x tolerated by value',
    tol({ key: 'virtual-kubelet.io/provider', value: 'x' }),
    [],
    true,
  ],
  [
    '(none yet) a hostname names an existing node',
    { nodeSelector: { 'kubernetes.io/hostname': 'kwok-node-0' }, ...tolerate },
    [],
    false,
  ],
  [
    '(none yet) DaemonSet pod pinned by name',
    { ...required(field('In', ['kwok-node-0'])), ...tol({ operator: 'Exists' }) },
    [],
    false,
  ],
  ['(none yet) bound by nodeName', { nodeName: 'vn-later' }, [], false],
  ['(none yet) type=normal', { nodeSelector: { type: 'normal' }, ...tolerate }, [], false],
];

describe('mayRunOnVirtualNode', () => {
  it.each(cases.map(([name, spec, nodes, expected]) => [name, expected, spec, nodes] as const))(
    '%s → %s',
    (_name, expected, spec, nodes) => {
      expect(mayRunOnVirtualNode({ ...app, ...spec }, nodes)).toBe(expected);
    },
  );

  it('names the node and the fields that admit it', () => {
    const spec = { ...app, nodeSelector: { 'kubernetes.io/hostname': 'vn-eci' }, ...tolerate };
    expect(virtualNodeFit(spec, [dedicated, vn])).toEqual({
      node: 'vn-eci',
      reason: 'spec.nodeSelector, spec.tolerations admit virtual node vn-eci',
    });
    expect(virtualNodeFit({ ...app, ...tolerate }, [])?.reason).toBe('spec.tolerations admit a virtual node');
  });

  it.each<[string, unknown]>([
    ['nodeSelector is a string', { nodeSelector: 'x', ...tolerate }],
    ['tolerations is an object', { tolerations: { key: 'x' } }],
    [
      'values is a string',
      {
        ...required({
          matchExpressions: [{ key: 'type', operator: 'In', values: 'x' as unknown as string[] }],
        }),
        ...tolerate,
      },
    ],
    ['a term is null', { ...required(null as unknown as V1NodeSelectorTerm), ...tolerate }],
    ['a toleration is null', { tolerations: [null] }],
  ])('does not throw on malformed input: %s', (_name, spec) => {
    expect(() => mayRunOnVirtualNode({ ...app, ...(spec as object) } as V1PodSpec, [vn])).not.toThrow();
  });
});

describe('virtualNodeTemplate', () => {
  it('carries the labels and scheduling taints a virtual node registers with, per-node values unknown', () => {
    const template = virtualNodeTemplate();
    for (const [key, value] of Object.entries(template.metadata!.labels!)) {
      expect(vn.metadata!.labels![key], key).toBeDefined();
      if (value !== UNKNOWN_VALUE) expect(vn.metadata!.labels![key], key).toBe(value);
    }
    const keys = (n: V1Node) => n.spec!.taints!.map((t) => `${t.key}:${t.effect}`);
    expect(keys(template)).toEqual(keys(vn));
  });
});
