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
    // Every replica is real nginx, on the real nodes and on the virtual node: all 30 requests answered, by both
    // sides (the demo checks the access logs add up).
    expect(output).toMatch(
      /✓ 30 of 30 requests to \S+ answered: [1-9]\d* by replicas on real nodes, [1-9]\d* by burst replicas/,
    );
    expect(output).toMatch(/web-\S+ +source +worker-\d +Running +real node/);
    expect(output).toContain('✓ 3 replicas: source=3');
    expect(output).toMatch(/virtual node/);
  });
});
