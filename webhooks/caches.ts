/**
 * The two lookups the webhooks need beyond the AdmissionRequest, kept in memory so that answering never waits
 * on the apiserver: a namespace's labels (an AdmissionRequest only names the namespace) and the virtual nodes
 * (names, labels, taints). Each is fed by an informer's add/update/delete events; the webhooks only see the lookup functions,
 * so tests pass plain functions instead.
 */
import type { V1Namespace, V1Node } from '@kubernetes/client-node';
import { VIRTUAL_NODE_LABEL } from '../api/labels.ts';
import type { IsVirtualNode } from '../api/placement.ts';

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

/**
 * The label selector of the webhooks' node informer: only spillway's virtual nodes are cached (a handful), not
 * every node of the cluster. A node that loses the label leaves the watch with a DELETED event.
 */
export const VIRTUAL_NODE_SELECTOR = `${VIRTUAL_NODE_LABEL}=true`;

/**
 * Whether a Node object is one of spillway's virtual nodes: the same label as {@link VIRTUAL_NODE_SELECTOR}, so
 * that what the informer brings and what the cache keeps agree. (ACK's `type: virtual-kubelet` alone marks
 * someone else's virtual kubelet, whose sandboxes spillway does not run.)
 */
export function isVirtualNodeObject(node: V1Node): boolean {
  return node.metadata?.labels?.[VIRTUAL_NODE_LABEL] === 'true';
}

/**
 * The virtual nodes by name, fed by the label-selected Node informer: their names (for `spec.nodeName`) and the
 * labels and taints the node matcher (api/node-match.ts) evaluates pods against.
 */
export class VirtualNodeSet {
  #nodes = new Map<string, V1Node>();
  #list: readonly V1Node[] | undefined;

  /** For informer add and update events. */
  upsert(node: V1Node): void {
    const name = node.metadata?.name;
    if (!name) return;
    this.#list = undefined;
    if (!isVirtualNodeObject(node)) {
      this.#nodes.delete(name);
      return;
    }
    // Only what scheduling looks at: name, labels, taints.
    this.#nodes.set(name, {
      metadata: { name, labels: { ...(node.metadata?.labels ?? {}) } },
      spec: { taints: (node.spec?.taints ?? []).map((t) => ({ ...t })) },
    });
  }

  /** For informer delete events. */
  remove(node: V1Node): void {
    if (node.metadata?.name && this.#nodes.delete(node.metadata.name)) this.#list = undefined;
  }

  /** The predicate the validating webhook uses (bound, so it can be passed around). */
  readonly has: IsVirtualNode = (name) => this.#nodes.has(name);

  /** The current virtual nodes (bound; the same array until the next change, so a request allocates nothing). */
  readonly list = (): readonly V1Node[] => (this.#list ??= [...this.#nodes.values()]);
}
