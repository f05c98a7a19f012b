/**
 * Which providers would refuse a pod spec that may land on virtual nodes, by their static rules
 * (rules.ts). The validating webhook denies such a pod at admission, so that its ReplicaSet
 * backs off with FailedCreate instead of creating pods the virtual node can only fail; the ElasticWorkload
 * controller asks the same of a unit's template before it scales the unit.
 */
import type { V1Node, V1PodSpec } from '@kubernetes/client-node';
import { PROVIDER_LABEL } from '../../api/labels.ts';
import { selectorsAdmit } from '../../api/node-match.ts';
import type { PodSpecCause } from './errors.ts';
import { providerRules, type PodSpecRules } from './rules.ts';

/** A provider that refuses a pod spec, and the fields it names. */
export interface ProviderRefusal {
  provider: string;
  causes: PodSpecCause[];
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
      .filter((n) => selectorsAdmit(spec, n.metadata?.labels ?? {}, n.metadata?.name))
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
