/**
 * The images of Go programs: pause (ours, hack/images/pause, built here), agnhost and CoreDNS (built by
 * hack/build-tools.sh into bin/ from the pinned Kubernetes and CoreDNS modules). Each binary is a layer of
 * its own, so a new binary replaces one layer and leaves the shared base untouched.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { sha256, withParents, type TarEntry } from '../oci.ts';
import { accountEntries, BASE_GROUPS, BASE_USERS, busyboxLayer, checkTag } from './base.ts';
import { debianPackage, debianPrograms, fileEntry, run } from './debian.ts';
import { PATH_ENV, type BuildContext, type BuiltImage } from './recipe.ts';
import { textEntry } from './store.ts';

const NONROOT = 65532;

/** The Go toolchain: /usr/local/go/bin/go where the machine image keeps it, else `go` on PATH. */
function goBinary(): string {
  return existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go';
}

/** A pinned binary from bin/, with a clear error when hack/build-tools.sh has not built it yet. */
function pinnedBinary(ctx: BuildContext, name: string, tool: string): { path: string; digest: string } {
  const path = join(ctx.root, 'bin', name);
  if (!existsSync(path))
    throw new Error(
      `bin/${name} is missing: build it with \`bash hack/build-tools.sh ${tool}\` (or \`make tools\`)`,
    );
  return { path, digest: sha256(readFileSync(path)) };
}

/** The `KEY=value` pins of hack/versions.env. */
function versions(root: string): Record<string, string> {
  const text = readFileSync(join(root, 'hack/versions.env'), 'utf8');
  return Object.fromEntries([...text.matchAll(/^([A-Z_]+)=(\S+)/gm)].map((m) => [m[1]!, m[2]!]));
}

/**
 * hack/images/pause built static (CGO_ENABLED=0, -trimpath, stripped), cached by the hash of its source and
 * the Go version: the same source and toolchain give the same bytes, so the layer digest stays put.
 */
function pauseBinary(ctx: BuildContext): string {
  const src = join(ctx.root, 'hack/images/pause');
  const go = goBinary();
  const goVersion = run(go, ['env', 'GOVERSION']).trim();
  const hash = createHash('sha256').update(goVersion);
  for (const f of readdirSync(src).sort()) hash.update(f).update(readFileSync(join(src, f)));
  const out = join(ctx.cacheDir, `pause-${hash.digest('hex').slice(0, 16)}`);
  if (!existsSync(out)) {
    ctx.log(`go build hack/images/pause (${goVersion})`);
    mkdirSync(ctx.cacheDir, { recursive: true });
    run(go, ['build', '-trimpath', '-ldflags=-s -w', '-o', `${out}.tmp`, '.'], src, {
      ...process.env,
      CGO_ENABLED: '0',
      GOOS: 'linux',
      GOARCH: 'amd64',
      GOFLAGS: '-mod=mod -buildvcs=false',
      GOTOOLCHAIN: 'local',
    });
    renameSync(`${out}.tmp`, out);
  }
  return out;
}

/** spillway/pause: one static binary, /pause, run as 65535 like upstream's `registry.k8s.io/pause`. */
export async function pause(ctx: BuildContext): Promise<BuiltImage> {
  const binary = pauseBinary(ctx);
  const layer = await ctx.layers.layer(
    [{ ...fileEntry('pause', binary), mode: 0o755 }],
    'pause: hack/images/pause',
  );
  return {
    layers: [layer],
    config: { User: '65535:65535', Entrypoint: ['/pause'] },
    inputs: `hack/images/pause ${sha256(readFileSync(binary)).slice(7, 19)}`,
  };
}

/**
 * spillway/agnhost: bin/agnhost on the busybox layer, laid out as upstream's Dockerfile does
 * (k8s.io/kubernetes/test/images/agnhost/Dockerfile): /agnhost and the /agnhost-2 symlink the
 * entrypoint tests use, /uploads for netexec, porter's localhost.crt/key, the user `user-defined-in-image`
 * (1000) in group `group-defined-in-image` (50000) for the SupplementalGroups test, and of upstream's alpine
 * extras the two the conformance tests call: `dig` (the DNS tests' probes) and `curl`, from Debian, in a layer
 * of their own. Not here: iperf, bash, ss/iproute2 and the old CoreDNS upstream bundles.
 */
export async function agnhost(ctx: BuildContext): Promise<BuiltImage> {
  const binary = pinnedBinary(ctx, 'agnhost', 'kubernetes');
  const kube = versions(ctx.root).KUBERNETES_VERSION;
  const module = join(
    run(goBinary(), ['env', 'GOMODCACHE']).trim(),
    `k8s.io/kubernetes@${kube}/test/images/agnhost`,
  );
  if (!existsSync(join(module, 'VERSION')))
    throw new Error(`${module} is missing: run \`bash hack/build-tools.sh kubernetes\`, which downloads it`);
  checkTag('agnhost', readFileSync(join(module, 'VERSION'), 'utf8').trim(), `agnhost at Kubernetes ${kube}`);
  const base = await busyboxLayer(ctx);
  const tools = debianPrograms(
    [
      { pkg: 'bind9-dnsutils', paths: ['usr/bin/dig'] },
      { pkg: 'curl', paths: ['usr/bin/curl'] },
    ],
    ctx.debs,
  );
  const toolSources = tools.packages.map((t) => `${t.pkg} ${t.version}`).join(', ');
  const toolLayer = await ctx.layers.layer(
    withParents(tools.entries),
    `agnhost tools: dig, curl from Debian ${toolSources}`,
  );
  const entries: TarEntry[] = [
    { ...fileEntry('agnhost', binary.path), mode: 0o755 },
    { path: 'agnhost-2', type: 'symlink', mode: 0o777, target: 'agnhost' },
    { path: 'uploads', type: 'dir', mode: 0o755 },
    fileEntry('localhost.crt', join(module, 'porter/localhost.crt')),
    fileEntry('localhost.key', join(module, 'porter/localhost.key')),
    ...accountEntries(
      [
        ...BASE_USERS,
        { name: 'user-defined-in-image', uid: 1000, gid: 1000, home: '/home/user-defined-in-image' },
      ],
      [
        ...BASE_GROUPS,
        { name: 'user-defined-in-image', gid: 1000 },
        { name: 'group-defined-in-image', gid: 50000, members: ['user-defined-in-image'] },
      ],
    ),
    { path: 'home/user-defined-in-image', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
  ];
  const layer = await ctx.layers.layer(withParents(entries), `agnhost: bin/agnhost (Kubernetes ${kube})`);
  const ports = [80, 8080, 8081, 9376, 5000];
  return {
    layers: [base.layer, toolLayer, layer],
    config: {
      Env: [PATH_ENV],
      Entrypoint: ['/agnhost'],
      Cmd: ['pause'],
      ExposedPorts: Object.fromEntries(ports.map((p) => [`${p}/tcp`, {}])),
    },
    inputs: `busybox-static ${base.version}, ${toolSources}, bin/agnhost ${binary.digest.slice(7, 19)} (Kubernetes ${kube})`,
  };
}

/**
 * spillway/coredns: bin/coredns, as upstream's image (distroless static, nonroot) has it: /coredns, the CA
 * bundle (Debian's ca-certificates, for forwarding over TLS), nonroot 65532 given by number so that
 * `runAsNonRoot` can verify it. Binding :53 as nonroot needs NET_BIND_SERVICE, which upstream's Deployment adds.
 */
export async function coredns(ctx: BuildContext): Promise<BuiltImage> {
  const binary = pinnedBinary(ctx, 'coredns', 'coredns');
  const pinned = versions(ctx.root).COREDNS_VERSION?.replace(/^v/, '') ?? '';
  checkTag('coredns', pinned, 'COREDNS_VERSION in hack/versions.env');
  const ca = debianPackage('ca-certificates', ctx.debs);
  const certDir = join(ca.root, 'usr/share/ca-certificates/mozilla');
  const bundle = readdirSync(certDir)
    .filter((f) => f.endsWith('.crt'))
    .sort()
    .map((f) => readFileSync(join(certDir, f), 'utf8').trimEnd() + '\n')
    .join('');
  const entries: TarEntry[] = [
    { ...fileEntry('coredns', binary.path), mode: 0o755 },
    textEntry('etc/ssl/certs/ca-certificates.crt', bundle),
    fileEntry(
      'usr/share/doc/ca-certificates/copyright',
      join(ca.root, 'usr/share/doc/ca-certificates/copyright'),
    ),
    ...accountEntries(
      [
        { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/sbin/nologin' },
        { name: 'nonroot', uid: NONROOT, gid: NONROOT, home: '/home/nonroot', shell: '/sbin/nologin' },
      ],
      [
        { name: 'root', gid: 0 },
        { name: 'nonroot', gid: NONROOT },
      ],
    ),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: NONROOT, gid: NONROOT },
  ];
  const layer = await ctx.layers.layer(
    withParents(entries),
    `coredns: bin/coredns ${pinned}, ca-certificates ${ca.version}`,
  );
  return {
    layers: [layer],
    config: {
      User: `${NONROOT}:${NONROOT}`,
      Env: [PATH_ENV],
      Entrypoint: ['/coredns'],
      WorkingDir: '/',
      ExposedPorts: { '53/tcp': {}, '53/udp': {} },
    },
    inputs: `bin/coredns ${binary.digest.slice(7, 19)}, ca-certificates ${ca.version}`,
  };
}

/**
 * spillway/metrics-server: bin/metrics-server (sigs.k8s.io/metrics-server at METRICS_SERVER_VERSION), as upstream's
 * image has it (distroless static, nonroot): /metrics-server, run as 65532 given by number for `runAsNonRoot`.
 */
export async function metricsServer(ctx: BuildContext): Promise<BuiltImage> {
  const binary = pinnedBinary(ctx, 'metrics-server', 'metrics-server');
  const pinned = versions(ctx.root).METRICS_SERVER_VERSION?.replace(/^v/, '') ?? '';
  checkTag('metrics-server', pinned, 'METRICS_SERVER_VERSION in hack/versions.env');
  const entries: TarEntry[] = [
    { ...fileEntry('metrics-server', binary.path), mode: 0o755 },
    ...accountEntries(
      [{ name: 'nonroot', uid: NONROOT, gid: NONROOT, home: '/home/nonroot', shell: '/sbin/nologin' }],
      [{ name: 'nonroot', gid: NONROOT }],
    ),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
  ];
  const layer = await ctx.layers.layer(withParents(entries), `metrics-server: bin/metrics-server ${pinned}`);
  return {
    layers: [layer],
    config: { User: `${NONROOT}:${NONROOT}`, Entrypoint: ['/metrics-server'], WorkingDir: '/' },
    inputs: `bin/metrics-server ${binary.digest.slice(7, 19)}`,
  };
}
