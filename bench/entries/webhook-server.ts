/**
 * The webhook server alone, in its own process, for bench/webhook.ts: the production handlers
 * (webhooks/handlers.ts) behind the production WebhookServer, with the request-duration histogram that
 * webhooks/run.ts records, and the namespace/node caches filled in memory instead of from informers (the
 * benchmark measures answering, not watching).
 *
 *   node bench/entries/webhook-server.ts <ca-file>
 *
 * Writes the serving CA to <ca-file> and prints `READY {"port":N}`; runs until SIGTERM.
 */
import { writeFileSync } from 'node:fs';
import { Histogram } from 'prom-client';
import { registry } from '../../operator/shared/metrics.ts';
import { createCA, issueCert } from '../../operator/shared/pki.ts';
import { NamespaceLabelCache, VirtualNodeSet } from '../../webhooks/caches.ts';
import { webhookHandlers } from '../../webhooks/handlers.ts';
import { WebhookServer } from '../../webhooks/server.ts';

const caFile = process.argv[2];
if (!caFile) throw new Error('usage: webhook-server.ts <ca-file>');

const year = 365 * 24 * 3600_000;
const ca = await createCA('spillway-bench-webhook-ca', year);
const certificate = await issueCert(ca, {
  subject: 'CN=spillway-webhook.spillway-system.svc',
  dnsNames: ['spillway-webhook.spillway-system.svc', 'localhost'],
  ipAddresses: ['127.0.0.1'],
  usage: 'server',
  validForMs: year,
});
writeFileSync(caFile, ca.certPem);

const namespaces = new NamespaceLabelCache();
for (let i = 0; i < 200; i++) {
  namespaces.upsert({
    metadata: { name: `team-${i}`, labels: { 'kubernetes.io/metadata.name': `team-${i}` } },
  });
}
namespaces.upsert({ metadata: { name: 'shop', labels: { 'kubernetes.io/metadata.name': 'shop' } } });
const virtualNodes = new VirtualNodeSet();
virtualNodes.upsert({
  metadata: { name: 'spillway-virtual-eci', labels: { 'spillway.dev/virtual-node': 'true' } },
});

const histogram = new Histogram({
  name: 'spillway_webhook_request_duration_seconds',
  help: 'Time to answer an AdmissionReview, by webhook path and outcome.',
  labelNames: ['path', 'outcome'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
  registers: [registry],
});

const server = await WebhookServer.start({
  handlers: webhookHandlers({ namespaceLabels: namespaces.lookup, isVirtualNode: virtualNodes.has }),
  certificate,
  host: '127.0.0.1',
  port: 0,
  log: {
    warn: (obj, msg) => console.error(JSON.stringify({ level: 'warn', msg, ...obj })),
    error: (obj, msg) => console.error(JSON.stringify({ level: 'error', msg, ...obj })),
  },
  observe: (path, outcome, seconds) => histogram.observe({ path, outcome }, seconds),
});
console.log(`READY ${JSON.stringify({ port: server.port })}`);

process.on('SIGTERM', () => {
  void server.close(1000).then(() => process.exit(0));
});
