/**
 * Watches from the benchmark's side: every event is stamped with the host clock when it arrives, which is when
 * a client of the API (kubectl, a controller) could first have seen the change.
 */
import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { nowMs } from './stats.ts';

/** A watch on one collection that restarts itself if the server ends it before `stop()`. */
export class ObjectWatch<T extends KubernetesObject> {
  readonly #kc: KubeConfig;
  readonly #path: string;
  readonly #params: Record<string, string>;
  readonly #onEvent: (type: string, obj: T, atMs: number) => void;
  #abort: AbortController | undefined;
  #stopped = false;
  restarts = 0;

  constructor(
    kc: KubeConfig,
    path: string,
    params: Record<string, string>,
    onEvent: (type: string, obj: T, atMs: number) => void,
  ) {
    this.#kc = kc;
    this.#path = path;
    this.#params = params;
    this.#onEvent = onEvent;
  }

  /** Resolves once the watch request is established (events after this point are not missed). */
  async start(): Promise<void> {
    this.#abort = await new Watch(this.#kc).watch(
      this.#path,
      { ...this.#params, allowWatchBookmarks: false },
      (type, obj) => this.#onEvent(type, obj as T, nowMs()),
      () => {
        if (this.#stopped) return;
        this.restarts++;
        void this.start();
      },
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
  }
}
