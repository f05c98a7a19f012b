import { KubernetesObjectApi, type V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { apiErrorMessage, isApiError } from './client.ts';
import { applyBody, applyObject, applyStatus } from './apply.ts';
import {
  recordingConfiguration,
  statusBody,
  type FakeResponse,
  type RecordedRequest,
} from './recording-http.ts';

/** Discovery answers for the two API groups the tests use; everything else echoes the patch back. */
function respond(req: RecordedRequest): FakeResponse {
  if (req.method === 'GET' && req.url.pathname === '/api/v1') {
    return {
      status: 200,
      body: {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [{ name: 'configmaps', kind: 'ConfigMap', namespaced: true, singularName: '', verbs: [] }],
      },
    };
  }
  if (req.method === 'GET' && req.url.pathname === '/apis/elastic.spillway.dev/v1alpha1') {
    return {
      status: 200,
      body: {
        kind: 'APIResourceList',
        groupVersion: 'elastic.spillway.dev/v1alpha1',
        resources: [
          {
            name: 'elasticworkloads',
            kind: 'ElasticWorkload',
            namespaced: true,
            singularName: '',
            verbs: [],
          },
          {
            name: 'elasticworkloads/status',
            kind: 'ElasticWorkload',
            namespaced: true,
            singularName: '',
            verbs: [],
          },
        ],
      },
    };
  }
  const body = JSON.parse(req.body!) as { metadata: Record<string, unknown> };
  return { status: 200, body: { ...body, metadata: { ...body.metadata, resourceVersion: '42' } } };
}

function setup(responder: (req: RecordedRequest) => FakeResponse = respond) {
  const { configuration, requests } = recordingConfiguration(responder);
  const api = new KubernetesObjectApi(configuration);
  const patches = () => requests.filter((r) => r.method === 'PATCH');
  return { api, requests, patches };
}

const configMap = (): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: {
    name: 'web',
    namespace: 'team-a',
    labels: { app: 'web' },
    resourceVersion: '7',
    uid: '0b1e',
    creationTimestamp: new Date('2030-01-01T00:00:00Z'),
    managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
  },
  data: { key: 'value' },
});

const elasticWorkload = {
  apiVersion: 'elastic.spillway.dev/v1alpha1',
  kind: 'ElasticWorkload',
  metadata: { name: 'web', namespace: 'team-a' },
  spec: { replicas: 10, elasticUnit: [{ name: 'spot', max: 4 }] },
  status: { replicas: 10, sourceTarget: { desiredReplicas: 4 } },
};

describe('applyObject', () => {
  it('sends an apply patch with the field manager and force, without server-owned metadata', async () => {
    const { api, patches } = setup();
    const stored = await applyObject(api, configMap(), { fieldManager: 'spillway-test' });
    const [patch] = patches();
    expect(patch!.url.pathname).toBe('/api/v1/namespaces/team-a/configmaps/web');
    expect(Object.fromEntries(patch!.url.searchParams)).toEqual({
      fieldManager: 'spillway-test',
      force: 'true',
    });
    expect(patch!.headers['Content-Type']).toBe('application/apply-patch+yaml');
    expect(JSON.parse(patch!.body!)).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'web', namespace: 'team-a', labels: { app: 'web' } },
      data: { key: 'value' },
    });
    expect(stored.metadata?.resourceVersion).toBe('42');
  });

  it('keeps every field of a custom resource (no typed model to drop them)', async () => {
    const { api, patches } = setup();
    await applyObject(api, elasticWorkload, { fieldManager: 'spillway-test', force: false, dryRun: true });
    const [patch] = patches();
    expect(patch!.url.pathname).toBe(
      '/apis/elastic.spillway.dev/v1alpha1/namespaces/team-a/elasticworkloads/web',
    );
    expect(Object.fromEntries(patch!.url.searchParams)).toEqual({
      fieldManager: 'spillway-test',
      force: 'false',
      dryRun: 'All',
    });
    expect(JSON.parse(patch!.body!)).toEqual(elasticWorkload);
  });

  it('leaves the caller’s object untouched', async () => {
    const { api } = setup();
    const obj = configMap();
    const before = structuredClone(obj);
    await applyObject(api, obj, { fieldManager: 'spillway-test' });
    expect(obj).toEqual(before);
  });

  it('surfaces the apiserver’s message on a conflict', async () => {
    const { api } = setup((req) =>
      req.method === 'PATCH'
        ? statusBody(409, 'Conflict', 'Apply failed with 1 conflict: conflict with "kubectl": .data.key')
        : respond(req),
    );
    const err = await applyObject(api, configMap(), { fieldManager: 'spillway-test', force: false }).catch(
      (e) => e,
    );
    expect(isApiError(err, 409)).toBe(true);
    expect(apiErrorMessage(err)).toBe(
      'Apply failed with 1 conflict: conflict with "kubectl": .data.key (HTTP 409)',
    );
  });
});

describe('applyStatus', () => {
  it('applies only the status, to the status subresource', async () => {
    const { api, patches, requests } = setup();
    await applyStatus(api, elasticWorkload, { fieldManager: 'spillway-status' });
    const [patch] = patches();
    expect(patch!.url.pathname).toBe(
      '/apis/elastic.spillway.dev/v1alpha1/namespaces/team-a/elasticworkloads/web/status',
    );
    expect(patch!.headers['Content-Type']).toBe('application/apply-patch+yaml');
    expect(JSON.parse(patch!.body!)).toEqual({
      apiVersion: 'elastic.spillway.dev/v1alpha1',
      kind: 'ElasticWorkload',
      metadata: { name: 'web', namespace: 'team-a' },
      status: { replicas: 10, sourceTarget: { desiredReplicas: 4 } },
    });
    // Discovery still goes to the group, not to a /status path.
    expect(requests[0]!.url.pathname).toBe('/apis/elastic.spillway.dev/v1alpha1');
  });

  it('does not leak the /status path into later plain applies', async () => {
    const { api, patches } = setup();
    await applyStatus(api, elasticWorkload, { fieldManager: 'spillway-status' });
    await applyObject(api, elasticWorkload, { fieldManager: 'spillway-test' });
    expect(patches().map((p) => p.url.pathname.endsWith('/status'))).toEqual([true, false]);
  });
});

describe('applyBody', () => {
  it.each([
    ['no kind', { apiVersion: 'v1', metadata: { name: 'x' } }],
    ['no name', { apiVersion: 'v1', kind: 'ConfigMap', metadata: {} }],
  ])('refuses an object with %s', (_name, obj) => {
    expect(() => applyBody(obj)).toThrow('server-side apply needs apiVersion, kind and metadata.name');
  });
});
