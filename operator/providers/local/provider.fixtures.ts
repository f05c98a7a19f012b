/**
 * Helpers of the local provider's unit tests over the FAKE CRI runtime (./cri/fake-runtime.ts): a provider on the
 * fake with fast supervision, pods of the busybox image, and a wait for a status. Tests only.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../shared/wait.ts';
import type { SandboxKey, SandboxStatus } from '../types.ts';
import { FakeRuntime } from './cri/fake-runtime.ts';
import { LocalProvider, type LocalProviderOptions } from './provider.ts';

export const IMAGE = 'localhost:5000/spillway/busybox:1.36';

/** A fake runtime with the busybox and pause images, a state directory, and the providers started on them. */
export class ProviderFixture {
  fake!: FakeRuntime;
  stateDir = '';
  readonly #providers: LocalProvider[] = [];
  #n = 0;

  async setUp(): Promise<void> {
    this.fake = await FakeRuntime.start();
    this.fake.images.set(IMAGE, 'sha256:busybox');
    this.fake.images.set('registry.k8s.io/pause:3.10', 'sha256:pause');
    this.stateDir = mkdtempSync(join(tmpdir(), 'local-provider-'));
  }

  async tearDown(): Promise<void> {
    for (const p of this.#providers.splice(0)) await p.close();
    await this.fake.stop();
    rmSync(this.stateDir, { recursive: true, force: true });
  }

  /** A provider on the fake: no network management, 20 ms polls, back-off 100 ms doubling to 400 ms. */
  async start(options: Partial<LocalProviderOptions> = {}): Promise<LocalProvider> {
    const p = await LocalProvider.start({
      nodeName: 'node-a',
      criEndpoint: this.fake.endpoint,
      stateDir: this.stateDir,
      manageNetwork: false,
      pollMs: 20,
      supervision: { backoffMs: 100, maxBackoffMs: 400, backoffResetMs: 60_000 },
      ...options,
    });
    this.#providers.push(p);
    return p;
  }

  /** A pod in namespace `shop` whose containers run the busybox image (the first is named `app`). */
  pod(spec: Partial<V1Pod['spec']> = {}, containers: Partial<V1Container>[] = [{}]): V1Pod {
    this.#n++;
    return {
      metadata: { name: `web-${this.#n}`, namespace: 'shop', uid: `uid-${this.#n}` },
      spec: {
        containers: containers.map((c, i) => ({ name: i === 0 ? 'app' : `c${i}`, image: IMAGE, ...c })),
        ...spec,
      },
    };
  }
}

export const keyOf = (p: V1Pod): SandboxKey => ({
  uid: p.metadata!.uid!,
  namespace: p.metadata!.namespace ?? 'shop',
  name: p.metadata!.name!,
});

/** Waits (10 s at most) for the pod's status to satisfy `ok`; the error shows the last status. */
export async function until(
  p: LocalProvider,
  pd: V1Pod,
  what: string,
  ok: (s: SandboxStatus) => boolean,
): Promise<SandboxStatus> {
  let last: SandboxStatus | undefined;
  await waitFor(what, 10_000, async () => {
    last = await p.status(keyOf(pd));
    return ok(last);
  }).catch((err: Error) => {
    throw new Error(`${err.message}; last status: ${JSON.stringify(last)}`);
  });
  return last!;
}
