/**
 * `spillway virtual-node --provider fake` for bench/burst.ts: the same startVirtualNode over the fake provider
 * with zero start latency, in its own process, plus one thing the CLI does not do: it remembers when each
 * sandbox turned Running (the provider's status change), so that the benchmark can measure status propagation
 * (provider status change → Pod status Running seen through a watch) on one host clock.
 *
 *   node bench/entries/virtual-node.ts <kubeconfig> <node-name> <kubelet-port>
 *
 * Prints `READY` once the node is registered; on the stdin line `dump <file>` writes {uid: epoch ms} of every
 * Running report to <file> and prints `DUMPED` (and `metrics <file>`, see control.ts). Runs until SIGTERM.
 */
import { writeFileSync } from 'node:fs';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { FakeProvider } from '../../operator/providers/fake/fake-provider.ts';
import type { ResolvedPodInputs, SandboxStatus } from '../../operator/providers/types.ts';
import { startVirtualNode } from '../../operator/virtualnode/run.ts';
import { answerCommands } from './control.ts';

const [kubeconfig, nodeName, kubeletPort] = process.argv.slice(2);
if (!kubeconfig || !nodeName || !kubeletPort) {
  throw new Error('usage: virtual-node.ts <kubeconfig> <node-name> <kubelet-port>');
}

/** The fake provider, timing when each sandbox reports Running. */
class TimedFakeProvider extends FakeProvider {
  readonly runningAt = new Map<string, number>();

  constructor() {
    super({ startLatencyMs: 0 });
    this.onStatus((s) => this.#note(s));
  }

  override async create(pod: V1Pod, inputs?: ResolvedPodInputs): Promise<SandboxStatus> {
    const status = await super.create(pod, inputs);
    this.#note(status);
    return status;
  }

  #note(s: SandboxStatus): void {
    if (s.phase === 'Running' && !this.runningAt.has(s.key.uid)) {
      this.runningAt.set(s.key.uid, performance.timeOrigin + performance.now());
    }
  }
}

const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const provider = new TimedFakeProvider();
const node = await startVirtualNode({
  kc,
  provider,
  config: { name: nodeName, internalIP: '127.0.0.1', kubeletPort: Number(kubeletPort) },
});
console.log('READY');

answerCommands({
  dump: (file) => {
    writeFileSync(file, JSON.stringify(Object.fromEntries(provider.runningAt)));
    console.log('DUMPED');
  },
});
process.on('SIGTERM', () => {
  void node.stop().finally(() => process.exit(0));
});
