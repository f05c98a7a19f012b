/**
 * What a sandbox cannot run (docs/architecture.md#what-a-sandbox-cannot-run). One function, used by the validating webhook, the
 * ElasticWorkload controller (BurstBlocked) and the virtual node (UnsupportedPodSpec), so that all three
 * name the same fields with the same words.
 */
import type { V1OwnerReference, V1PodSpec } from '@kubernetes/client-node';

/** One feature a sandbox cannot run: where it is, and what to do instead. */
export interface SandboxViolation {
  /** JSON-path-like location, e.g. `spec.containers[0].securityContext.privileged`. */
  path: string;
  /** What is wrong and what to change, in words a user can act on. */
  message: string;
}

/**
 * Lists every feature in `spec` that a sandboxed instance cannot run, in a stable order.
 * @param spec a pod spec (of a pod, or of a workload's pod template)
 * @param ownerReferences the pod's owners: a DaemonSet-owned pod is a violation
 * @param base the path of `spec` in the object the user wrote (`spec` for a pod, `spec.template.spec` for a Deployment)
 */
export function sandboxViolations(
  spec: V1PodSpec | undefined,
  ownerReferences: V1OwnerReference[] = [],
  base = 'spec',
): SandboxViolation[] {
  const out: SandboxViolation[] = [];
  for (const ref of ownerReferences) {
    if (ref.kind === 'DaemonSet' && ref.apiVersion?.startsWith('apps/')) {
      out.push({
        path: 'metadata.ownerReferences',
        message: `owned by DaemonSet ${ref.name}: DaemonSet pods run on every real node and never on a virtual node`,
      });
    }
  }
  if (!spec) return out;
  const hostFlags = [
    ['hostNetwork', 'remove hostNetwork; reach the pod through a Service instead'],
    ['hostPID', 'remove hostPID; a sandbox has its own process namespace'],
    ['hostIPC', 'remove hostIPC; a sandbox has its own IPC namespace'],
  ] as const;
  for (const [field, fix] of hostFlags) {
    if (spec[field])
      out.push({ path: `${base}.${field}`, message: `${field} is not supported in a sandbox: ${fix}` });
  }
  (spec.volumes ?? []).forEach((v, i) => {
    if (v.hostPath) {
      out.push({
        path: `${base}.volumes[${i}].hostPath`,
        message: `hostPath volume "${v.name}" is not supported in a sandbox: use emptyDir, a configMap/secret or a persistent volume`,
      });
    }
  });
  const groups = [
    ['initContainers', spec.initContainers],
    ['containers', spec.containers],
    ['ephemeralContainers', spec.ephemeralContainers],
  ] as const;
  for (const [group, containers] of groups) {
    (containers ?? []).forEach((c, i) => {
      const at = `${base}.${group}[${i}]`;
      if (c.securityContext?.privileged) {
        out.push({
          path: `${at}.securityContext.privileged`,
          message: `container "${c.name}" is privileged, which a sandbox cannot run: drop privileged and add only the capabilities it needs`,
        });
      }
      (c.ports ?? []).forEach((p, j) => {
        if (p.hostPort) {
          out.push({
            path: `${at}.ports[${j}].hostPort`,
            message: `container "${c.name}" asks for hostPort ${p.hostPort}, which a sandbox cannot bind: remove hostPort and expose the port through a Service`,
          });
        }
      });
    });
  }
  return out;
}

/** One line per violation, `path: message`, for conditions, Events and admission denials. */
export function describeViolations(violations: SandboxViolation[]): string {
  return violations.map((v) => `${v.path}: ${v.message}`).join('; ');
}
