/**
 * Realistic AdmissionReviews for the webhook benchmark: what the apiserver sends when a ReplicaSet controller
 * creates a pod of a Deployment — generateName, owner reference, pod-template-hash, the service-account token
 * volume the ServiceAccount admission plugin has already added, ~20 env vars, probes, resources, affinities and
 * spillway's burst labels.
 */
import { randomUUID } from 'node:crypto';

/** One pod as the apiserver holds it at admission time (before defaults that webhooks do not see are added). */
export function deploymentPod(i: number, burst: 'overflow' | 'always', namespace: string): object {
  const app = `shop-${i % 7}`;
  const hash = `7d9f8c${(100 + i).toString(16)}b`;
  const env = Array.from({ length: 20 }, (_, k) =>
    k % 5 === 4
      ? { name: `SECRET_${k}`, valueFrom: { secretKeyRef: { name: `${app}-secrets`, key: `key-${k}` } } }
      : k % 5 === 3
        ? { name: `POD_IP_${k}`, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } }
        : { name: `SETTING_${k}`, value: `value-${k}-${'x'.repeat(k * 3)}` },
  );
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      generateName: `${app}-${hash}-`,
      namespace,
      uid: randomUUID(),
      creationTimestamp: null,
      labels: {
        app,
        'app.kubernetes.io/name': app,
        'app.kubernetes.io/part-of': 'shop',
        'pod-template-hash': hash,
        'spillway.dev/burst': burst,
        ...(i % 2 === 0 ? { 'spillway.dev/capacity': 'spot' } : {}),
      },
      annotations: {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
        'kubectl.kubernetes.io/restartedAt': '2026-01-01T00:00:00Z',
      },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `${app}-${hash}`,
          uid: randomUUID(),
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: [
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          apiVersion: 'v1',
          time: '2026-01-01T00:00:00Z',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {} } } },
        },
      ],
    },
    spec: {
      volumes: [
        { name: 'config', configMap: { name: `${app}-config`, defaultMode: 420 } },
        { name: 'cache', emptyDir: { sizeLimit: '1Gi' } },
        {
          name: 'kube-api-access-abcde',
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              {
                downwardAPI: {
                  items: [
                    { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
                  ],
                },
              },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        {
          name: 'app',
          image: `registry.example.com/shop/${app}:1.${i % 10}.0`,
          ports: [
            { name: 'http', containerPort: 8080, protocol: 'TCP' },
            { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
          ],
          env,
          resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
          volumeMounts: [
            { name: 'config', mountPath: '/etc/app' },
            { name: 'cache', mountPath: '/var/cache/app' },
            {
              name: 'kube-api-access-abcde',
              readOnly: true,
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
          livenessProbe: {
            httpGet: { path: '/healthz', port: 'http', scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          readinessProbe: {
            httpGet: { path: '/ready', port: 'http', scheme: 'HTTP' },
            periodSeconds: 5,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
          securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false },
        },
        {
          name: 'proxy',
          image: 'registry.example.com/mesh/proxy:2.1.0',
          args: ['--listen=:15001', '--upstream=127.0.0.1:8080'],
          resources: { requests: { cpu: '50m', memory: '64Mi' } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      securityContext: { fsGroup: 2000 },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              {
                matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64', 'arm64'] }],
              },
            ],
          },
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 50,
              preference: { matchExpressions: [{ key: 'node-pool', operator: 'In', values: ['general'] }] },
            },
          ],
        },
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 100,
              podAffinityTerm: {
                labelSelector: { matchLabels: { app } },
                topologyKey: 'kubernetes.io/hostname',
              },
            },
          ],
        },
      },
      schedulerName: 'default-scheduler',
      tolerations: [
        {
          key: 'node.kubernetes.io/not-ready',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
        {
          key: 'node.kubernetes.io/unreachable',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {},
  };
}

/** The AdmissionReview the apiserver POSTs for a pod CREATE. */
export function podCreateReview(pod: object, namespace: string): object {
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: randomUUID(),
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}
