/**
 * A raw JSON request to the apiserver, for the few objects client-node's typed serializer would change:
 * it maps CRD schema keys such as `x-kubernetes-validations` to camelCase model fields and silently drops
 * those it finds under their real names, so a CRD must be sent as the JSON it is.
 */
import { request } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** An apiserver answer other than 2xx: the Status message, with the HTTP code. */
export class RawApiError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** Sends `body` as JSON with `contentType` and resolves with the parsed answer. */
export async function rawRequest(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<unknown> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('kubeconfig has no current cluster');
  const url = new URL(path, server);
  const options: import('node:https').RequestOptions = {
    method,
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { 'Content-Type': contentType, Accept: 'application/json' },
  };
  await kc.applyToHTTPSOptions(options);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        const parsed = text ? (JSON.parse(text) as { message?: string }) : {};
        if ((res.statusCode ?? 500) >= 300)
          reject(new RawApiError(res.statusCode ?? 500, parsed.message ?? text));
        else resolve(parsed);
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Server-side applies a cluster-scoped or namespaced object as raw JSON (force, with `fieldManager`). */
export function applyRaw(
  kc: KubeConfig,
  collectionPath: string,
  obj: { metadata: { name: string } },
  fieldManager: string,
): Promise<unknown> {
  const path = `${collectionPath}/${encodeURIComponent(obj.metadata.name)}?fieldManager=${encodeURIComponent(fieldManager)}&force=true`;
  return rawRequest(kc, 'PATCH', path, obj, 'application/apply-patch+yaml');
}
