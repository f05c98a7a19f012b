/**
 * The fake ECI endpoint as a program: what spillway/fake-eci runs (hack/images/fake-eci.ts) behind the chart's
 * fakeEci Service (charts/spillway/templates/fake-eci.yaml), configured by the environment the chart sets:
 *
 *   FAKE_ECI_HOST, FAKE_ECI_PORT        where to listen (default 127.0.0.1:8080; the chart gives 0.0.0.0)
 *   FAKE_ECI_REGION_ID                  the region it serves (default cn-hangzhou)
 *   FAKE_ECI_ACCESS_KEY_ID/_SECRET      the AccessKey pair whose signatures it accepts (required)
 *
 * FakeEci listens on loopback only, so the port is a TCP relay to it: bytes pass through unchanged, so request
 * signatures (which cover the Host header) and WebSocket upgrades work as they do against the fake directly.
 *
 *   node test/support/fake-eci/main.ts
 */
import { startForwarder } from '../../../operator/shared/forward.ts';
import { FakeEci } from './server.ts';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: give the AccessKey pair the provider signs with`);
  return value;
}

async function main(): Promise<void> {
  const host = process.env.FAKE_ECI_HOST ?? '127.0.0.1';
  const port = Number(process.env.FAKE_ECI_PORT ?? '8080');
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`FAKE_ECI_PORT=${process.env.FAKE_ECI_PORT} is not a port number`);
  const fake = await FakeEci.start({
    regionId: process.env.FAKE_ECI_REGION_ID ?? 'cn-hangzhou',
    accessKeyId: required('FAKE_ECI_ACCESS_KEY_ID'),
    accessKeySecret: required('FAKE_ECI_ACCESS_KEY_SECRET'),
  });
  const [, upstreamPort] = fake.endpoint.split(':');
  const relay = await startForwarder({ host, port }, { host: '127.0.0.1', port: Number(upstreamPort) });
  console.log(`fake-eci: serving region ${fake.regionId} on ${host}:${port}`);
  const stop = () => {
    console.log('fake-eci: stopping');
    relay.close();
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(`fake-eci: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
