import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  decodeHeaderBlock,
  encodeDataFrame,
  encodeGoAway,
  encodeHeaderBlock,
  encodePing,
  encodeRstStream,
  encodeSynReply,
  HeaderZlib,
  MAX_HEADER_BLOCK_BYTES,
  parseFrame,
  RstStatus,
  SPDY3_DICTIONARY,
  SpdyProtocolError,
  type SpdyFrame,
} from './spdy-frames.ts';

/**
 * Written by Go's github.com/moby/spdystream v0.5.1 framer (the one kube-apiserver uses towards kubelets):
 * SYN_STREAM 1 {streamType: error}, SYN_STREAM 3 {streamType: stdout}, DATA 3 "hi" + FIN, PING 1.
 * The two header blocks share one zlib stream: the second only decodes after the first.
 */
const GO_FRAMES = Buffer.from(
  '80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff' +
    '800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff' +
    '00000003010000026869' +
    '800300060000000400000001',
  'hex',
);

function parseAll(buf: Buffer): SpdyFrame[] {
  const frames: SpdyFrame[] = [];
  let parsed;
  while ((parsed = parseFrame(buf))) {
    frames.push(parsed.frame);
    buf = buf.subarray(parsed.size);
  }
  expect(buf.length).toBe(0);
  return frames;
}

describe('SPDY/3 dictionary', () => {
  it('is byte for byte the dictionary Go spdystream seeds zlib with', () => {
    expect(SPDY3_DICTIONARY.length).toBe(1423);
    expect(createHash('sha256').update(SPDY3_DICTIONARY).digest('hex')).toBe(
      '51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02',
    );
  });
});

describe('frames written by Go spdystream', () => {
  it('parse into two streams, their data with FIN, and a client ping', async () => {
    const frames = parseAll(GO_FRAMES);
    expect(frames.map((f) => f.type)).toEqual(['syn_stream', 'syn_stream', 'data', 'ping']);
    const inflate = new HeaderZlib('inflate');
    const headers = [];
    for (const f of frames) {
      if (f.type === 'syn_stream') headers.push(decodeHeaderBlock(await inflate.process(f.headerBlock)));
    }
    inflate.close();
    expect(headers).toEqual([{ streamtype: 'error' }, { streamtype: 'stdout' }]);
    expect(frames[2]).toMatchObject({ type: 'data', streamId: 3, flags: 1 });
    expect((frames[2] as { data: Buffer }).data.toString()).toBe('hi');
    expect(frames[3]).toEqual({ type: 'ping', id: 1 });
  });

  it('need the shared zlib context: the second header block alone does not decode', async () => {
    const [, second] = parseAll(GO_FRAMES) as { headerBlock: Buffer }[];
    const fresh = new HeaderZlib('inflate');
    await expect(fresh.process(second!.headerBlock)).rejects.toThrow(SpdyProtocolError);
    fresh.close();
  });
});

describe('frame encoding', () => {
  it.each([
    ['DATA with FIN', encodeDataFrame(5, Buffer.from('hi'), true), '00000005010000026869'],
    ['DATA without FIN', encodeDataFrame(2, Buffer.alloc(0), false), '0000000200000000'],
    ['PING', encodePing(7), '800300060000000400000007'],
    ['RST_STREAM(CANCEL)', encodeRstStream(3, RstStatus.Cancel), '80030003000000080000000300000005'],
    ['GOAWAY(OK)', encodeGoAway(9, 0), '80030007000000080000000900000000'],
    ['SYN_REPLY', encodeSynReply(1, 0, Buffer.from('ab')), '8003000200000006' + '00000001' + '6162'],
  ])('%s matches the SPDY/3 layout', (_name, frame, hex) => {
    expect(frame.toString('hex')).toBe(hex);
  });

  it('parses nothing until a whole frame has arrived', () => {
    const frame = encodeDataFrame(1, Buffer.from('hello'), false);
    for (let n = 0; n < frame.length; n++) expect(parseFrame(frame.subarray(0, n))).toBeUndefined();
    expect(parseFrame(frame)?.size).toBe(frame.length);
  });

  it('reports a control frame of another SPDY version instead of misreading it', () => {
    const v2 = Buffer.from('8002000100000000', 'hex');
    expect(parseFrame(v2)?.frame).toMatchObject({ type: 'bad_version', version: 2 });
  });

  it('rejects a truncated RST_STREAM', () => {
    expect(() => parseFrame(Buffer.from('800300030000000400000001', 'hex'))).toThrow(SpdyProtocolError);
  });
});

describe('header blocks', () => {
  it('round-trip with lower-cased names and NUL-joined multi-values', () => {
    const block = encodeHeaderBlock({ StreamType: 'stdin', 'x-multi': ['a', 'b'] });
    expect(decodeHeaderBlock(block)).toEqual({ streamtype: 'stdin', 'x-multi': 'a, b' });
  });

  it('reject a block that claims more than it holds', () => {
    const block = encodeHeaderBlock({ a: 'b' });
    expect(() => decodeHeaderBlock(block.subarray(0, block.length - 1))).toThrow(SpdyProtocolError);
  });

  it('compress through one context per direction, block after block', async () => {
    const deflate = new HeaderZlib('deflate');
    const inflate = new HeaderZlib('inflate');
    for (const type of ['error', 'stdin', 'stdout', 'stderr', 'resize']) {
      const wire = await deflate.process(encodeHeaderBlock({ streamtype: type }));
      expect(wire.subarray(-4).toString('hex')).toBe('0000ffff'); // Z_SYNC_FLUSH marker ends each block
      expect(decodeHeaderBlock(await inflate.process(wire))).toEqual({ streamtype: type });
    }
    deflate.close();
    inflate.close();
  });

  it('inflate up to 1 MiB: a block of exactly that size decodes', async () => {
    const value = 'a'.repeat(MAX_HEADER_BLOCK_BYTES - encodeHeaderBlock({ x: '' }).length);
    const deflate = new HeaderZlib('deflate');
    const inflate = new HeaderZlib('inflate');
    const wire = await deflate.process(encodeHeaderBlock({ x: value }));
    expect(decodeHeaderBlock(await inflate.process(wire)).x).toHaveLength(value.length);
    deflate.close();
    inflate.close();
  });

  it('refuse a block that inflates past 1 MiB (a zlib bomb) instead of inflating it all', async () => {
    // 64 MiB of one header value, compressed to ~64 KiB, as a hostile peer would send it.
    const bomb = zlib.deflateSync(encodeHeaderBlock({ x: 'a'.repeat(64 << 20) }), {
      dictionary: SPDY3_DICTIONARY,
      level: 9,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    expect(bomb.length).toBeLessThan(128 << 10);
    const inflate = new HeaderZlib('inflate');
    await expect(inflate.process(bomb)).rejects.toThrow(/header block exceeds 1048576 bytes/);
    // The shared context is unusable from then on: every later block fails too (the session closes).
    await expect(inflate.process(bomb)).rejects.toThrow(SpdyProtocolError);
    inflate.close();
  });
});
