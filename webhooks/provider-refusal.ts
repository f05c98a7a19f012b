/**
 * Which providers would refuse a pod spec that may land on virtual nodes, by their static rules
 * (operator/providers/rules.ts). The validating webhook denies such a pod at admission, so that its ReplicaSet
 * backs off with FailedCreate instead of creating pods the virtual node can only fail; the ElasticWorkload
 * controller asks the same of a unit's template before it scales the unit.
 */
import type { V1Node, V1PodSpec } from '@kubernetes/client-node';
import type { PodSpecCause } from '../operator/providers/errors.ts';
import { providerRules, type PodSpecRules } from '../operator/providers/rules.ts';
import { PROVIDER_LABEL } from './contract.ts';
import { termMatches } from './node-match.ts';

/** A provider that refuses a pod spec, and the fields it names. */
export interface ProviderRefusal {
  provider: string;
  causes: PodSpecCause[];
}

/** Whether the nodeSelector and required node affinity of `spec` admit a node with these labels. */
function selects(spec: V1PodSpec, labels: Readonly<Record<string, string>>, name?: string): boolean {
  for (const [key, want] of Object.entries(spec.nodeSelector ?? {})) if (labels[key] !== want) return false;
  const terms =
    spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  return !terms || terms.some((t) => termMatches(t, labels, name));
}

/**
 * The refusal of `spec` by every provider of the virtual nodes its selectors admit, or undefined when one of them
 * may run it (or its rules are unknown to this build, or no virtual node is registered). The caller has already
 * decided that the pod goes to virtual nodes; taints are not checked here.
 * @param base the path of `spec` in the object the user wrote (`spec` for a pod, `spec.template.spec` for a
 *   Deployment), so that the causes name the field the user edits
 */
export function providerRefusal(
  spec: V1PodSpec,
  virtualNodes: readonly V1Node[],
  base: string,
  rulesOf: (provider: string) => PodSpecRules | undefined = providerRules,
): ProviderRefusal | undefined {
  const providers = new Set(
    virtualNodes
      .filter((n) => selects(spec, n.metadata?.labels ?? {}, n.metadata?.name))
      .map((n) => n.metadata?.labels?.[PROVIDER_LABEL] ?? ''),
  );
  let refusal: ProviderRefusal | undefined;
  for (const provider of providers) {
    const causes = provider ? rulesOf(provider)?.(spec, base) : undefined;
    // One provider that may run it (or whose rules are unknown) is enough: the pods may go there.
    if (!causes?.length) return undefined;
    refusal ??= { provider, causes };
  }
  return refusal;
}

/** `provider local cannot run spec.containers[0].command (…); …`, for a denial or a condition message. */
export function describeRefusal(refusal: ProviderRefusal): string {
  const causes = refusal.causes.map((c) => `${c.path}: ${c.message}`).join('; ');
  return `provider ${refusal.provider} cannot run it: ${causes}`;
}
