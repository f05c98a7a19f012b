/**
 * ECI instance specifications: a container group is billed and placed by a (vCPU, memory) pair from a fixed
 * table, so a pod's requests must be rounded up to the nearest pair ECI sells, the way ACK's virtual node
 * does. `k8s.aliyun.com/eci-use-specs` overrides the choice with explicit specs or ECS instance types.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parseQuantity } from '../../../api/quantity.ts';
import type { PodSpecCause } from '../errors.ts';

/** One (vCPU, GiB) pair. */
export interface EciSpec {
  cpu: number;
  memory: number;
}

/**
 * The general-purpose specifications ECI sells ("vCPU and memory specifications", help.aliyun.com): per vCPU
 * count, the memory sizes in GiB.
 */
export const ECI_SPECS: Readonly<Record<number, readonly number[]>> = {
  0.25: [0.5, 1],
  0.5: [1, 2],
  1: [2, 4, 8],
  2: [1, 2, 4, 8, 16],
  4: [2, 4, 8, 16, 32],
  8: [4, 8, 16, 32, 64],
  12: [12, 24, 48, 96],
  16: [16, 32, 64, 128],
  24: [24, 48, 96, 192],
  32: [32, 64, 128, 256],
  52: [96, 192, 384],
  64: [128, 256, 512],
};

/** Every spec, smallest first (by vCPU, then memory): the order in which rounding up tries them. */
export const ALL_SPECS: readonly EciSpec[] = Object.entries(ECI_SPECS)
  .flatMap(([cpu, mems]) => mems.map((memory) => ({ cpu: Number(cpu), memory })))
  .sort((a, b) => a.cpu - b.cpu || a.memory - b.memory);

/** True when ECI sells exactly this pair. */
export function isValidSpec(spec: EciSpec): boolean {
  return ECI_SPECS[spec.cpu]?.includes(spec.memory) ?? false;
}

/** The smallest spec with at least `cpu` vCPU and `memory` GiB, or undefined when the pod is bigger than any. */
export function roundUpToSpec(cpu: number, memory: number): EciSpec | undefined {
  return ALL_SPECS.find((s) => s.cpu >= cpu - 1e-9 && s.memory >= memory - 1e-9);
}

/** A container's CPU (cores) and memory (GiB): its limits, else its requests (what the sandbox must hold). */
export function containerNeeds(c: V1Container): { cpu: number; memory: number; gpu: number } {
  const pick = (name: string) => c.resources?.limits?.[name] ?? c.resources?.requests?.[name];
  const cpu = pick('cpu');
  const memory = pick('memory');
  const gpu = c.resources?.limits?.['nvidia.com/gpu'];
  return {
    cpu: cpu === undefined ? 0 : parseQuantity(cpu),
    memory: memory === undefined ? 0 : parseQuantity(memory) / 2 ** 30,
    gpu: gpu === undefined ? 0 : parseQuantity(gpu),
  };
}

/**
 * What the pod needs, as a kubelet computes the effective pod request: the sum over containers, or the largest
 * init container when that is bigger (init containers run one at a time, before the others).
 */
export function podNeeds(pod: V1Pod): { cpu: number; memory: number; gpu: number } {
  const sum = { cpu: 0, memory: 0, gpu: 0 };
  for (const c of pod.spec?.containers ?? []) {
    const n = containerNeeds(c);
    sum.cpu += n.cpu;
    sum.memory += n.memory;
    sum.gpu += n.gpu;
  }
  for (const c of pod.spec?.initContainers ?? []) {
    const n = containerNeeds(c);
    sum.cpu = Math.max(sum.cpu, n.cpu);
    sum.memory = Math.max(sum.memory, n.memory);
    sum.gpu = Math.max(sum.gpu, n.gpu);
  }
  return sum;
}

/** The spec decision for a pod: a (vCPU, memory) pair, ECS instance types, or both (types first, pair as fallback). */
export interface SpecChoice {
  cpu?: number;
  memory?: number;
  /** Comma-separated ECS instance types for `InstanceType` (at most 5). */
  instanceType?: string;
}

const USE_SPECS = 'k8s.aliyun.com/eci-use-specs';

/**
 * Chooses the pod's spec. `k8s.aliyun.com/eci-use-specs` wins (`2-4Gi` pairs and `ecs.*` types, comma-separated;
 * ECI tries instance types in order); otherwise the pod's needs are rounded up to a spec, and a pod that states no
 * resources at all gets `defaultSpec` (ACK's default is 2 vCPU / 4 GiB). Problems are pushed to `causes`.
 */
export function chooseSpec(pod: V1Pod, defaultSpec: EciSpec, causes: PodSpecCause[]): SpecChoice {
  const annotation = pod.metadata?.annotations?.[USE_SPECS];
  const needs = podNeeds(pod);
  if (annotation !== undefined) {
    const path = `metadata.annotations['${USE_SPECS}']`;
    const types: string[] = [];
    let pair: EciSpec | undefined;
    for (const raw of annotation
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)Gi$/.exec(raw);
      if (m) {
        const spec = { cpu: Number(m[1]), memory: Number(m[2]) };
        if (!isValidSpec(spec))
          causes.push({
            path,
            message: `${raw} is not an ECI specification; see the vCPU/memory table in docs/eci.md`,
          });
        else pair ??= spec;
      } else if (/^ecs\.[a-z0-9-]+\.[a-z0-9-]+$/.test(raw)) types.push(raw);
      else
        causes.push({
          path,
          message: `${raw} is neither a <vCPU>-<memory>Gi specification nor an ecs.* instance type`,
        });
    }
    if (types.length > 5) causes.push({ path, message: `at most 5 instance types, got ${types.length}` });
    if (!pair && types.length === 0 && causes.length === 0)
      causes.push({ path, message: 'names no specification' });
    if (pair && (pair.cpu < needs.cpu || pair.memory < needs.memory)) {
      causes.push({
        path,
        message: `${pair.cpu}-${pair.memory}Gi is smaller than the containers need (${needs.cpu} vCPU, ${round(needs.memory)} GiB)`,
      });
    }
    return {
      ...(pair && { cpu: pair.cpu, memory: pair.memory }),
      ...(types.length > 0 && { instanceType: types.join(',') }),
    };
  }
  if (needs.gpu > 0) {
    causes.push({
      path: 'spec.containers[*].resources.limits[nvidia.com/gpu]',
      message: `GPUs need a GPU instance type: set the annotation ${USE_SPECS}, e.g. ecs.gn6i-c4g1.xlarge`,
    });
    return {};
  }
  if (needs.cpu === 0 && needs.memory === 0) return { ...defaultSpec };
  const spec = roundUpToSpec(needs.cpu, needs.memory);
  if (!spec) {
    const largest = ALL_SPECS[ALL_SPECS.length - 1]!;
    causes.push({
      path: 'spec.containers[*].resources',
      message:
        `the pod needs ${needs.cpu} vCPU and ${round(needs.memory)} GiB, more than the largest ECI specification ` +
        `(${largest.cpu} vCPU, ${largest.memory} GiB); lower the limits or name an instance type in ${USE_SPECS}`,
    });
    return {};
  }
  return { ...spec };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
