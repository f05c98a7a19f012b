/**
 * Static refusal rules: what a provider can never run, decided from a pod spec alone (no I/O, no resolved
 * ConfigMaps or Secrets). The virtual node learns the same facts only when `create` throws InvalidPodSpecError;
 * these rules let the ElasticWorkload controller (which runs without any provider) read them off a unit's pod
 * template before it scales the unit, so that a template no sandbox can run is reported on the ElasticWorkload
 * (BurstBlocked) instead of turning into a stream of Failed pods. The node-side refusal stays as the backstop.
 */
import type { V1PodSpec } from '@kubernetes/client-node';
import { eciUnsupported } from './eci/rules.ts';
import type { PodSpecCause } from './errors.ts';
import { localUnsupported } from './local/rules.ts';

/**
 * A provider's static rules: every field of `spec` it can never run, with what to change; empty when it may
 * run. `base` is the path of `spec` in the object the user wrote (`spec` for a pod, `spec.template.spec` for a
 * Deployment), so that the causes name the field the user edits.
 */
export type PodSpecRules = (spec: V1PodSpec, base?: string) => PodSpecCause[];

/** The built-in providers' rules, by provider name (the node label `spillway.dev/provider`). */
const RULES: Readonly<Record<string, PodSpecRules>> = {
  local: localUnsupported,
  eci: eciUnsupported,
  // The fake provider runs any spec (tests inject refusals through FakeProviderOptions.refuse).
  fake: () => [],
};

/** The static rules of the provider `name`, or undefined for a provider this build does not know. */
export function providerRules(name: string): PodSpecRules | undefined {
  return Object.hasOwn(RULES, name) ? RULES[name] : undefined;
}
