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

  /** Why the watch ended, each time it did (for the result's caveats). */
  readonly endings: string[] = [];
  #resourceVersion: string | undefined;

  /**
   * Resolves once the watch request is established (events after this point are not missed). A watch the
   * server ends is resumed from the last resourceVersion seen, so that no event in between is lost (a fresh
   * watch would start from "now" and show objects created in the gap only in their later state).
   */
  async start(): Promise<void> {
    const resume = this.#resourceVersion ? { resourceVersion: this.#resourceVersion } : {};
    this.#abort = await new Watch(this.#kc).watch(
      this.#path,
      { ...this.#params, ...resume, allowWatchBookmarks: true },
      (type, obj) => {
        const rv = (obj as KubernetesObject).metadata?.resourceVersion;
        if (rv) this.#resourceVersion = rv;
        if (type === 'BOOKMARK') return;
        if (type === 'ERROR') {
          this.#resourceVersion = undefined; // 410 Gone: too old; start over from now
          return;
        }
        this.#onEvent(type, obj as T, nowMs());
      },
      (err: unknown) => {
        if (this.#stopped) return;
        this.restarts++;
        this.endings.push(err ? String((err as Error).message ?? err) : 'ended by the server');
        void this.start();
      },
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
  }
}
