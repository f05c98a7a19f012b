/**
 * spillway/nginx: Debian's nginx on the busybox layer, configured as the upstream `nginx` image is: serves
 * /usr/share/nginx/html on :80 from /etc/nginx/conf.d/default.conf (mount a ConfigMap there to change it),
 * logs to stdout/stderr, runs in the foreground (`-g "daemon off;"` in Cmd), master as root and workers as
 * nobody, stops gracefully on SIGQUIT. Its shared libraries come from the Debian packages nginx depends on,
 * resolved by the binary's needs (hack/images/debian.ts libraryClosure), not from this host.
 */
import { join } from 'node:path';
import { withParents, type TarEntry } from '../oci.ts';
import { busyboxLayer, checkTag } from './base.ts';
import {
  copyrightEntries,
  debianPackages,
  fileEntry,
  libraryClosure,
  libraryDependencies,
  upstreamVersion,
  type DebianTree,
} from './debian.ts';
import { PATH_ENV, type BuildContext, type BuiltImage } from './recipe.ts';
import { textEntry } from './store.ts';

/** Files of nginx-common the configuration includes or a user's configuration commonly does. */
const COMMON_FILES = [
  'etc/nginx/mime.types',
  'etc/nginx/fastcgi.conf',
  'etc/nginx/fastcgi_params',
  'etc/nginx/proxy_params',
  'etc/nginx/scgi_params',
  'etc/nginx/uwsgi_params',
  'etc/nginx/koi-utf',
  'etc/nginx/koi-win',
  'etc/nginx/win-utf',
  'usr/share/nginx/html/index.html',
];

/** The main configuration: upstream's, with the workers as nobody and the logs on the container's streams. */
export const NGINX_CONF = `user nobody nogroup;
worker_processes auto;
pid /run/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log /dev/stdout main;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
`;

/** The default site, as upstream's /etc/nginx/conf.d/default.conf (IPv4 only: a pod may have no IPv6). */
export const DEFAULT_SITE = `server {
    listen 80;
    server_name localhost;

    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }

    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
`;

export async function nginx(ctx: BuildContext): Promise<BuiltImage> {
  const [server, common, ...libs] = debianPackages(
    ['nginx', 'nginx-common', ...libraryDependencies('nginx', ctx.debs)],
    ctx.debs,
  ) as [DebianTree, DebianTree, ...DebianTree[]];
  checkTag('nginx', upstreamVersion(server.version), `Debian's nginx ${server.version}`);
  const binary = join(server.root, 'usr/sbin/nginx');
  const entries = libraryClosure([binary], libs);
  copyrightEntries([server, ...libs], ctx.debs, entries);
  const files: TarEntry[] = [
    ...entries.values(),
    { ...fileEntry('usr/sbin/nginx', binary), mode: 0o755 },
    ...COMMON_FILES.map((f) => fileEntry(f, join(common.root, f))),
    textEntry('etc/nginx/nginx.conf', NGINX_CONF),
    textEntry('etc/nginx/conf.d/default.conf', DEFAULT_SITE),
    textEntry(
      'usr/share/nginx/html/50x.html',
      '<!DOCTYPE html>\n<html><head><title>Error</title></head>\n<body><h1>An error occurred.</h1></body></html>\n',
    ),
    // Debian's build writes its compiled-in paths here (temp files, the log nginx opens before reading
    // the configuration); upstream's image links its logs to the container's streams the same way.
    { path: 'var/lib/nginx', type: 'dir', mode: 0o755 },
    { path: 'var/log/nginx/access.log', type: 'symlink', mode: 0o777, target: '/dev/stdout' },
    { path: 'var/log/nginx/error.log', type: 'symlink', mode: 0o777, target: '/dev/stderr' },
    { path: 'run', type: 'dir', mode: 0o755 },
    { path: 'var/cache/nginx', type: 'dir', mode: 0o755 },
  ];
  const base = await busyboxLayer(ctx);
  const sources = [server, common, ...libs].map((t) => `${t.pkg} ${t.version}`).join(', ');
  const layer = await ctx.layers.layer(withParents(files), `nginx: Debian ${sources}`);
  return {
    layers: [base.layer, layer],
    config: {
      Env: [PATH_ENV],
      Cmd: ['nginx', '-g', 'daemon off;'],
      ExposedPorts: { '80/tcp': {} },
      StopSignal: 'SIGQUIT',
    },
    inputs: `busybox-static ${base.version}, ${sources}`,
  };
}
