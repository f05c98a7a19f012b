/**
 * The two lookups the webhooks need beyond the AdmissionRequest, kept in memory so that answering never waits
 * on the apiserver: a namespace's labels (an AdmissionRequest only names the namespace) and whether a node is
 * virtual. Each is fed by an informer's add/update/delete events; the webhooks only see the lookup functions,
 * so tests pass plain functions instead.
 */
import type { V1Namespace, V1Node } from '@kubernetes/client-node';
import { NODE_TYPE_LABEL, VIRTUAL_KUBELET_TYPE, VIRTUAL_NODE_LABEL } from './contract.ts';
import type { IsVirtualNode } from './validate.ts';

/** A namespace's labels by name; undefined for a namespace the cache has not seen. */
export type NamespaceLabels = (name: string) => Readonly<Record<string, string>> | undefined;

/** Namespace name → labels, fed by a Namespace informer. */
export class NamespaceLabelCache {
  #labels = new Map<string, Readonly<Record<string, string>>>();

  /** For informer add and update events. */
  upsert(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (name) this.#labels.set(name, { ...(ns.metadata?.labels ?? {}) });
  }

  /** For informer delete events. */
  remove(ns: V1Namespace): void {
    if (ns.metadata?.name) this.#labels.delete(ns.metadata.name);
  }

  /** The lookup the webhooks use (bound, so it can be passed around). */
  readonly lookup: NamespaceLabels = (name) => this.#labels.get(name);

  /** How many namespaces are cached. */
  get size(): number {
    return this.#labels.size;
  }
}

/** Whether a Node object is a virtual node by spillway's labels or ACK's `type: virtual-kubelet`. */
export function isVirtualNodeObject(node: V1Node): boolean {
  const labels = node.metadata?.labels ?? {};
  return labels[VIRTUAL_NODE_LABEL] === 'true' || labels[NODE_TYPE_LABEL] === VIRTUAL_KUBELET_TYPE;
}

/** The names of the virtual nodes, fed by a Node informer (all nodes; a label change moves a node in or out). */
export class VirtualNodeSet {
  #names = new Set<string>();

  /** For informer add and update events. */
  upsert(node: V1Node): void {
    const name = node.metadata?.name;
    if (!name) return;
    if (isVirtualNodeObject(node)) this.#names.add(name);
    else this.#names.delete(name);
  }

  /** For informer delete events. */
  remove(node: V1Node): void {
    if (node.metadata?.name) this.#names.delete(node.metadata.name);
  }

  /** The predicate the validating webhook uses (bound, so it can be passed around). */
  readonly has: IsVirtualNode = (name) => this.#names.has(name);
}
