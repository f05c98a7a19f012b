/**
 * The ElasticWorkload controller alone, in its own process, for bench/reconcile.ts: what `spillway controller`
 * runs once it holds the lease (same class, same default workers), without the webhooks and leader election,
 * so that its memory and CPU are the controller's.
 *
 *   node bench/entries/elasticworkload-controller.ts <kubeconfig>
 *
 * Prints `READY` once its caches have synced; answers `metrics <file>` (control.ts); runs until SIGTERM.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { elasticWorkloadController } from '../../operator/elasticworkload/controller.ts';
import { answerCommands } from './control.ts';

const kubeconfig = process.argv[2];
if (!kubeconfig) throw new Error('usage: elasticworkload-controller.ts <kubeconfig>');
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const controller = elasticWorkloadController(kc, { identity: 'bench' });
await controller.start();
answerCommands();
console.log('READY');
process.on('SIGTERM', () => {
  void controller.stop().finally(() => process.exit(0));
});
