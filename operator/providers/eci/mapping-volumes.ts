/**
 * Pod volumes → ECI volumes. ECI has no ConfigMap/Secret volume type: their files (resolved by the pod
 * controller, ResolvedPodInputs.volumes) travel as a `ConfigFileVolume` with base64 contents, fixed at create.
 * emptyDir and NFS map one to one; what needs a node (hostPath) or a CSI driver ECI does not have is rejected.
 */
import type { V1Volume } from '@kubernetes/client-node';
import type { MaterialisedVolume } from '../types.ts';
import type { MappingSink } from './mapping-containers.ts';

/** An ECI volume, with the SDK's field names. */
export interface EciVolume {
  name: string;
  type: 'EmptyDirVolume' | 'ConfigFileVolume' | 'NFSVolume';
  emptyDirVolume?: { medium?: string; sizeLimit?: string };
  configFileVolume?: {
    defaultMode?: number;
    configFileToPath: { path: string; content: string; mode?: number }[];
  };
  NFSVolume?: { server: string; path: string; readOnly?: boolean };
}

/** The volume kinds whose files the pod controller materialises. */
const FILE_SOURCES = ['configMap', 'secret', 'downwardAPI', 'projected'] as const;

function defaultModeOf(v: V1Volume): number | undefined {
  return (
    v.configMap?.defaultMode ??
    v.secret?.defaultMode ??
    v.downwardAPI?.defaultMode ??
    v.projected?.defaultMode
  );
}

/** A ConfigFileVolume from materialised files (contents base64, as ECI wants them). */
export function configFileVolume(
  name: string,
  files: MaterialisedVolume['files'],
  defaultMode?: number,
): EciVolume {
  if (files.length === 0) return { name, type: 'EmptyDirVolume', emptyDirVolume: {} };
  return {
    name,
    type: 'ConfigFileVolume',
    configFileVolume: {
      ...(defaultMode !== undefined && { defaultMode }),
      configFileToPath: files.map((f) => ({
        path: f.path,
        content: f.content.toString('base64'),
        ...(f.mode !== undefined && { mode: f.mode }),
      })),
    },
  };
}

/**
 * Maps the pod's volumes. File volumes without materialised contents are a caller error (the pod controller
 * always resolves them before create), so they throw rather than becoming a spec problem.
 */
export function mapVolumes(
  volumes: V1Volume[] | undefined,
  materialised: Record<string, MaterialisedVolume> | undefined,
  sink: MappingSink,
): EciVolume[] {
  return (volumes ?? []).flatMap((v, i): EciVolume[] => {
    const path = `spec.volumes[${i}]`;
    if (v.emptyDir) {
      return [
        {
          name: v.name,
          type: 'EmptyDirVolume',
          emptyDirVolume: {
            ...(v.emptyDir.medium === 'Memory' && { medium: 'Memory' }),
            ...(v.emptyDir.sizeLimit && { sizeLimit: v.emptyDir.sizeLimit }),
          },
        },
      ];
    }
    if (FILE_SOURCES.some((k) => v[k] !== undefined)) {
      const files = materialised?.[v.name];
      if (!files) throw new Error(`volume ${v.name} (${path}) was not materialised before create`);
      return [configFileVolume(v.name, files.files, defaultModeOf(v))];
    }
    if (v.nfs) {
      return [
        {
          name: v.name,
          type: 'NFSVolume',
          NFSVolume: { server: v.nfs.server, path: v.nfs.path, ...(v.nfs.readOnly && { readOnly: true }) },
        },
      ];
    }
    if (v.hostPath) {
      sink.causes.push({
        path: `${path}.hostPath`,
        message: 'hostPath volumes cannot be used in a sandbox; use emptyDir or nfs',
      });
      return [];
    }
    if (v.persistentVolumeClaim) {
      sink.causes.push({
        path: `${path}.persistentVolumeClaim`,
        message: 'PersistentVolumeClaims are not supported by the ECI provider yet; use an nfs volume',
      });
      return [];
    }
    const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
    sink.causes.push({
      path: `${path}.${kind}`,
      message: `${kind} volumes are not supported on ECI; use emptyDir, configMap, secret, downwardAPI, projected or nfs`,
    });
    return [];
  });
}
