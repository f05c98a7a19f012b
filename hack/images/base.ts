/**
 * The busybox image, and its one layer that the images with a shell (agnhost, nginx) are built on, as
 * upstream's are on busybox/alpine/Debian: Debian's busybox-static at /bin/busybox with a symlink per applet
 * in /bin (`sh`, `wget`, `nc`...), /etc/passwd and /etc/group with root and nobody, /tmp (1777), /root.
 */
import { join } from 'node:path';
import { withParents, type TarEntry } from '../oci.ts';
import { IMAGES } from './catalog.ts';
import { debianPackage, fileEntry, run, upstreamVersion } from './debian.ts';
import { PATH_ENV, type BuildContext, type BuiltImage } from './recipe.ts';
import { textEntry, type SizedLayer } from './store.ts';

/** A user of an image's /etc/passwd. */
export interface ImageUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell?: string;
}

/** /etc/passwd and /etc/group of the users and groups given, in that order. */
export function accountEntries(
  users: ImageUser[],
  groups: Array<{ name: string; gid: number; members?: string[] }>,
): TarEntry[] {
  const passwd = users.map(
    (u) => `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${u.shell ?? '/bin/sh'}\n`,
  );
  const group = groups.map((g) => `${g.name}:x:${g.gid}:${(g.members ?? []).join(',')}\n`);
  return [textEntry('etc/passwd', passwd.join('')), textEntry('etc/group', group.join(''))];
}

/** root and nobody/nogroup, as upstream busybox and Debian images have them. */
export const BASE_USERS: ImageUser[] = [
  { name: 'root', uid: 0, gid: 0, home: '/root' },
  { name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent', shell: '/bin/false' },
];
export const BASE_GROUPS = [
  { name: 'root', gid: 0 },
  { name: 'nogroup', gid: 65534 },
];

/** The applets the busybox binary at `binary` was built with (`busybox --list`), `busybox` itself excluded. */
export function busyboxApplets(binary: string): string[] {
  return run(binary, ['--list'])
    .split('\n')
    .map((a) => a.trim())
    .filter((a) => a && a !== 'busybox' && !a.includes('/'))
    .sort();
}

/** The busybox layer (shared by every image built on it) and the Debian version it came from. */
export async function busyboxLayer(ctx: BuildContext): Promise<{ layer: SizedLayer; version: string }> {
  const deb = debianPackage('busybox-static', ctx.debs);
  const binary = join(deb.root, 'bin/busybox');
  const entries: TarEntry[] = [
    { ...fileEntry('bin/busybox', binary), mode: 0o755 },
    ...busyboxApplets(binary).map((a): TarEntry => ({
      path: `bin/${a}`,
      type: 'symlink',
      mode: 0o777,
      target: 'busybox',
    })),
    ...accountEntries(BASE_USERS, BASE_GROUPS),
    textEntry('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: 'var', type: 'dir', mode: 0o755 },
    { path: 'usr/sbin', type: 'dir', mode: 0o755 },
    fileEntry(
      'usr/share/doc/busybox-static/copyright',
      join(deb.root, 'usr/share/doc/busybox-static/copyright'),
    ),
  ];
  const layer = await ctx.layers.layer(withParents(entries), `busybox: Debian busybox-static ${deb.version}`);
  return { layer, version: deb.version };
}

/** spillway/busybox: the busybox layer alone, running `sh`. */
export async function busybox(ctx: BuildContext): Promise<BuiltImage> {
  const { layer, version } = await busyboxLayer(ctx);
  checkTag('busybox', upstreamVersion(version), `Debian's busybox-static ${version}`);
  return { layers: [layer], config: { Env: [PATH_ENV], Cmd: ['sh'] }, inputs: `busybox-static ${version}` };
}

/**
 * Throws when the catalog's tag is not the version of what the image carries: the tag must change with the
 * content, so a new Debian or binary version means a new tag in hack/images/catalog.ts.
 */
export function checkTag(name: keyof typeof IMAGES, version: string, what: string): void {
  const tag = IMAGES[name].split(':')[1];
  if (tag !== version)
    throw new Error(
      `${name}: ${what} is version ${version}, but hack/images/catalog.ts tags it ${tag}: set the tag to ${version}`,
    );
}
