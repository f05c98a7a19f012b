/**
 * A TCP forwarder: every connection to `listen` is piped, byte for byte, to `target`. For services that listen on
 * loopback only (the apiserver, the registry, a fake endpoint) and must be reached from a bridge or a pod network.
 */
import { createConnection, createServer, type Server } from 'node:net';

/** Listens on `listen` and forwards each connection to `target`; resolves once listening. */
export async function startForwarder(
  listen: { host: string; port: number },
  target: { host: string; port: number },
): Promise<Server> {
  const server = createServer((client) => {
    const upstream = createConnection(target);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, resolve);
  });
  return server;
}
