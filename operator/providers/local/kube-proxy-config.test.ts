/**
 * What kube-proxy runs with (kube-proxy-config.ts), the parts that need no root: the credentials choice, the
 * configuration, and where its binary is found. kube-proxy itself runs in test/integration/kube-proxy.test.ts.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCA } from '../../shared/pki.ts';
import { defaultKubeProxyBinary, kubeProxyConfig, kubeProxyCredentials } from './kube-proxy-config.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spillway-kube-proxy-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('kubeProxyCredentials', () => {
  const kubeconfig = (clusterDir: string) => {
    const path = join(clusterDir, 'kubeconfig');
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:7443' } }],
        users: [{ name: 'admin', user: { token: 'admin-token' } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'admin' } }],
        'current-context': 'c',
      }),
    );
    return path;
  };

  it('issues a system:kube-proxy client certificate when the cluster CA key is beside the kubeconfig', async () => {
    const clusterDir = join(dir, 'cluster');
    mkdirSync(join(clusterDir, 'pki'), { recursive: true });
    const ca = await createCA('test-ca', 3600_000);
    writeFileSync(join(clusterDir, 'pki', 'ca.crt'), ca.certPem);
    writeFileSync(join(clusterDir, 'pki', 'ca.key'), ca.keyPem);
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir);

    const creds = await kubeProxyCredentials({ kubeconfigPath: kubeconfig(clusterDir), stateDir });

    expect(creds.identity).toBe('system:kube-proxy');
    expect(creds.kubeconfig).toBe(join(stateDir, 'kubeconfig'));
    const written = JSON.parse(readFileSync(creds.kubeconfig, 'utf8'));
    expect(written.clusters[0].cluster.server).toBe('https://127.0.0.1:7443');
    expect(written.users[0].name).toBe('system:kube-proxy');
    const cert = new (await import('node:crypto')).X509Certificate(
      Buffer.from(written.users[0].user['client-certificate-data'], 'base64'),
    );
    expect(cert.subject).toBe('CN=system:kube-proxy');
    expect(cert.checkIssued(new (await import('node:crypto')).X509Certificate(ca.certPem))).toBe(true);
  });

  it("falls back to the run's kubeconfig when no CA key is at hand", async () => {
    const clusterDir = join(dir, 'elsewhere');
    mkdirSync(clusterDir);
    const path = kubeconfig(clusterDir);

    const creds = await kubeProxyCredentials({ kubeconfigPath: path, stateDir: dir });

    expect(creds).toEqual({ kubeconfig: path, identity: 'the run' });
  });
});

describe('kube-proxy configuration', () => {
  it('runs nftables mode on the given node and CIDRs, leaving conntrack and the OOM score alone', () => {
    const config = JSON.parse(
      kubeProxyConfig({
        kubeconfig: '/k',
        nodeName: 'burst-1',
        clusterCIDR: '10.250.0.0/16',
        nodePortAddresses: ['10.250.0.1/32'],
        metricsPort: 1,
        healthzPort: 2,
        masqueradeAll: false,
        verbosity: 1,
      }),
    );
    expect(config).toMatchObject({
      mode: 'nftables',
      hostnameOverride: 'burst-1',
      clusterCIDR: '10.250.0.0/16',
      detectLocalMode: 'ClusterCIDR',
      nodePortAddresses: ['10.250.0.1/32'],
      healthzBindAddress: '127.0.0.1:2',
      metricsBindAddress: '127.0.0.1:1',
      conntrack: { maxPerCore: 0, min: 0 },
      oomScoreAdj: 0,
    });
  });

  it('finds kube-proxy beside the coredns binary first', () => {
    writeFileSync(join(dir, 'kube-proxy'), '');
    expect(defaultKubeProxyBinary(join(dir, 'coredns'), { PATH: '' })).toBe(join(dir, 'kube-proxy'));
    expect(defaultKubeProxyBinary(join(dir, 'nowhere', 'coredns'), { PATH: dir })).toBe(
      join(dir, 'kube-proxy'),
    );
  });
});
