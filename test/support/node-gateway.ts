/**
 * The gateway of the real nodes (test/support/real-nodes.ts): TCP forwarders from the node bridge's address to
 * services that listen on the host's loopback only (the apiserver, the registry). A process of its own, so that it
 * outlives `make cluster-up` like every other cluster component.
 *
 *   node test/support/node-gateway.ts 10.249.0.1:6443=127.0.0.1:41234 10.249.0.1:5000=127.0.0.1:5000
 */
import { startForwarder } from '../../operator/shared/forward.ts';

function endpoint(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i < 0 || !Number.isInteger(port)) throw new Error(`not host:port: ${s}`);
  return { host: s.slice(0, i), port };
}

for (const arg of process.argv.slice(2)) {
  const [from, to] = arg.split('=');
  if (!from || !to)
    throw new Error(`usage: node-gateway.ts <listen host:port>=<target host:port> ...; got ${arg}`);
  const listen = endpoint(from);
  const target = endpoint(to);
  await startForwarder(listen, target);
  console.log(`forwarding ${from} to ${to}`);
}
