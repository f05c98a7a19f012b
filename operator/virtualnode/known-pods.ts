/**
 * What the pod controller knows about each pod it runs, one {@link KnownPod} record per UID (as virtual-kubelet's
 * `knownPods`): whether the provider has an instance, its last report, the create attempts that failed, whether
 * the node failed the pod, whether it was evicted, and the status last written. Every change of that state is a
 * method of the record, so that the rules ("a pod the node failed is never created again", "a deleted instance
 * takes its report with it") hold in one place instead of across six collections.
 */
import type { V1PodStatus } from '@kubernetes/client-node';
import type { SandboxKey, SandboxStatus } from '../providers/types.ts';

/** The controller's state of one pod UID. */
export class KnownPod {
  readonly key: SandboxKey;
  /** The provider has (or may have: adopted, reported, or created) an instance for this UID. */
  #hasInstance = false;
  /** The provider's last report. */
  #report: SandboxStatus | undefined;
  /** Consecutive create attempts that failed with a retryable error. */
  #createFailures = 0;
  /** The node failed the pod (or found it terminal): never created again, even from a stale cache. */
  #failed = false;
  /** Evicted already because its instance is about to be reclaimed. */
  #evicted = false;
  /** The status last written (or found already written): what the next container Events compare with. */
  #written: V1PodStatus | undefined;

  constructor(key: SandboxKey) {
    this.key = { ...key };
  }

  get hasInstance(): boolean {
    return this.#hasInstance;
  }
  get report(): SandboxStatus | undefined {
    return this.#report;
  }
  get failed(): boolean {
    return this.#failed;
  }
  get evicted(): boolean {
    return this.#evicted;
  }
  get written(): V1PodStatus | undefined {
    return this.#written;
  }

  /** An instance the provider listed at start-up (its status, when the listing carried one, comes separately). */
  adopted(): void {
    this.#hasInstance = true;
  }

  /** The provider reported on the instance (a create's answer, a poll, a notification). */
  reported(report: SandboxStatus): void {
    this.#hasInstance = true;
    this.#report = report;
  }

  /** The provider accepted the create: earlier failed attempts no longer count. */
  created(report: SandboxStatus): void {
    this.#createFailures = 0;
    this.reported(report);
  }

  /** A create failed with an error worth retrying; returns the attempts so far. */
  createFailed(): number {
    this.#createFailures += 1;
    return this.#createFailures;
  }

  /** Attempts are counted afresh (the pod was failed for good, or the provider accepted it). */
  resetCreateFailures(): void {
    this.#createFailures = 0;
  }

  /** The node failed the pod, or saw it terminal. */
  markFailed(): void {
    this.#failed = true;
  }

  markEvicted(): void {
    this.#evicted = true;
  }

  statusWritten(status: V1PodStatus): void {
    this.#written = status;
  }

  /**
   * The instance was deleted: everything about it goes, except that a pod the node failed stays failed (its
   * instance is gone, but it must not be created again). Returns whether the record still says anything.
   */
  instanceDeleted(): boolean {
    this.#hasInstance = false;
    this.#report = undefined;
    this.#createFailures = 0;
    this.#evicted = false;
    this.#written = undefined;
    return this.#failed;
  }
}

/** The records by UID, and the UID last seen under each `namespace/name` so a vanished pod's instance is found. */
export class KnownPods {
  readonly #byUid = new Map<string, KnownPod>();
  readonly #uidByKey = new Map<string, string>();

  get(uid: string): KnownPod | undefined {
    return this.#byUid.get(uid);
  }

  /** The record of `key.uid`, made if there is none. */
  ensure(key: SandboxKey): KnownPod {
    let pod = this.#byUid.get(key.uid);
    if (!pod) {
      pod = new KnownPod(key);
      this.#byUid.set(key.uid, pod);
    }
    return pod;
  }

  /** The UID last seen under `namespace/name`. */
  uidAt(key: string): string | undefined {
    return this.#uidByKey.get(key);
  }

  /** Remembers that `namespace/name` is (now) the pod `uid`. */
  seen(key: string, uid: string): void {
    this.#uidByKey.set(key, uid);
  }

  /** The pod under `namespace/name` is gone: the name and the record of the UID it had are forgotten. */
  gone(key: string): void {
    const uid = this.#uidByKey.get(key);
    this.#uidByKey.delete(key);
    if (uid) this.#byUid.delete(uid);
  }

  /** The instance of `uid` was deleted (see {@link KnownPod.instanceDeleted}); a record left empty is dropped. */
  instanceDeleted(uid: string): void {
    const pod = this.#byUid.get(uid);
    if (pod && !pod.instanceDeleted()) this.#byUid.delete(uid);
  }

  /** How many UIDs have a record (for tests: nothing is kept for pods that are gone). */
  get size(): number {
    return this.#byUid.size;
  }
}
