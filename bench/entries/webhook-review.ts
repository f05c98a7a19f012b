/**
 * One large pod review, answered in a fresh process, for bench/webhook-patch.ts: the work the webhook server does
 * for one request after reading the body (parse the AdmissionReview, run the `/mutate-pods` handler, serialise
 * the response with its base64 patch), timed, with the heap it allocated.
 *
 *   node --expose-gc --max-semi-space-size=64 bench/entries/webhook-review.ts <tolerations> <terms> [repeats] [root]
 *
 * `root` is the checkout whose webhooks/ are measured (default: this one), so that an older commit can be
 * measured with the same harness. Prints one JSON line: `{ms: number[], heapMiB, rssGrowthMiB, patchOps, gcs}`.
 * The heap figure is heapUsed after minus before, with no collection in between when `gcs` is 0 (a 64 MiB
 * semi-space keeps the young generation from being scavenged below that); with collections it is a lower bound,
 * and the RSS growth shows the peak.
 */
import { join, resolve } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [tolerations, terms, repeats = '5', rootArg] = process.argv.slice(2);
if (!tolerations || !terms)
  throw new Error('usage: webhook-review.ts <tolerations> <terms> [repeats] [root]');
const root = rootArg ?? resolve(fileURLToPath(import.meta.url), '../../..');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

type Handler = (req: unknown) => { allowed: boolean; patch?: unknown[] };
const { webhookHandlers } = (await import(pathToFileURL(join(root, 'webhooks/handlers.ts')).href)) as {
  webhookHandlers: (deps: object) => Record<string, Handler>;
};
const { parseAdmissionReview, admissionResponse } = (await import(
  pathToFileURL(join(root, 'webhooks/admission.ts')).href
)) as {
  parseAdmissionReview: (body: string) => { request: { uid: string } };
  admissionResponse: (uid: string, outcome: object) => object;
};

const mutate = webhookHandlers({ namespaceLabels: () => undefined, isVirtualNode: () => false })[
  '/mutate-pods'
]!;

/** A `burst: always` pod with `t` tolerations and `n` required node selector terms: the worst case to patch. */
function body(t: number, n: number): string {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'big',
      namespace: 'default',
      labels: { 'spillway.dev/burst': 'always', 'spillway.dev/capacity': 'spot' },
    },
    spec: {
      containers: [{ name: 'app', image: 'nginx' }],
      tolerations: Array.from({ length: t }, (_, i) => ({
        key: `example.com/taint-${i}`,
        operator: 'Equal',
        value: `v${i}`,
        effect: 'NoSchedule',
      })),
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: Array.from({ length: n }, (_, i) => ({
              matchExpressions: [
                { key: 'topology.kubernetes.io/zone', operator: 'In', values: [`zone-${i}`] },
              ],
            })),
          },
        },
      },
    },
  };
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'bench',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace: 'default',
      object: pod,
    },
  });
}

function review(text: string): { answer: string; ops: number } {
  const parsed = parseAdmissionReview(text);
  const outcome = mutate(parsed.request);
  const answer = JSON.stringify(admissionResponse(parsed.request.uid, outcome));
  return { answer, ops: outcome.patch?.length ?? 0 };
}

let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

// Warm-up on a small pod: compiles the code paths without growing the heap.
review(body(10, 2));
const text = body(Number(tolerations), Number(terms));
gc();
await new Promise((r) => setImmediate(r)); // deliver the warm-up's GC entries before counting
gcs = 0;
const rss0 = process.resourceUsage().maxRSS;
const heap0 = process.memoryUsage().heapUsed;
let started = performance.now();
const first = review(text);
const ms = [performance.now() - started];
const heap1 = process.memoryUsage().heapUsed;
const rss1 = process.resourceUsage().maxRSS;
await new Promise((r) => setImmediate(r));
const gcsFirst = gcs;
for (let i = 1; i < Number(repeats); i++) {
  started = performance.now();
  review(text);
  ms.push(performance.now() - started);
}
console.log(
  JSON.stringify({
    ms: ms.map((m) => Number(m.toFixed(2))),
    heapMiB: Number(((heap1 - heap0) / 1024 / 1024).toFixed(1)),
    rssGrowthMiB: Number(((rss1 - rss0) / 1024).toFixed(1)),
    patchOps: first.ops,
    responseKiB: Number((first.answer.length / 1024).toFixed(1)),
    gcs: gcsFirst,
  }),
);
