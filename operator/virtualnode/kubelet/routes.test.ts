import { describe, expect, it } from 'vitest';
import { kubeletRoute } from './routes.ts';

/** Decoded segments, as the kubelet API server routes by them. */
const split = (path: string) => path.split('/').filter(Boolean).map(decodeURIComponent);

describe('kubeletRoute', () => {
  it.each([
    ['/containerLogs/default/web/app', 'containerLogs'],
    ['/exec/default/web/app', 'exec'],
    ['/attach/default/web/app', 'attach'],
    ['/portForward/default/web', 'portForward'],
    ['/run/default/web/app', 'run'],
    ['/runningpods/', 'runningpods'],
    ['/pods', 'pods'],
    ['/stats/summary', 'stats'],
    ['/metrics', 'metrics'],
    ['/metrics/cadvisor', 'metrics'],
    ['/metrics/resource', 'metrics/resource'],
    ['/healthz', 'healthz'],
    ['/', 'other'],
    ['/other', 'other'],
    ['/metrics%2Fresource', 'other'],
    ['/Exec/default/web/app', 'other'],
    ['/wp-login.php', 'other'],
  ])('%s is %s', (path, route) => {
    expect(kubeletRoute(split(path))).toBe(route);
  });
});
