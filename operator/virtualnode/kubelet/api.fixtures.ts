/** What the kubelet API tests share: a serving certificate for 127.0.0.1 from a throwaway CA. */
import { createCA, issueCert } from '../../shared/pki.ts';

/** A certificate and key the kubelet API can serve on 127.0.0.1 (valid for an hour). */
export async function loopbackServingCert(): Promise<{ cert: string; key: string }> {
  const ca = await createCA('kubelet-test', 3600_000);
  const serving = await issueCert(ca, {
    subject: 'CN=node',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validForMs: 3600_000,
  });
  return { cert: serving.certPem, key: serving.keyPem };
}
