/**
 * Refreshing the files of a running ECI instance (UpdateContainerGroup), as a kubelet's volume sync does: the
 * instance's volumes as DescribeContainerGroups shows them, the materialised volumes that replace some of
 * them, and whether the result is worth an update at all. An update puts the instance in `Updating`, so it is
 * sent only when a file really changed. A service-account token re-minted while the instance's token still
 * has more than half of its lifetime left is not a change (the kubelet renews at 80 %; half leaves room for a
 * refresh interval in between).
 */
import type { ContainerGroup } from './client.ts';
import type { EciVolume } from './mapping-volumes.ts';

/** The instance's volumes in the shape CreateContainerGroup and UpdateContainerGroup take. */
export function describedVolumes(group: ContainerGroup): EciVolume[] {
  return (group.volumes ?? []).flatMap((v): EciVolume[] => {
    const name = v.name ?? '';
    switch (v.type) {
      case 'ConfigFileVolume':
        return [
          {
            name,
            type: 'ConfigFileVolume',
            configFileVolume: {
              configFileToPath: (v.configFileVolumeConfigFileToPaths ?? []).map((f) => ({
                path: f.path ?? '',
                content: f.content ?? '',
              })),
            },
          },
        ];
      case 'EmptyDirVolume':
        return [
          {
            name,
            type: 'EmptyDirVolume',
            emptyDirVolume: {
              ...(v.emptyDirVolumeMedium && { medium: v.emptyDirVolumeMedium }),
              ...(v.emptyDirVolumeSizeLimit && { sizeLimit: v.emptyDirVolumeSizeLimit }),
            },
          },
        ];
      case 'NFSVolume':
        return [
          {
            name,
            type: 'NFSVolume',
            NFSVolume: {
              server: v.NFSVolumeServer ?? '',
              path: v.NFSVolumePath ?? '',
              ...(v.NFSVolumeReadOnly && { readOnly: true }),
            },
          },
        ];
      default:
        return [];
    }
  });
}

/** The `iat`/`exp` claims of a JWT given as base64 (how ECI holds file contents), if it is one. */
function tokenLifetime(base64: string): { iat: number; exp: number } | undefined {
  const parts = Buffer.from(base64, 'base64').toString().trim().split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as Record<string, unknown>;
    return typeof claims.iat === 'number' && typeof claims.exp === 'number'
      ? { iat: claims.iat, exp: claims.exp }
      : undefined;
  } catch {
    return undefined;
  }
}

/** True when `current` is a token with more than half of its lifetime left at `now`. */
export function tokenStillFresh(current: string, now = Date.now()): boolean {
  const t = tokenLifetime(current);
  if (!t || t.exp <= t.iat) return false;
  return t.exp * 1000 - now > ((t.exp - t.iat) * 1000) / 2;
}

function filesOf(v: EciVolume): Map<string, string> {
  return new Map((v.configFileVolume?.configFileToPath ?? []).map((f) => [f.path, f.content]));
}

/** Whether `next` differs from `current` by more than fresh tokens re-minted. */
function changed(current: EciVolume, next: EciVolume, now: number): boolean {
  if (current.type !== next.type) return true;
  if (next.type !== 'ConfigFileVolume') return false;
  const a = filesOf(current);
  const b = filesOf(next);
  if (a.size !== b.size) return true;
  for (const [path, content] of b) {
    const old = a.get(path);
    if (old === undefined) return true;
    if (old !== content && !(tokenLifetime(content) && tokenStillFresh(old, now))) return true;
  }
  return false;
}

/**
 * The instance's volumes with `replacements` (by name) swapped in, or undefined when no replacement changes
 * anything worth an update. Volumes not replaced, and replacements for volumes it does not have, are kept out
 * of the decision (an instance's set of volumes is fixed at create).
 */
export function updatedVolumes(
  current: EciVolume[],
  replacements: Record<string, EciVolume>,
  now = Date.now(),
): EciVolume[] | undefined {
  let any = false;
  const next = current.map((v) => {
    const r = replacements[v.name];
    if (!r || !changed(v, r, now)) return v;
    any = true;
    return r;
  });
  return any ? next : undefined;
}
