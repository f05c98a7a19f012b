import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { EciConfigInput } from './config.ts';
import { podToContainerGroup, type ContainerGroupSpec, type EciPodInputs } from './mapping.ts';
import { config, pod, res } from './mapping.fixtures.ts';

describe('podToContainerGroup: what a pod becomes', () => {
  it('maps a minimal pod to a tagged, idempotent request on every configured vSwitch with cluster DNS', () => {
    const { spec, capacityType, warnings } = podToContainerGroup(pod(), {}, config());
    expect(spec).toMatchObject({
      containerGroupName: 'shop-web-1',
      clientToken: 'spillway-0b6f2c9e-1111-2222-3333-444455556666',
      securityGroupId: 'sg-1',
      vSwitchId: 'vsw-a,vsw-b',
      scheduleStrategy: 'VSwitchOrdered',
      restartPolicy: 'Always',
      cpu: 2,
      memory: 4,
      hostName: 'web-1',
      dnsConfig: {
        nameServer: ['10.96.0.10'],
        search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
        option: [{ name: 'ndots', value: '5' }],
      },
      container: [{ name: 'app', image: 'nginx:1.27', environmentVar: [] }],
    });
    expect(spec.tag).toEqual([
      { key: 'spillway.dev/cluster', value: 'c1' },
      { key: 'spillway.dev/node', value: 'vn-eci' },
      { key: 'spillway.dev/namespace', value: 'shop' },
      { key: 'spillway.dev/pod', value: 'web-1' },
      { key: 'spillway.dev/uid', value: '0b6f2c9e-1111-2222-3333-444455556666' },
    ]);
    expect(capacityType).toBe('on-demand');
    expect(spec.spotStrategy).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it.each<[string, V1Pod, EciPodInputs, Partial<EciConfigInput>, Partial<ContainerGroupSpec>]>([
    [
      'rounds the summed limits up to the next ECI spec',
      pod([res('300m', '600Mi'), res('1', '1Gi')]),
      {},
      {},
      { cpu: 2, memory: 2 },
    ],
    [
      'sizes for the largest init container when it needs more than the containers',
      pod([res('250m', '512Mi')], {
        spec: { initContainers: [{ name: 'migrate', image: 'm', ...res('4', '8Gi') }] },
      }),
      {},
      {},
      { cpu: 4, memory: 8 },
    ],
    [
      'honours k8s.aliyun.com/eci-use-specs with a spec and instance types',
      pod([{}], { annotations: { 'k8s.aliyun.com/eci-use-specs': '4-8Gi, ecs.c6.xlarge' } }),
      {},
      {},
      { cpu: 4, memory: 8, instanceType: 'ecs.c6.xlarge' },
    ],
    [
      'spillway.dev/capacity: spot bids the market price by default',
      pod([{}], { labels: { 'spillway.dev/capacity': 'spot' } }),
      {},
      {},
      { spotStrategy: 'SpotAsPriceGo' },
    ],
    [
      'spot with a price limit and a protected hour from ACK annotations',
      pod([{}], {
        labels: { 'spillway.dev/capacity': 'spot' },
        annotations: {
          'k8s.aliyun.com/eci-spot-strategy': 'SpotWithPriceLimit',
          'k8s.aliyun.com/eci-spot-price-limit': '0.25',
          'k8s.aliyun.com/eci-spot-duration': '1',
        },
      }),
      {},
      {},
      { spotStrategy: 'SpotWithPriceLimit', spotPriceLimit: 0.25, spotDuration: 1 },
    ],
    [
      'spot defaults from the configuration',
      pod([{}], { labels: { 'spillway.dev/capacity': 'spot' } }),
      {},
      { spot: { strategy: 'SpotWithPriceLimit', priceLimit: 0.1, durationHours: 0 } },
      { spotStrategy: 'SpotWithPriceLimit', spotPriceLimit: 0.1, spotDuration: 0 },
    ],
    [
      'resolved env in order, with status.podIP left to ECI',
      pod([
        {
          env: [
            { name: 'MODE', value: 'x' },
            { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          ],
        },
      ]),
      {
        env: {
          app: [
            { name: 'FROM_CM', value: 'cm' },
            { name: 'MODE', value: 'x' },
            { name: 'MY_IP', value: '' },
          ],
        },
      },
      {},
      {
        container: [
          {
            name: 'app',
            image: 'nginx:1.27',
            environmentVar: [
              { key: 'FROM_CM', value: 'cm' },
              { key: 'MODE', value: 'x' },
              { key: 'MY_IP', fieldRef: { fieldPath: 'status.podIP' } },
            ],
          },
        ],
      },
    ],
    [
      'command, args, workingDir, ports, probes by port name, capabilities and the pod-level user',
      pod(
        [
          {
            command: ['/bin/server'],
            args: ['--port', '8080'],
            workingDir: '/srv',
            ports: [
              { name: 'http', containerPort: 8080 },
              { containerPort: 53, protocol: 'UDP' },
            ],
            readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 5 },
            livenessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 10 },
            securityContext: { capabilities: { add: ['NET_ADMIN'] } },
          },
        ],
        { spec: { securityContext: { runAsUser: 1000, runAsGroup: 2000 } } },
      ),
      {},
      {},
      {
        container: [
          {
            name: 'app',
            image: 'nginx:1.27',
            command: ['/bin/server'],
            arg: ['--port', '8080'],
            workingDir: '/srv',
            environmentVar: [],
            port: [
              { port: 8080, protocol: 'TCP' },
              { port: 53, protocol: 'UDP' },
            ],
            readinessProbe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 5 },
            livenessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 10 },
            securityContext: { capability: { add: ['NET_ADMIN'] }, runAsUser: 1000 },
            securityContextRunAsGroup: 2000,
          },
        ],
      },
    ],
    [
      'emptyDir, configMap as a config-file volume (base64), and NFS',
      pod([{ volumeMounts: [{ name: 'conf', mountPath: '/etc/app', readOnly: true }] }], {
        spec: {
          volumes: [
            { name: 'scratch', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
            { name: 'conf', configMap: { name: 'app', defaultMode: 0o644 } },
            { name: 'share', nfs: { server: 'nas.example', path: '/data', readOnly: true } },
          ],
        },
      }),
      { volumes: { conf: { files: [{ path: 'app.yaml', content: Buffer.from('a: 1\n') }] } } },
      {},
      {
        volume: [
          {
            name: 'scratch',
            type: 'EmptyDirVolume',
            emptyDirVolume: { medium: 'Memory', sizeLimit: '64Mi' },
          },
          {
            name: 'conf',
            type: 'ConfigFileVolume',
            configFileVolume: {
              defaultMode: 0o644,
              configFileToPath: [{ path: 'app.yaml', content: 'YTogMQo=' }],
            },
          },
          {
            name: 'share',
            type: 'NFSVolume',
            NFSVolume: { server: 'nas.example', path: '/data', readOnly: true },
          },
        ],
      },
    ],
    [
      'dnsPolicy None with the pod dnsConfig, hostAliases, restart policy and grace period',
      pod([{}], {
        spec: {
          dnsPolicy: 'None',
          dnsConfig: {
            nameservers: ['1.1.1.1'],
            searches: ['example.com'],
            options: [{ name: 'ndots', value: '2' }],
          },
          hostAliases: [{ ip: '10.0.0.5', hostnames: ['db', 'db.local'] }],
          restartPolicy: 'OnFailure',
          terminationGracePeriodSeconds: 45,
        },
      }),
      {},
      {},
      {
        dnsConfig: {
          nameServer: ['1.1.1.1'],
          search: ['example.com'],
          option: [{ name: 'ndots', value: '2' }],
        },
        hostAliase: [{ ip: '10.0.0.5', hostname: ['db', 'db.local'] }],
        restartPolicy: 'OnFailure',
        terminationGracePeriodSeconds: 45,
      },
    ],
    [
      'image pull secrets become registry credentials',
      pod([{}], { spec: { imagePullSecrets: [{ name: 'regcred' }] } }),
      {
        imagePullSecrets: {
          regcred: Buffer.from(
            JSON.stringify({
              auths: {
                'https://registry.example/v2/': { auth: Buffer.from('bob:pa:ss').toString('base64') },
              },
            }),
          ),
        },
      },
      {},
      { imageRegistryCredential: [{ server: 'registry.example', userName: 'bob', password: 'pa:ss' }] },
    ],
    [
      'ACK placement annotations override the configured vSwitches and security group',
      pod([{}], {
        annotations: {
          'k8s.aliyun.com/eci-vswitch': 'vsw-z',
          'k8s.aliyun.com/eci-security-group': 'sg-z',
          'k8s.aliyun.com/eci-image-cache': 'true',
          'k8s.aliyun.com/eci-extra-ephemeral-storage': '50Gi',
        },
      }),
      {},
      {},
      { vSwitchId: 'vsw-z', securityGroupId: 'sg-z', autoMatchImageCache: true, ephemeralStorage: 50 },
    ],
  ])('%s', (_name, p, inputs, over, expected) => {
    expect(podToContainerGroup(p, inputs, config(over)).spec).toMatchObject(expected);
  });

  it('adds the kube-proxy sidecar with its kubeconfig when enabled, unless the pod opts out', () => {
    const cfg = config({ kubeProxy: { enabled: true, image: 'kp:1', kubeconfig: 'apiVersion: v1\n' } });
    const { spec } = podToContainerGroup(pod(), {}, cfg);
    expect(spec.container.map((c) => c.name)).toEqual(['app', 'spillway-kube-proxy']);
    expect(spec.container[1]).toMatchObject({
      image: 'kp:1',
      command: ['kube-proxy'],
      securityContext: { capability: { add: ['NET_ADMIN', 'NET_RAW'] } },
    });
    expect(spec.container[1]!.arg).toContain('--hostname-override=vn-eci');
    expect(spec.volume).toEqual([
      {
        name: 'spillway-kube-proxy',
        type: 'ConfigFileVolume',
        configFileVolume: {
          configFileToPath: [
            { path: 'kubeconfig', content: Buffer.from('apiVersion: v1\n').toString('base64'), mode: 0o400 },
          ],
        },
      },
    ]);
    const optedOut = podToContainerGroup(
      pod([{}], { annotations: { 'spillway.dev/kube-proxy': 'false' } }),
      {},
      cfg,
    );
    expect(optedOut.spec.container.map((c) => c.name)).toEqual(['app']);
  });
});
