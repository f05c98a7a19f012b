/**
 * `make demo` as a test: the demo script against this run's control plane (it reuses a running cluster and
 * leaves it running), so CI proves the demo a user runs first: examples/web from the registry's nginx image,
 * real burst replicas answering requests through the web Service. Needs root (containerd).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { imageRef } from '../../hack/images/catalog.ts';
import { repoRoot, testCluster } from '../support/cluster.ts';

describe('make demo', () => {
  it('bursts examples/web 2 → 10 → 3 on the local provider, its burst replicas answering through the Service', async () => {
    const cluster = await testCluster();
    let output = '';
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [join(repoRoot, 'hack/demo.ts')], {
        env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('exit', resolve);
    });
    expect(code, output).toBe(0);
    expect(output).toContain('✓ 2 replicas: source=2');
    expect(output).toContain('✓ 10 replicas: source=4 spot=4 on-demand=2');
    // examples/web's nginx from this cluster's registry, not a host command.
    expect(output).toContain(`examples/web runs ${imageRef('nginx', inject('registry'))}`);
    expect(output).toMatch(
      /to http:\/\/web\.spillway-demo\.svc\.cluster\.local\/ \(ClusterIP 10\.96\.\d+\.\d+\)/,
    );
    // The six burst replicas are real nginx; at least one answered (the demo checks the access logs add up).
    expect(output).toMatch(/✓ [1-9]\d* of 30 requests to \S+ answered by 6 burst replicas/);
    expect(output).toContain('✓ 3 replicas: source=3');
    expect(output).toMatch(/virtual node/);
  });
});
