import { describe, expect, it } from 'vitest';
import type { ContainerGroup } from './client.ts';
import { configFileVolume } from './mapping-volumes.ts';
import { describedVolumes, tokenStillFresh, updatedVolumes } from './volume-updates.ts';
import { jwt } from './volume-updates.fixtures.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const file = (path: string, content: string) => ({ path, content: Buffer.from(content) });

describe('describedVolumes', () => {
  it('turns DescribeContainerGroups volumes back into request volumes', () => {
    const group = {
      volumes: [
        {
          name: 'cfg',
          type: 'ConfigFileVolume',
          configFileVolumeConfigFileToPaths: [{ path: 'a.conf', content: b64('x') }],
        },
        { name: 'scratch', type: 'EmptyDirVolume', emptyDirVolumeMedium: 'Memory' },
        {
          name: 'nas',
          type: 'NFSVolume',
          NFSVolumeServer: 'nas.example',
          NFSVolumePath: '/',
          NFSVolumeReadOnly: true,
        },
      ],
    } as ContainerGroup;
    expect(describedVolumes(group)).toEqual([
      {
        name: 'cfg',
        type: 'ConfigFileVolume',
        configFileVolume: { configFileToPath: [{ path: 'a.conf', content: b64('x') }] },
      },
      { name: 'scratch', type: 'EmptyDirVolume', emptyDirVolume: { medium: 'Memory' } },
      { name: 'nas', type: 'NFSVolume', NFSVolume: { server: 'nas.example', path: '/', readOnly: true } },
    ]);
  });
});

describe('updatedVolumes', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  const s = now / 1000;
  const current = [
    configFileVolume('cfg', [file('a.conf', 'one')]),
    { name: 'scratch', type: 'EmptyDirVolume' as const, emptyDirVolume: {} },
  ];

  it('is undefined when the files are the same', () => {
    expect(
      updatedVolumes(current, { cfg: configFileVolume('cfg', [file('a.conf', 'one')]) }, now),
    ).toBeUndefined();
  });

  it('swaps in a changed volume and keeps the others as they are', () => {
    const next = configFileVolume('cfg', [file('a.conf', 'two')]);
    expect(updatedVolumes(current, { cfg: next }, now)).toEqual([next, current[1]]);
  });

  it('counts an added or removed key as a change', () => {
    const next = configFileVolume('cfg', [file('a.conf', 'one'), file('b.conf', 'new')]);
    expect(updatedVolumes(current, { cfg: next }, now)).toEqual([next, current[1]]);
  });

  it('ignores volumes the instance does not have', () => {
    expect(
      updatedVolumes(current, { other: configFileVolume('other', [file('x', 'y')]) }, now),
    ).toBeUndefined();
  });

  it('keeps a token with more than half its lifetime left, and replaces one past it', () => {
    const withToken = (t: string) => [configFileVolume('token', [file('token', t)])];
    const remint = { token: configFileVolume('token', [file('token', jwt(s, s + 3600))]) };
    expect(updatedVolumes(withToken(jwt(s - 1000, s + 2600)), remint, now)).toBeUndefined();
    expect(updatedVolumes(withToken(jwt(s - 2000, s + 1600)), remint, now)).toEqual([remint.token]);
    // Not a token: any difference is a change.
    expect(updatedVolumes(withToken('opaque'), remint, now)).toEqual([remint.token]);
  });
});

describe('tokenStillFresh', () => {
  it('reads iat and exp of a base64-held JWT', () => {
    const now = Date.UTC(2026, 10, 23, 12);
    const s = now / 1000;
    expect(tokenStillFresh(b64(jwt(s - 100, s + 3500)), now)).toBe(true);
    expect(tokenStillFresh(b64(jwt(s - 3500, s + 100)), now)).toBe(false);
    expect(tokenStillFresh(b64(jwt(s - 3700, s - 100)), now)).toBe(false);
    expect(tokenStillFresh(b64('not.a-jwt'), now)).toBe(false);
  });
});
