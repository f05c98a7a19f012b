/**
 * The approver of the virtual nodes' client certificates: watches CertificateSigningRequests for the kubelet
 * client signer and approves those {@link decideNodeClientCSR} approves (a managed virtual node asking through
 * its bootstrap identity), denies with the reason those that claim a managed node or come from the bootstrap
 * identity but ask for more, and leaves the rest (real kubelets) alone. kube-controller-manager signs what is
 * approved. Runs on the leader, next to the ElasticWorkload controller.
 */
import {
  CertificatesV1Api,
  type KubeConfig,
  type V1CertificateSigningRequest,
  type V1CertificateSigningRequestCondition,
} from '@kubernetes/client-node';
import { apiErrorMessage, isApiError } from '../shared/client.ts';
import { informerFor, type SupervisedInformer } from '../shared/informer.ts';
import { componentLogger, type Logger } from '../shared/log.ts';
import { decideNodeClientCSR, KUBELET_CLIENT_SIGNER, type NodeClientPolicy } from './csr.ts';

/** How long a failed approval waits before it is tried again. */
const RETRY_MS = 5_000;

/** Approves the virtual nodes' node client certificate requests. */
export class NodeCsrApprover {
  readonly #api: CertificatesV1Api;
  readonly #policy: NodeClientPolicy;
  readonly #log: Logger;
  readonly #csrs: SupervisedInformer<V1CertificateSigningRequest>;
  /** Requests being decided or waiting for a retry, so that one request is written once at a time. */
  readonly #busy = new Set<string>();
  /** Requests that changed while busy: decided again once the current decision is written. */
  readonly #dirty = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(opts: { kc: KubeConfig; policy: NodeClientPolicy; logger?: Logger }) {
    this.#api = opts.kc.makeApiClient(CertificatesV1Api);
    this.#policy = opts.policy;
    this.#log = opts.logger ?? componentLogger('csr-approver');
    const fieldSelector = `spec.signerName=${KUBELET_CLIENT_SIGNER}`;
    this.#csrs = informerFor<V1CertificateSigningRequest>(opts.kc, 'node-csrs', {
      path: '/apis/certificates.k8s.io/v1/certificatesigningrequests',
      fieldSelector,
      list: () => this.#api.listCertificateSigningRequest({ fieldSelector }),
    });
    this.#csrs.onAdd((csr) => this.#consider(csr.metadata!.name!));
    this.#csrs.onUpdate((csr) => this.#consider(csr.metadata!.name!));
  }

  /** Starts watching; resolves once the requests that exist were listed. */
  async start(): Promise<void> {
    this.#csrs.start();
    await this.#csrs.synced;
    this.#log.info('approving virtual node client certificates');
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.#csrs.stop();
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
    const csr = this.#csrs.get('', name);
    if (!csr) return;
    const decision = decideNodeClientCSR(csr, this.#policy);
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
}
