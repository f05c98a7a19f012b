/**
 * What the local provider can never run, read from the pod spec alone (operator/providers/rules.ts). These are
 * the refusals `create` makes (plan.ts `checkRunnable` calls {@link localUnsupported}), so that admission and
 * the provider never disagree.
 */
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import type { PodSpecCause } from '../errors.ts';

function containerCauses(
  c: V1Container,
  at: string,
  volumes: ReadonlySet<string>,
  causes: PodSpecCause[],
): void {
  if (!c.image)
    causes.push({ path: `${at}.image`, message: 'required: the local provider runs containers from images' });
  (c.volumeMounts ?? []).forEach((m, i) => {
    if (!volumes.has(m.name))
      causes.push({ path: `${at}.volumeMounts[${i}].name`, message: `no volume named "${m.name}"` });
    if (!m.mountPath.startsWith('/'))
      causes.push({ path: `${at}.volumeMounts[${i}].mountPath`, message: 'must be absolute' });
  });
}

/**
 * Every field of `spec` the local provider refuses whatever the inputs: a Windows pod, a container without an
 * image, a mount of a volume the pod lacks, a relative mount path.
 * @param base the path of `spec` in the object the user wrote
 */
export function localUnsupported(spec: V1PodSpec, base = 'spec'): PodSpecCause[] {
  const causes: PodSpecCause[] = [];
  // runc on this host's Linux kernel runs Linux containers only; a Windows image would fail to start.
  if (spec.os?.name === 'windows') {
    causes.push({
      path: `${base}.os.name`,
      message: 'the local provider runs Linux containers only: remove spec.os or set it to linux',
    });
  }
  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  (spec.initContainers ?? []).forEach((c, i) =>
    containerCauses(c, `${base}.initContainers[${i}]`, volumes, causes),
  );
  (spec.containers ?? []).forEach((c, i) => containerCauses(c, `${base}.containers[${i}]`, volumes, causes));
  return causes;
}
