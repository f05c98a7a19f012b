import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { GracefulShutdown } from './shared/shutdown.ts';
import {
  commandOptions,
  firstTermOnly,
  namespaceErrorIsFine,
  parseFlags,
  portProblems,
  UsageError,
  virtualNodeEntries,
  type ClusterCommand,
} from './cli-flags.ts';

describe('signals', () => {
  it('a repeated SIGTERM (make forwarding the process group one) still lets every closer run', async () => {
    const signals = new EventEmitter();
    const exits: number[] = [];
    const shutdown = new GracefulShutdown({ exit: (code) => exits.push(code) });
    let closed = false;
    shutdown.onShutdown('webhooks', async () => {
      await new Promise((r) => setTimeout(r, 20));
      closed = true;
    });
    shutdown.listen(firstTermOnly(signals));
    signals.emit('SIGTERM');
    signals.emit('SIGTERM');
    expect(await shutdown.shutdown('test')).toBe(0);
    expect(closed).toBe(true);
    expect(exits).toEqual([0]);
  });

  it('Ctrl-C twice still exits at once', () => {
    const signals = new EventEmitter();
    const exits: number[] = [];
    const shutdown = new GracefulShutdown({ exit: (code) => exits.push(code) });
    shutdown.onShutdown('stuck', () => new Promise(() => {}));
    shutdown.listen(firstTermOnly(signals));
    signals.emit('SIGTERM');
    signals.emit('SIGINT');
    expect(exits).toEqual([130]);
    shutdown.unlisten();
    expect(signals.listenerCount('SIGTERM')).toBe(0);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });
});

describe('flags', () => {
  it('refuses a port that is not one', () => {
    expect(portProblems(parseFlags(['run', '--kubelet-port', 'x']).values)).toBe(
      '--kubelet-port must be a port number, not "x"',
    );
    expect(portProblems(parseFlags(['run', '--metrics-port', '0']).values)).toBeUndefined();
  });

  it('gives a local node the host capacity, under --capacity', () => {
    const [entry] = virtualNodeEntries(
      parseFlags(['run', '--provider', 'local', '--capacity', 'pods=40']).values,
    );
    expect(entry!.config.capacity).toMatchObject({ cpu: String(availableParallelism()), pods: '40' });
    expect(entry!.config.capacity?.memory).toMatch(/^\d+Ki$/);
    expect(entry!.config.capacity?.['ephemeral-storage']).toMatch(/^\d+Ki$/);
  });

  it('gives a local node its bridge address as InternalIP (the apiserver refuses to proxy to loopback)', () => {
    const node = (args: string[]) => virtualNodeEntries(parseFlags(['run', ...args]).values)[0]!.config;
    expect(node(['--provider', 'local']).internalIP).toBe('10.250.0.1');
    expect(node(['--provider', 'local', '--node-ip', '10.1.2.3']).internalIP).toBe('10.1.2.3');
    expect(node([]).internalIP).toBe('127.0.0.1');
  });

  it('leaves a fake node the provider capacity unless --capacity sets some', () => {
    expect(virtualNodeEntries(parseFlags(['run']).values)[0]!.config.capacity).toBeUndefined();
    expect(virtualNodeEntries(parseFlags(['run', '--capacity', 'cpu=3']).values)[0]!.config.capacity).toEqual(
      {
        cpu: '3',
      },
    );
  });
});

describe('command options', () => {
  const options = (...argv: string[]) => {
    const { positionals, values } = parseFlags(argv);
    return commandOptions(positionals[0] as ClusterCommand, values, {});
  };
  const usageError = (...argv: string[]) => {
    try {
      options(...argv);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      return (err as Error).message;
    }
    throw new Error('no error');
  };

  it.each([
    [['run', '--workers', '0'], '--workers must be a positive integer, not "0"'],
    [['controller', '--workers', '2.5'], '--workers must be a positive integer, not "2.5"'],
    [['run', '--capacity-cooldown=-1'], '--capacity-cooldown must be an integer of at least 0, not "-1"'],
    [['virtual-node', '--pod-workers', 'many'], '--pod-workers must be a positive integer, not "many"'],
    [['run', '--max-create-attempts', ''], '--max-create-attempts must be a positive integer, not ""'],
    [['run', '--metrics-port', '70000'], '--metrics-port must be a port number, not "70000"'],
    [['controller', '--webhook-port=-1'], '--webhook-port must be a port number, not "-1"'],
    [['run', '--kubelet-port', '0'], '--kubelet-port must be a port number, not "0"'],
    [['run', '--metrics-auth', 'basic'], '--metrics-auth must be none or kubernetes, not "basic"'],
    [['controller', '--tls-mode', 'acme'], '--tls-mode must be self-managed or external, not "acme"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(...argv)).toBe(message);
  });

  it('passes the tuning flags to the controller and the pod controllers, and leaves their defaults otherwise', () => {
    const tuned = options(
      'run',
      '--workers',
      '4',
      '--capacity-cooldown',
      '0',
      '--pod-workers',
      '8',
      '--max-create-attempts',
      '2',
    );
    expect(tuned.command === 'run' && [tuned.controller, tuned.pods]).toEqual([
      { watchNamespaces: [], approveNodeCsrs: [], workers: 4, capacityCooldownSeconds: 0 },
      { workers: 8, maxCreateAttempts: 2 },
    ]);
    const plain = options('run');
    expect(plain.command === 'run' && [plain.controller, plain.pods]).toEqual([
      { watchNamespaces: [], approveNodeCsrs: [] },
      {},
    ]);
  });

  it('gives each command its own options: the controller runs no node, the virtual node no webhooks', () => {
    const controller = options('controller', '--watch-namespaces', ' a, ,b', '--approve-node-csrs', 'vn-1');
    expect(controller).toMatchObject({
      command: 'controller',
      webhooks: { host: '0.0.0.0', tlsMode: 'self-managed' },
      controller: { watchNamespaces: ['a', 'b'], approveNodeCsrs: ['vn-1'] },
    });
    expect(controller).not.toHaveProperty('nodes');
    const node = options('virtual-node', '--node-name', 'vn-1');
    expect(node).toMatchObject({
      command: 'virtual-node',
      nodes: [{ provider: 'fake', config: { name: 'vn-1' } }],
    });
    expect(node).not.toHaveProperty('webhooks');
    expect(options('run', '--webhook-port', '9443')).toMatchObject({
      webhooks: { host: '127.0.0.1', port: 9443 },
    });
  });

  it("gives a local node its provider's pod CIDR, for its Node and its provider alike", () => {
    const run = options('run', '--provider', 'local', '--kubeconfig', '/k');
    expect(run.command === 'run' && run.nodes[0]).toMatchObject({
      config: { podCIDR: '10.250.0.0/24' },
      providerOptions: { podCIDR: '10.250.0.0/24' },
    });
  });

  it('hands --cri-endpoint and --runtime-handler to a local node (its factory reads them as its environment)', () => {
    const run = options(
      'run',
      '--provider',
      'local',
      '--kubeconfig',
      '/k',
      '--cri-endpoint',
      '/s.sock',
      '--runtime-handler',
      'kata',
    );
    expect(run.command === 'run' && run.nodes[0]?.providerOptions.env).toMatchObject({
      SPILLWAY_CRI_ENDPOINT: '/s.sock',
      SPILLWAY_RUNTIME_HANDLER: 'kata',
    });
  });

  it('refuses run --provider local without a kubeconfig file for CoreDNS (not a usage error)', () => {
    expect(() => options('run', '--provider', 'local')).toThrow(
      'run --provider local needs --kubeconfig or $KUBECONFIG (CoreDNS reads it)',
    );
  });

  it('accepts an existing namespace, and a refused create only from the chart controller', () => {
    expect(namespaceErrorIsFine('run', 409)).toBe(true);
    expect(namespaceErrorIsFine('controller', 403)).toBe(true);
    expect(namespaceErrorIsFine('run', 403)).toBe(false);
    expect(namespaceErrorIsFine('controller', 500)).toBe(false);
    expect(namespaceErrorIsFine('run', undefined)).toBe(false);
  });
});
