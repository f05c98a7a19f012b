/**
 * What the local provider can never run, read from the pod spec alone (operator/providers/rules.ts). These are
 * the refusals `planSandbox` (plan.ts) makes that need no resolved inputs; plan.ts can call
 * {@link localUnsupported} instead of repeating them, so that the two never disagree.
 */
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import type { PodSpecCause } from '../errors.ts';

/** Why a container without command cannot run here (the same words as plan.ts). */
export const NO_COMMAND_MESSAGE =
  'the local provider does not pull images, so it cannot run an image entrypoint: set command (it runs on the host filesystem)';

function containerCauses(
  c: V1Container,
  at: string,
  volumes: ReadonlySet<string>,
  causes: PodSpecCause[],
): void {
  if ((c.command ?? []).length + (c.args ?? []).length === 0) {
    causes.push({ path: `${at}.command`, message: NO_COMMAND_MESSAGE });
  }
  (c.volumeMounts ?? []).forEach((m, i) => {
    if (!volumes.has(m.name))
      causes.push({ path: `${at}.volumeMounts[${i}].name`, message: `no volume named "${m.name}"` });
    if (!m.mountPath.startsWith('/'))
      causes.push({ path: `${at}.volumeMounts[${i}].mountPath`, message: 'must be absolute' });
  });
}

/**
 * Every field of `spec` the local provider refuses whatever the inputs: a container with neither command nor
 * args (no image entrypoint without images), a mount of a volume the pod lacks, a relative mount path.
 * @param base the path of `spec` in the object the user wrote
 */
export function localUnsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
  const causes: PodSpecCause[] = [];
  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  (spec.initContainers ?? []).forEach((c, i) =>
    containerCauses(c, `${base}.initContainers[${i}]`, volumes, causes),
  );
  (spec.containers ?? []).forEach((c, i) => containerCauses(c, `${base}.containers[${i}]`, volumes, causes));
  return causes;
}
