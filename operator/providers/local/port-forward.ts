/**
 * `kubectl port-forward` into a local sandbox. A kubelet dials `localhost:<port>` inside the pod's network
 * namespace; a local sandbox's namespace is reachable from the host over the bridge (its eth0 address), as the
 * tcpSocket and httpGet probes reach it, so the host dials the sandbox address instead. A server bound only to
 * the sandbox's 127.0.0.1 is therefore not reachable this way; one bound to 0.0.0.0 or the pod IP (the usual
 * case for anything a Service fronts) is.
 */
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';

/** How long a connection attempt may take before it is reported as a timeout (the kubelet dials without one). */
const DIAL_TIMEOUT_MS = 10_000;

/** Opens a TCP connection to `ip:port` (a sandbox's address); rejects with the dial error a user can act on. */
export function dialSandbox(ip: string, port: number, timeoutMs = DIAL_TIMEOUT_MS): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip, port });
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`dial tcp ${ip}:${port}: ${why}`));
    };
    const timer = setTimeout(() => fail('i/o timeout'), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(err.code === 'ECONNREFUSED' ? 'connect: connection refused' : err.message);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
