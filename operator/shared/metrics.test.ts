import { Registry, register as globalRegistry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { informerRestarts, registry, serveMetrics, workqueueMetrics, type MetricsServer } from './metrics.ts';

describe('serveMetrics', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves the private registry, with process metrics, on loopback', async () => {
    server = await serveMetrics({ port: 0 });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
    workqueueMetrics().adds.inc({ name: 'metrics-test' }, 3);

    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('spillway_workqueue_adds_total{name="metrics-test"} 3');
  });

  it('answers 404 elsewhere and ok on /healthz', async () => {
    server = await serveMetrics({ port: 0 });
    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
  });

  it('stops listening when closed, after a keep-alive scrape', async () => {
    const s = await serveMetrics({ port: 0 });
    await (await fetch(s.url, { keepalive: true })).text();
    await s.close();
    await expect(fetch(s.url)).rejects.toThrow();
  });
});

describe('shared metric families', () => {
  it('are created once per registry, whatever the number of callers', () => {
    const reg = new Registry();
    const a = workqueueMetrics(reg);
    const b = workqueueMetrics(reg);
    expect(a.depth).toBe(b.depth);
    expect(informerRestarts(reg)).toBe(informerRestarts(reg));
  });

  it('never touch the global default registry', async () => {
    workqueueMetrics();
    informerRestarts();
    expect(await registry.getSingleMetric('spillway_workqueue_depth')).toBeDefined();
    expect(globalRegistry.getSingleMetric('spillway_workqueue_depth')).toBeUndefined();
    expect(globalRegistry.getSingleMetric('process_resident_memory_bytes')).toBeUndefined();
  });
});
