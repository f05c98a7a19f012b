/**
 * The approver of the virtual nodes' certificates: watches CertificateSigningRequests for the kubelet client
 * and kubelet serving signers and approves those {@link decideNodeClientCSR} (a managed virtual node asking
 * through its bootstrap identity) and {@link decideKubeletServingCSR} (a managed virtual node asking as itself
 * for its name and the InternalIPs of its Node) approve, denies with the reason those that claim a managed node
 * or come from the bootstrap identity but ask for more, and leaves the rest (real kubelets) alone.
 * kube-controller-manager signs what is approved. Runs on the leader, next to the ElasticWorkload controller.
 */
import {
  CertificatesV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1CertificateSigningRequest,
  type V1CertificateSigningRequestCondition,
} from '@kubernetes/client-node';
import { apiErrorMessage, isApiError } from '../shared/client.ts';
import { informerFor, type SupervisedInformer } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import {
  decideNodeClientCSR,
  KUBELET_CLIENT_SIGNER,
  type CsrDecision,
  type NodeClientPolicy,
} from './csr.ts';
import { decideKubeletServingCSR, KUBELET_SERVING_SIGNER, requestingNode } from './serving-csr.ts';

/** How long a failed approval waits before it is tried again. */
const RETRY_MS = 5_000;

/** Approves the virtual nodes' client and kubelet serving certificate requests. */
export class NodeCsrApprover {
  readonly #api: CertificatesV1Api;
  readonly #core: CoreV1Api;
  readonly #policy: NodeClientPolicy;
  readonly #log: Logger;
  /** One informer per signer (a field selector cannot say "either"). */
  readonly #csrs: SupervisedInformer<V1CertificateSigningRequest>[];
  /** Requests being decided or waiting for a retry, so that one request is written once at a time. */
  readonly #busy = new Set<string>();
  /** Requests that changed while busy: decided again once the current decision is written. */
  readonly #dirty = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(opts: { kc: KubeConfig; policy: NodeClientPolicy; logger?: Logger }) {
    this.#api = opts.kc.makeApiClient(CertificatesV1Api);
    this.#core = opts.kc.makeApiClient(CoreV1Api);
    this.#policy = opts.policy;
    this.#log = opts.logger ?? componentLogger('csr-approver');
    this.#csrs = [
      ['node-csrs', KUBELET_CLIENT_SIGNER],
      ['serving-csrs', KUBELET_SERVING_SIGNER],
    ].map(([name, signer]) => {
      const fieldSelector = `spec.signerName=${signer}`;
      const informer = informerFor<V1CertificateSigningRequest>(opts.kc, name!, {
        path: '/apis/certificates.k8s.io/v1/certificatesigningrequests',
        fieldSelector,
        list: () => this.#api.listCertificateSigningRequest({ fieldSelector }),
      });
      informer.onAdd((csr) => this.#consider(csr.metadata!.name!));
      informer.onUpdate((csr) => this.#consider(csr.metadata!.name!));
      return informer;
    });
  }

  /** Starts watching; resolves once the requests that exist were listed. */
  async start(): Promise<void> {
    for (const informer of this.#csrs) informer.start();
    await Promise.all(this.#csrs.map((informer) => informer.synced));
    this.#log.info('approving virtual node client and serving certificates');
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all(this.#csrs.map((informer) => informer.stop()));
  }

  #consider(name: string): void {
    if (this.#stopped) return;
    if (this.#busy.has(name)) {
      this.#dirty.add(name);
      return;
    }
    this.#busy.add(name);
    this.#dirty.delete(name);
    void this.#decide(name).then(
      () => {
        this.#busy.delete(name);
        if (this.#dirty.has(name)) this.#consider(name);
      },
      (err: unknown) => {
        this.#log.warn({ csr: name, err: apiErrorMessage(err), retryInMs: RETRY_MS }, 'CSR not decided');
        const t = setTimeout(() => {
          this.#timers.delete(t);
          this.#busy.delete(name);
          this.#consider(name);
        }, RETRY_MS);
        t.unref();
        this.#timers.add(t);
      },
    );
  }

  async #decide(name: string): Promise<void> {
    // CSR names are cluster-wide: one informer at most has it.
    const csr = this.#csrs.map((informer) => informer.get('', name)).find(Boolean);
    if (!csr) return;
    const decision =
      csr.spec.signerName === KUBELET_SERVING_SIGNER
        ? await this.#decideServing(csr)
        : decideNodeClientCSR(csr, this.#policy);
    if (decision.action === 'ignore') return;
    const condition: V1CertificateSigningRequestCondition =
      decision.action === 'approve'
        ? { type: 'Approved', status: 'True', reason: 'SpillwayVirtualNode', message: decision.message }
        : { type: 'Denied', status: 'True', reason: decision.reason, message: decision.message };
    try {
      // The approval subresource: an update carrying the conditions, with the resourceVersion we decided on.
      await this.#api.replaceCertificateSigningRequestApproval({
        name,
        body: {
          ...csr,
          status: { ...csr.status, conditions: [...(csr.status?.conditions ?? []), condition] },
        },
      });
    } catch (err) {
      // Changed meanwhile (kube-controller-manager approved it first, or it was deleted): the informer brings
      // the new version, or nothing.
      if (isApiError(err, 409) || isApiError(err, 404)) return;
      throw err;
    }
    const log =
      decision.action === 'approve' ? this.#log.info.bind(this.#log) : this.#log.warn.bind(this.#log);
    log(
      {
        csr: name,
        requester: csr.spec.username,
        ...(decision.action === 'deny' && { reason: decision.reason }),
      },
      `${decision.action === 'approve' ? 'approved' : 'denied'}: ${decision.message}`,
    );
  }

  /** The serving decision, with the InternalIPs of the requesting node as its Node object has them now. */
  async #decideServing(csr: V1CertificateSigningRequest): Promise<CsrDecision> {
    const requester = requestingNode(csr);
    let internalIPs: string[] | undefined;
    if (requester !== '' && this.#policy.isManagedNode(requester)) {
      // A list by name: the controller may list and watch Nodes (chart templates/controller-rbac.yaml), not get.
      const nodes = await this.#core.listNode({ fieldSelector: `metadata.name=${requester}` });
      const node = nodes.items[0];
      internalIPs = node
        ? (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address)
        : undefined;
    }
    return decideKubeletServingCSR(csr, {
      isManagedNode: this.#policy.isManagedNode,
      internalIPs: (name) => (name === requester ? internalIPs : undefined),
    });
  }
}
