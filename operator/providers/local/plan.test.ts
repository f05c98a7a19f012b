import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isInvalidPodSpec } from '../types.ts';
import {
  bytes,
  checkRunnable,
  containerConfig,
  ContainerConfigError,
  dnsConfig,
  hostsFile,
  linuxResources,
  milliCPU,
  sandboxConfig,
  type PodPaths,
} from './plan.ts';

const dns = {
  nameserver: '10.96.0.10',
  domain: 'cluster.local',
  hostResolvConf: 'nameserver 1.2.3.4\nsearch corp.example\n',
};
const key = { uid: 'u1', namespace: 'shop', name: 'web-1' };
const pod = (spec: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { uid: 'u1', namespace: 'shop', name: 'web-1', labels: { app: 'web' } },
  spec: { containers: [{ name: 'app', image: 'localhost:5000/spillway/busybox:1' }], ...spec },
});
const paths: PodPaths = {
  volume: (n) => `/state/pod/volumes/${n}`,
  hosts: '/state/pod/etc/hosts',
  terminationMessage: (c, a) => `/state/pod/termination/${c}/${a}`,
  logDirectory: '/state/pod/logs',
};
const config = (c: Partial<V1Container>, spec: Partial<V1Pod['spec']> = {}, attempt = 0) => {
  const container = { name: 'app', image: 'busybox:1', ...c };
  return containerConfig(
    key,
    pod({ containers: [container], ...spec }),
    container,
    attempt,
    {},
    'node-a',
    paths,
  );
};

describe('dnsConfig', () => {
  it.each([
    [
      'ClusterFirst',
      {},
      {
        servers: ['10.96.0.10'],
        searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
        options: ['ndots:5'],
      },
    ],
    ['Default', {}, { servers: ['1.2.3.4'], searches: ['corp.example'], options: [] }],
    [
      'None',
      {
        nameservers: ['9.9.9.9'],
        searches: ['a.b'],
        options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }],
      },
      { servers: ['9.9.9.9'], searches: ['a.b'], options: ['ndots:2', 'edns0'] },
    ],
    [
      'ClusterFirst',
      { options: [{ name: 'ndots', value: '1' }] },
      {
        servers: ['10.96.0.10'],
        searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
        options: ['ndots:1'],
      },
    ],
  ])('%s with dnsConfig %j', (dnsPolicy, dnsConfigSpec, expected) => {
    expect(dnsConfig(pod({ dnsPolicy, dnsConfig: dnsConfigSpec }), dns)).toEqual(expected);
  });
});

describe('sandboxConfig', () => {
  it('labels the sandbox with the node and the pod UID, names it like the kubelet, and logs under the pod directory', () => {
    const c = sandboxConfig(key, pod({ hostname: 'front' }), 'node-a', dns, '/state/pod/logs');
    expect(c.metadata).toEqual({ name: 'web-1', uid: 'u1', namespace: 'shop', attempt: 0 });
    expect(c.labels).toMatchObject({
      app: 'web',
      'spillway.dev/node': 'node-a',
      'io.kubernetes.pod.uid': 'u1',
      'io.kubernetes.pod.name': 'web-1',
      'io.kubernetes.pod.namespace': 'shop',
    });
    expect(c.hostname).toBe('front');
    expect(c.log_directory).toBe('/state/pod/logs');
    expect(c.dns_config?.servers).toEqual(['10.96.0.10']);
    expect(c.linux?.security_context?.seccomp).toEqual({ profile_type: 'RuntimeDefault' });
  });

  it('maps host ports only, and the pod security context', () => {
    const c = sandboxConfig(
      key,
      pod({
        containers: [
          {
            name: 'app',
            image: 'x',
            ports: [{ containerPort: 80 }, { containerPort: 53, hostPort: 5353, protocol: 'UDP' }],
          },
        ],
        securityContext: {
          runAsUser: 1000,
          fsGroup: 2000,
          sysctls: [{ name: 'net.ipv4.ip_local_port_range', value: '1024 65535' }],
        },
        shareProcessNamespace: true,
      }),
      'node-a',
      dns,
      '/l',
    );
    expect(c.port_mappings).toEqual([{ protocol: 'UDP', container_port: 53, host_port: 5353, host_ip: '' }]);
    expect(c.linux?.security_context).toMatchObject({
      run_as_user: { value: 1000 },
      supplemental_groups: [2000],
      namespace_options: { pid: 'POD' },
    });
    expect(c.linux?.sysctls).toEqual({ 'net.ipv4.ip_local_port_range': '1024 65535' });
  });
});

describe('containerConfig', () => {
  it('passes command and args as written, so the runtime applies them over the image Entrypoint and Cmd', () => {
    expect(config({})).not.toHaveProperty('command');
    expect(config({})).not.toHaveProperty('args');
    expect(config({ args: ['-p', '80'] })).toMatchObject({ args: ['-p', '80'] });
    expect(config({ args: ['-p', '80'] })).not.toHaveProperty('command');
    expect(config({ command: ['sh', '-c'], args: ['echo hi'] })).toMatchObject({
      command: ['sh', '-c'],
      args: ['echo hi'],
    });
  });

  it('names the attempt and its log file as the kubelet does', () => {
    const c = config({}, {}, 3);
    expect(c.metadata).toEqual({ name: 'app', attempt: 3 });
    expect(c.log_path).toBe('app/3.log');
    expect(c.labels).toMatchObject({ 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.uid': 'u1' });
  });

  it("sets the downward API's status.podIP and status.podIPs from the sandbox's addresses", () => {
    const container: V1Container = {
      name: 'app',
      image: 'x',
      env: [
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'IPS', valueFrom: { fieldRef: { fieldPath: 'status.podIPs' } } },
        { name: 'OTHER', value: 'kept' },
      ],
    };
    // Resolved before the sandbox existed: the addresses were still empty.
    const resolved = {
      app: [
        { name: 'IP', value: '' },
        { name: 'IPS', value: '' },
        { name: 'OTHER', value: 'kept' },
      ],
    };
    const c = containerConfig(
      key,
      pod({ containers: [container] }),
      container,
      0,
      { env: resolved },
      'n',
      paths,
      ['10.250.0.7'],
    );
    expect(c.envs).toEqual([
      { key: 'IP', value: '10.250.0.7' },
      { key: 'IPS', value: '10.250.0.7' },
      { key: 'OTHER', value: 'kept' },
    ]);
  });

  it('takes the resolved environment over the spec, and the working directory', () => {
    const container = { name: 'app', image: 'x', env: [{ name: 'A', value: 'spec' }], workingDir: '/srv' };
    const c = containerConfig(
      key,
      pod({ containers: [container] }),
      container,
      0,
      { env: { app: [{ name: 'A', value: 'resolved' }] } },
      'n',
      paths,
    );
    expect(c.envs).toEqual([{ key: 'A', value: 'resolved' }]);
    expect(c.working_dir).toBe('/srv');
  });

  it('maps the security context, container over pod, seccomp RuntimeDefault unless asked otherwise', () => {
    const c = config(
      {
        securityContext: {
          runAsUser: 1001,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
        },
      },
      { securityContext: { runAsUser: 5, runAsGroup: 6 } },
    );
    expect(c.linux?.security_context).toMatchObject({
      run_as_user: { value: 1001 },
      run_as_group: { value: 6 },
      readonly_rootfs: true,
      no_new_privs: true,
      privileged: false,
      capabilities: { add_capabilities: ['NET_BIND_SERVICE'], drop_capabilities: ['ALL'] },
      seccomp: { profile_type: 'RuntimeDefault' },
    });
    expect(
      config({ securityContext: { seccompProfile: { type: 'Unconfined' } } }).linux?.security_context
        ?.seccomp,
    ).toEqual({
      profile_type: 'Unconfined',
    });
  });

  it('refuses runAsNonRoot with runAsUser 0, as the kubelet does', () => {
    expect(() => config({ securityContext: { runAsNonRoot: true, runAsUser: 0 } })).toThrow(
      ContainerConfigError,
    );
  });

  it('mounts volumes (materialised ones read-only), /etc/hosts and the termination message file', () => {
    const c = config(
      {
        volumeMounts: [
          { name: 'cfg', mountPath: '/etc/app' },
          { name: 'scratch', mountPath: '/data', subPath: 'a' },
          { name: 'ro', mountPath: '/ro', readOnly: true },
        ],
      },
      {
        volumes: [
          { name: 'cfg', configMap: { name: 'c' } },
          { name: 'scratch', emptyDir: {} },
          { name: 'ro', emptyDir: {} },
        ],
      },
      2,
    );
    expect(c.mounts).toEqual([
      { container_path: '/etc/app', host_path: '/state/pod/volumes/cfg', readonly: true },
      { container_path: '/data', host_path: '/state/pod/volumes/scratch/a', readonly: false },
      { container_path: '/ro', host_path: '/state/pod/volumes/ro', readonly: true },
      { container_path: '/etc/hosts', host_path: '/state/pod/etc/hosts', readonly: false },
      { container_path: '/dev/termination-log', host_path: '/state/pod/termination/app/2', readonly: false },
    ]);
  });
});

describe('linuxResources', () => {
  it.each([
    ['nothing: the minimum shares', {}, { cpu_shares: 2 }],
    ['a request: shares', { requests: { cpu: '500m' } }, { cpu_shares: 512 }],
    [
      'limits: quota over a 100 ms period, memory in bytes, shares from the limit',
      { limits: { cpu: '250m', memory: '64Mi' } },
      { cpu_shares: 256, cpu_period: 100000, cpu_quota: 25000, memory_limit_in_bytes: 67108864 },
    ],
    [
      'a request and a larger limit',
      { requests: { cpu: '1' }, limits: { cpu: '2' } },
      { cpu_shares: 1024, cpu_period: 100000, cpu_quota: 200000 },
    ],
  ])('%s', (_name, resources, expected) => {
    expect(linuxResources({ resources })).toEqual(expected);
  });

  it('reads quantities', () => {
    expect(milliCPU('1.5')).toBe(1500);
    expect(bytes('1Gi')).toBe(1073741824);
  });
});

describe('checkRunnable', () => {
  it('refuses a container without an image and a mount of a missing volume, naming each field', () => {
    let error: unknown;
    try {
      checkRunnable(
        key,
        pod({ containers: [{ name: 'app', volumeMounts: [{ name: 'gone', mountPath: '/x' }] }] }),
      );
    } catch (err) {
      error = err;
    }
    expect(isInvalidPodSpec(error)).toBe(true);
    expect((error as { causes: { path: string }[] }).causes.map((c) => c.path)).toEqual([
      'spec.containers[0].image',
      'spec.containers[0].volumeMounts[0].name',
    ]);
  });

  it('runs an image without a command (its entrypoint)', () => {
    expect(() => checkRunnable(key, pod())).not.toThrow();
  });
});

describe('hostsFile', () => {
  it('names the pod on its IP, with its subdomain, then the host aliases', () => {
    const text = hostsFile(
      pod({ hostname: 'db-0', subdomain: 'db', hostAliases: [{ ip: '10.0.0.9', hostnames: ['legacy'] }] }),
      '10.250.0.7',
      'cluster.local',
    );
    expect(text).toContain('10.250.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n');
    expect(text).toContain('10.0.0.9\tlegacy\n');
  });
});
