/**
 * The fake ECI endpoint's own guarantees: it checks signatures exactly as Alibaba's SDK computes them (the SDK's
 * `getAuthorization` is the reference), refuses tampering, replays and wrong secrets, and pages like ECI.
 */
import OpenApiUtilModule from '@alicloud/openapi-util';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeEci } from './server.ts';
import { percentEncode } from './signature.ts';

// CommonJS `exports.default`: Node's loader gives module.exports, vitest gives the class (see eci/client.ts).
const OpenApiUtil = (
  typeof OpenApiUtilModule === 'function' ? OpenApiUtilModule : OpenApiUtilModule.default
) as typeof OpenApiUtilModule.default;

let fake: FakeEci;
beforeEach(async () => {
  fake = await FakeEci.start();
});
afterEach(() => fake.close());

interface Signed {
  query: Record<string, string>;
  headers: Record<string, string>;
}

/** Signs like the SDK does (same headers, same `getAuthorization`), with `secret`. */
function sign(action: string, query: Record<string, string>, secret = fake.accessKeySecret): Signed {
  const headers: Record<string, string> = {
    host: fake.endpoint,
    'x-acs-version': '2018-08-08',
    'x-acs-action': action,
    'x-acs-date': new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    'x-acs-signature-nonce': createHash('sha256').update(String(Math.random())).digest('hex'),
    'x-acs-content-sha256': createHash('sha256').update('').digest('hex'),
  };
  const req = { method: 'POST', pathname: '/', query, headers } as unknown as Parameters<
    typeof OpenApiUtil.getAuthorization
  >[0];
  headers.authorization = OpenApiUtil.getAuthorization(
    req,
    'ACS3-HMAC-SHA256',
    headers['x-acs-content-sha256']!,
    fake.accessKeyId,
    secret,
  );
  return { query, headers };
}

/** Sends a signed request (optionally altered after signing) and returns ECI's answer. */
function send(
  signed: Signed,
  alter: (s: Signed) => void = () => {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const copy = structuredClone(signed);
  alter(copy);
  const qs = Object.entries(copy.query)
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .join('&');
  const [host, port] = fake.endpoint.split(':');
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port: Number(port), method: 'POST', path: `/?${qs}`, headers: copy.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('ACS3-HMAC-SHA256 verification', () => {
  const query = { RegionId: 'cn-hangzhou', Tag: "a b+c/d!'()*é", 'Tag.1.Key': 'k' };

  it('accepts a request signed by the SDK’s own algorithm, special characters included', async () => {
    const res = await send(sign('DescribeRegions', query));
    expect(res.status).toBe(200);
    expect(res.body.Regions).toEqual([expect.objectContaining({ RegionId: 'cn-hangzhou' })]);
  });

  it.each<[string, (s: Signed) => void, string]>([
    [
      'a query value changed after signing',
      (s) => (s.query.RegionId = 'cn-beijing'),
      'SignatureDoesNotMatch',
    ],
    ['an added query parameter', (s) => (s.query.Extra = '1'), 'SignatureDoesNotMatch'],
    [
      'a changed signed header',
      (s) => (s.headers['x-acs-action'] = 'DeleteContainerGroup'),
      'SignatureDoesNotMatch',
    ],
    ['an unsigned x-acs header', (s) => (s.headers['x-acs-extra'] = 'x'), 'SignatureDoesNotMatch'],
    [
      'a body that does not match its hash',
      (s) => (s.headers['x-acs-content-sha256'] = 'ab'.repeat(32)),
      'ContentSHA256NotMatch',
    ],
    ['no Authorization header', (s) => delete s.headers.authorization, 'MissingAuthorization'],
    [
      'an unknown access key',
      (s) => (s.headers.authorization = s.headers.authorization!.replace(fake.accessKeyId, 'LTAI-other')),
      'InvalidAccessKeyId.NotFound',
    ],
  ])('rejects %s', async (_name, alter, code) => {
    const res = await send(sign('DescribeRegions', query), alter);
    expect(res.body.Code).toBe(code);
    expect(fake.calls('DescribeRegions')).toBe(0);
  });

  it('rejects a wrong secret', async () => {
    expect((await send(sign('DescribeRegions', query, 'wrong-secret'))).body.Code).toBe(
      'SignatureDoesNotMatch',
    );
  });

  it('rejects a replayed request (same nonce)', async () => {
    const signed = sign('DescribeRegions', query);
    expect((await send(signed)).status).toBe(200);
    expect((await send(signed)).body.Code).toBe('SignatureNonceUsed');
  });
});

describe('ECI behaviour', () => {
  const create = (name: string, token?: string) =>
    send(
      sign('CreateContainerGroup', {
        RegionId: fake.regionId,
        SecurityGroupId: 'sg-1',
        VSwitchId: 'vsw-1',
        ContainerGroupName: name,
        'Container.1.Name': 'app',
        'Container.1.Image': 'nginx',
        'Tag.1.Key': 'team',
        'Tag.1.Value': 'a',
        ...(token && { ClientToken: token }),
      }),
    );

  it('pages DescribeContainerGroups by 20 with NextToken, filtered by tag', async () => {
    for (let i = 0; i < 25; i++) await create(`g-${i}`);
    const page = (extra: Record<string, string>) =>
      send(
        sign('DescribeContainerGroups', {
          RegionId: fake.regionId,
          Limit: '20',
          'Tag.1.Key': 'team',
          'Tag.1.Value': 'a',
          ...extra,
        }),
      );
    const first = await page({});
    expect(first.body).toMatchObject({ TotalCount: 25, NextToken: '20' });
    expect((first.body.ContainerGroups as unknown[]).length).toBe(20);
    const second = await page({ NextToken: '20' });
    expect((second.body.ContainerGroups as unknown[]).length).toBe(5);
    expect(second.body.NextToken).toBe('');
    expect((await page({ 'Tag.1.Value': 'b' })).body.TotalCount).toBe(0);
    expect(
      (await send(sign('DescribeContainerGroups', { RegionId: fake.regionId, Limit: '21' }))).body.Code,
    ).toBe('InvalidParameter.Limit');
  });

  it('returns the same group for a repeated ClientToken and refuses the token with other parameters', async () => {
    const a = await create('same', 'tok-1');
    const b = await create('same', 'tok-1');
    expect(b.body.ContainerGroupId).toBe(a.body.ContainerGroupId);
    expect(fake.groups()).toHaveLength(1);
    expect((await create('different', 'tok-1')).body.Code).toBe('IdempotentParameterMismatch');
  });

  it('carries out a create whose answer it loses, and lists new groups only after the listing lag', async () => {
    fake.store.timings.listingLagMs = 200;
    fake.loseNextResponses('CreateContainerGroup');
    await expect(create('lost', 'tok-2')).rejects.toThrow(/socket hang up/);
    expect(fake.groups()).toHaveLength(1);
    const list = () =>
      send(sign('DescribeContainerGroups', { RegionId: fake.regionId, 'Tag.1.Key': 'team' }));
    expect((await list()).body.TotalCount).toBe(0);
    // The replay with the same token and parameters answers the group the lost call made.
    expect((await create('lost', 'tok-2')).body.ContainerGroupId).toBe(fake.groups()[0]!.id);
    await vi.waitFor(async () => expect((await list()).body.TotalCount).toBe(1));
  });
});
