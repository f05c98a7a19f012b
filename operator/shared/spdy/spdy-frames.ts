/**
 * SPDY/3.1 framing: the binary layout of frames and header blocks, and the per-direction zlib context
 * that compresses header blocks. Pure functions except {@link HeaderZlib}. The session logic (streams,
 * replies, pings) is in `spdy.ts`.
 *
 * Why our own codec: kube-apiserver speaks SPDY/3.1 to kubelets for exec/attach/port-forward
 * (docs/architecture.md#kubelet-api-and-streaming) and no npm package fits (`spdy` does not load on Node 24; `spdy-transport` rejects
 * Kubernetes' SYN_STREAM and enforces a 64 KiB window the Go client never opens).
 *
 * Layout (all big-endian):
 * - control frame: `1 | version(15) | type(16)`, `flags(8) | length(24)`, payload
 * - data frame:    `0 | stream-id(31)`, `flags(8) | length(24)`, payload
 */
import zlib from 'node:zlib';

/** The only SPDY version spoken. */
export const SPDY_VERSION = 3;

/** Control frame types of SPDY/3 (type 5 was NOOP in SPDY/2 and is gone). */
export const ControlType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

/** `FLAG_FIN` on data, SYN_STREAM, SYN_REPLY and HEADERS frames: the sender's half of the stream is done. */
export const FLAG_FIN = 0x01;
/** `FLAG_UNIDIRECTIONAL` on SYN_STREAM: the receiver must not send on this stream. */
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes used here. */
export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
} as const;

/** Largest payload of one frame (24-bit length). */
export const MAX_FRAME_PAYLOAD = 0xffffff;

/** A parsed frame. Header blocks stay compressed here: only the session holds the zlib context. */
export type SpdyFrame =
  | { type: 'data'; streamId: number; flags: number; data: Buffer }
  | {
      type: 'syn_stream';
      streamId: number;
      associatedId: number;
      priority: number;
      flags: number;
      headerBlock: Buffer;
    }
  | { type: 'syn_reply' | 'headers'; streamId: number; flags: number; headerBlock: Buffer }
  | { type: 'rst_stream'; streamId: number; status: number }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastGoodStreamId: number; status: number }
  | { type: 'settings' | 'window_update' | 'unknown'; controlType: number }
  | { type: 'bad_version'; version: number; controlType: number; streamId: number };

/** A frame that breaks the layout; the session answers with GOAWAY(PROTOCOL_ERROR) and closes. */
export class SpdyProtocolError extends Error {
  override readonly name = 'SpdyProtocolError';
}

/**
 * Parses the frame at the start of `buf`.
 * @returns the frame and its size on the wire, or `undefined` when `buf` does not hold a whole frame yet
 */
export function parseFrame(buf: Buffer): { frame: SpdyFrame; size: number } | undefined {
  if (buf.length < 8) return undefined;
  const first = buf.readUInt32BE(0);
  const flags = buf[4]!;
  const length = buf.readUIntBE(5, 3);
  const size = 8 + length;
  if (buf.length < size) return undefined;
  const payload = buf.subarray(8, size);
  if ((first & 0x80000000) === 0) {
    return { frame: { type: 'data', streamId: first & 0x7fffffff, flags, data: payload }, size };
  }
  const version = (first >>> 16) & 0x7fff;
  const controlType = first & 0xffff;
  if (version !== SPDY_VERSION) {
    const streamId = length >= 4 ? payload.readUInt32BE(0) & 0x7fffffff : 0;
    return { frame: { type: 'bad_version', version, controlType, streamId }, size };
  }
  return { frame: parseControl(controlType, flags, payload), size };
}

function parseControl(controlType: number, flags: number, p: Buffer): SpdyFrame {
  const need = (n: number) => {
    if (p.length < n)
      throw new SpdyProtocolError(`control frame type ${controlType} too short (${p.length} bytes)`);
  };
  const id = () => p.readUInt32BE(0) & 0x7fffffff;
  switch (controlType) {
    case ControlType.SynStream:
      need(10);
      return {
        type: 'syn_stream',
        streamId: id(),
        associatedId: p.readUInt32BE(4) & 0x7fffffff,
        priority: p[8]! >> 5,
        flags,
        headerBlock: p.subarray(10),
      };
    case ControlType.SynReply:
    case ControlType.Headers:
      need(4);
      return {
        type: controlType === ControlType.SynReply ? 'syn_reply' : 'headers',
        streamId: id(),
        flags,
        headerBlock: p.subarray(4),
      };
    case ControlType.RstStream:
      need(8);
      return { type: 'rst_stream', streamId: id(), status: p.readUInt32BE(4) };
    case ControlType.Ping:
      need(4);
      return { type: 'ping', id: p.readUInt32BE(0) };
    case ControlType.GoAway:
      need(4);
      return { type: 'goaway', lastGoodStreamId: id(), status: p.length >= 8 ? p.readUInt32BE(4) : 0 };
    case ControlType.Settings:
      return { type: 'settings', controlType };
    case ControlType.WindowUpdate:
      return { type: 'window_update', controlType };
    default:
      // SPDY/3 §2.2.1: unknown control frames are ignored.
      return { type: 'unknown', controlType };
  }
}

function frameHeader(first: number, flags: number, length: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD)
    throw new RangeError(`SPDY frame payload of ${length} bytes exceeds 2^24-1`);
  const h = Buffer.allocUnsafe(8);
  h.writeUInt32BE(first >>> 0, 0);
  h.writeUInt32BE(((flags << 24) | length) >>> 0, 4);
  return h;
}

/** Encodes a control frame of `type` around an already-built payload. */
export function encodeControlFrame(type: number, flags: number, payload: Buffer): Buffer {
  return Buffer.concat([
    frameHeader(0x80000000 | (SPDY_VERSION << 16) | type, flags, payload.length),
    payload,
  ]);
}

/** Encodes a DATA frame; `data` must fit one frame ({@link MAX_FRAME_PAYLOAD}). */
export function encodeDataFrame(streamId: number, data: Buffer, fin: boolean): Buffer {
  return Buffer.concat([frameHeader(streamId & 0x7fffffff, fin ? FLAG_FIN : 0, data.length), data]);
}

function u32(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

/** SYN_STREAM with a compressed header block. */
export function encodeSynStream(
  streamId: number,
  flags: number,
  compressedHeaders: Buffer,
  priority = 0,
): Buffer {
  const fixed = Buffer.concat([u32(streamId, 0), Buffer.from([(priority & 7) << 5, 0])]);
  return encodeControlFrame(ControlType.SynStream, flags, Buffer.concat([fixed, compressedHeaders]));
}

/** SYN_REPLY (or HEADERS, with `type`) with a compressed header block. */
export function encodeSynReply(
  streamId: number,
  flags: number,
  compressedHeaders: Buffer,
  type: number = ControlType.SynReply,
): Buffer {
  return encodeControlFrame(type, flags, Buffer.concat([u32(streamId), compressedHeaders]));
}

/** RST_STREAM with one of {@link RstStatus}. */
export function encodeRstStream(streamId: number, status: number): Buffer {
  return encodeControlFrame(ControlType.RstStream, 0, u32(streamId, status));
}

/** PING; a receiver echoes a ping whose id parity is not its own. */
export function encodePing(id: number): Buffer {
  return encodeControlFrame(ControlType.Ping, 0, u32(id));
}

/** GOAWAY: no new streams after `lastGoodStreamId`; status 0 = OK, 1 = PROTOCOL_ERROR, 2 = INTERNAL_ERROR. */
export function encodeGoAway(lastGoodStreamId: number, status: number): Buffer {
  return encodeControlFrame(ControlType.GoAway, 0, u32(lastGoodStreamId, status));
}

/** Header names and values; a value array becomes one NUL-separated value on the wire. */
export type SpdyHeaders = Record<string, string | string[]>;

/** Encodes an uncompressed header block: count, then length-prefixed lower-case names and values. */
export function encodeHeaderBlock(headers: SpdyHeaders): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [u32(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(Array.isArray(value) ? value.join('\0') : value, 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Most headers one block may carry, as Go's framer limits it: a bound against hostile peers. */
const MAX_HEADER_COUNT = 1000;

/**
 * Decodes an uncompressed header block into lower-case names; a NUL-separated value (several values of
 * one header) is joined with `, ` as Node does for HTTP/1 headers.
 * @throws SpdyProtocolError when the block is truncated or claims more headers than it holds
 */
export function decodeHeaderBlock(block: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  const take = (): Buffer => {
    if (at + 4 > block.length) throw new SpdyProtocolError('truncated SPDY header block');
    const len = block.readUInt32BE(at);
    at += 4;
    if (at + len > block.length) throw new SpdyProtocolError('truncated SPDY header block');
    const s = block.subarray(at, at + len);
    at += len;
    return s;
  };
  if (block.length < 4) throw new SpdyProtocolError('empty SPDY header block');
  const count = block.readUInt32BE(0);
  at = 4;
  if (count > MAX_HEADER_COUNT) throw new SpdyProtocolError(`SPDY header block with ${count} headers`);
  for (let i = 0; i < count; i++) {
    const name = take().toString('utf8').toLowerCase();
    const values = take().toString('utf8').split('\0');
    out[name] = out[name] === undefined ? values.join(', ') : [out[name], ...values].join(', ');
  }
  return out;
}

/**
 * The SPDY/3 header compression dictionary (SPDY/3 draft §2.6.10.1): length-prefixed HTTP words, then
 * status lines, dates and media types as one run. Built from readable parts rather than a byte table;
 * a test checks its length (1423) and SHA-256 against the table Go's spdystream uses.
 */
export const SPDY3_DICTIONARY: Buffer = (() => {
  const run = (s: string) => s.split(' ');
  // "200 OK" is the one word with a space in it, so it sits outside the space-separated runs.
  const words = [
    ...run(
      'options head post put delete trace accept accept-charset accept-encoding accept-language ' +
        'accept-ranges age allow authorization cache-control connection content-base content-encoding ' +
        'content-language content-length content-location content-md5 content-range content-type date etag ' +
        'expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since ' +
        'last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer ' +
        'retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate ' +
        'method get status',
    ),
    '200 OK',
    ...run('version HTTP/1.1 url public set-cookie keep-alive origin'),
  ];
  const tail =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
    '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
    'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  return Buffer.concat([
    ...words.flatMap((w) => [u32(Buffer.byteLength(w)), Buffer.from(w, 'latin1')]),
    Buffer.from(tail, 'latin1'),
  ]);
})();

/**
 * Most bytes one header block may inflate to. A SPDY header block is a zlib stream the peer controls, and
 * zlib expands up to ~1000:1: uncapped, one 279 KiB SYN_STREAM grew the process by over 1 GiB. Go's
 * spdystream (what kube-apiserver and kubelets use) refuses a header name or value over 1 MiB, and Go's
 * net/http refuses request headers over 1 MiB; the whole block is held to that here. Real blocks are tiny
 * (`streamtype`, `port`, `requestid`: under 100 bytes).
 */
export const MAX_HEADER_BLOCK_BYTES = 1 << 20;

/**
 * One direction's header compression context. SPDY/3 compresses every header block of a connection
 * direction with ONE zlib stream (seeded with {@link SPDY3_DICTIONARY}) and ends each block with a
 * Z_SYNC_FLUSH, so the state carries over between frames: a fresh `deflateSync` per frame would not
 * decode on the peer. Node's zlib streams are asynchronous, so calls are serialised here.
 */
export class HeaderZlib {
  readonly #stream: zlib.Deflate | zlib.Inflate;
  #queue: Promise<unknown> = Promise.resolve();
  #out: Buffer[] = [];
  #failed: Error | undefined;
  #outBytes = 0;
  readonly #maxOutputBytes: number;
  /** Rejects the call in progress: on a zlib error the flush callback never comes. */
  #abort: ((err: Error) => void) | undefined;

  /**
   * @param mode `deflate` for the frames we send, `inflate` for the frames we receive
   * @param options.maxOutputBytes most bytes one call may produce (default {@link MAX_HEADER_BLOCK_BYTES});
   *   past it the call fails with a SpdyProtocolError and the context is closed, without producing the rest
   */
  constructor(mode: 'deflate' | 'inflate', options: { maxOutputBytes?: number } = {}) {
    this.#maxOutputBytes = options.maxOutputBytes ?? MAX_HEADER_BLOCK_BYTES;
    this.#stream =
      mode === 'deflate'
        ? zlib.createDeflate({ dictionary: SPDY3_DICTIONARY, level: zlib.constants.Z_BEST_COMPRESSION })
        : zlib.createInflate({ dictionary: SPDY3_DICTIONARY });
    this.#stream.on('data', (chunk: Buffer) => {
      this.#outBytes += chunk.length;
      if (this.#outBytes > this.#maxOutputBytes) {
        // Stop zlib here: it hands output over chunk by chunk, so memory stays near the cap.
        this.#fail(new SpdyProtocolError(`SPDY header block exceeds ${this.#maxOutputBytes} bytes`));
        this.#stream.destroy();
        return;
      }
      this.#out.push(chunk);
    });
    this.#stream.on('error', (err) =>
      this.#fail(new SpdyProtocolError(`header block ${mode}: ${err.message}`)),
    );
  }

  #fail(err: SpdyProtocolError): void {
    this.#failed ??= err;
    this.#out = [];
    this.#abort?.(this.#failed);
  }

  /** Compresses (deflate) or decompresses (inflate) one header block, in call order. */
  process(input: Buffer): Promise<Buffer> {
    const run = () =>
      new Promise<Buffer>((resolve, reject) => {
        if (this.#failed) return reject(this.#failed);
        if (this.#stream.destroyed) return reject(new SpdyProtocolError('header zlib closed'));
        this.#out = [];
        this.#outBytes = 0;
        this.#abort = reject;
        this.#stream.write(input);
        this.#stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          this.#abort = undefined;
          if (this.#failed) reject(this.#failed);
          else resolve(Buffer.concat(this.#out));
        });
      });
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Releases the zlib context. */
  close(): void {
    this.#stream.destroy();
  }
}
