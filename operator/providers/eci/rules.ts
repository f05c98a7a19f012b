/**
 * What ECI can never run, read from the pod spec alone (operator/providers/rules.ts): the refusals of
 * podToContainerGroup (mapping.ts) that depend neither on the provider config nor on resolved inputs.
 */
import type { V1PodSpec } from '@kubernetes/client-node';
import type { PodSpecCause } from '../errors.ts';

/**
 * Every field of `spec` ECI refuses whatever the config: a Windows pod, a native sidecar (an init container with
 * restartPolicy Always).
 * @param base the path of `spec` in the object the user wrote
 */
export function eciUnsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
  const causes: PodSpecCause[] = [];
  if (spec.os?.name === 'windows')
    causes.push({ path: `${base}.os.name`, message: 'the ECI provider runs Linux pods only' });
  (spec.initContainers ?? []).forEach((c, i) => {
    if (c.restartPolicy === 'Always') {
      causes.push({
        path: `${base}.initContainers[${i}].restartPolicy`,
        message: `native sidecars are not supported on ECI; move ${c.name} to spec.containers`,
      });
    }
  });
  return causes;
}
