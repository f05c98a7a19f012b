import { createServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1 (bound, read, released), for a server that must be told its port before it starts
 * (kube-proxy's metrics and healthz, servers a test starts). Another process may take it in between.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
