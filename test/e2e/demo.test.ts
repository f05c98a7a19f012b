/**
 * `make demo` as a test: the demo script against this run's control plane (it reuses a running cluster and
 * leaves it running), so CI proves the demo a user runs first.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, testCluster } from '../support/cluster.ts';

describe('make demo', () => {
  it('bursts examples/web 2 → 10 → 3 on the local provider and reaches a backend through its ClusterIP', async () => {
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
    expect(output).toMatch(
      /✓ burst pod \S+ → http:\/\/backend\.spillway-demo\.svc\.cluster\.local\/ \(ClusterIP 10\.96\.\d+\.\d+\) → HTTP 200/,
    );
    expect(output).toContain('✓ 3 replicas: source=3');
    expect(output).toMatch(/virtual node/);
  });
});
