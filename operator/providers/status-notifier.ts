/**
 * How providers deliver `onStatus`: a sandbox that changed is queued, and all changes of one tick go out
 * together, one notification per sandbox with its status at that moment. Always asynchronous (never inside
 * `create`), and never for a sandbox that has been deleted or replaced meanwhile.
 */
import type { SandboxStatus, Unsubscribe } from './types.ts';

/** What a provider's sandbox offers the notifier. */
export interface NotifyingSandbox {
  readonly key: { uid: string };
  status(): SandboxStatus;
}

/** Batches status notifications for `onStatus` listeners. */
export class StatusNotifier<S extends NotifyingSandbox> {
  readonly #listeners = new Set<(status: SandboxStatus) => void>();
  readonly #isCurrent: (sandbox: S) => boolean;
  #dirty = new Set<S>();

  /** @param isCurrent whether the sandbox is still the provider's instance for its UID when the batch goes out */
  constructor(isCurrent: (sandbox: S) => boolean) {
    this.#isCurrent = isCurrent;
  }

  /** The provider's `onStatus`. */
  subscribe(listener: (status: SandboxStatus) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Queues a notification for `sandbox` (once per tick, however often it changed). */
  changed(sandbox: S): void {
    if (this.#listeners.size === 0) return;
    const first = this.#dirty.size === 0;
    this.#dirty.add(sandbox);
    if (first) queueMicrotask(() => this.#flush());
  }

  /** Drops a pending notification (the sandbox was deleted). */
  forget(sandbox: S): void {
    this.#dirty.delete(sandbox);
  }

  /** Drops every pending notification. */
  clear(): void {
    this.#dirty.clear();
  }

  #flush(): void {
    const batch = this.#dirty;
    this.#dirty = new Set();
    for (const sandbox of batch) {
      if (!this.#isCurrent(sandbox)) continue;
      const status = sandbox.status();
      for (const listener of this.#listeners) listener(status);
    }
  }
}
