/**
 * One stream of a {@link SpdySession} (`spdy.ts`): a Duplex over DATA frames. Split from the session so
 * each file stays readable; the session drives a stream through the symbol-keyed hooks exported here,
 * which are not part of the public API.
 */
import { Duplex } from 'node:stream';
import {
  encodeDataFrame,
  encodeRstStream,
  encodeSynReply,
  RstStatus,
  type SpdyHeaders,
} from './spdy-frames.ts';

/** Largest DATA frame we send: small enough that streams interleave, large enough to be cheap. */
const DATA_CHUNK = 64 * 1024;
const EMPTY = Buffer.alloc(0);

// Hooks the session calls on its streams; symbols keep them off the stream's public surface.
/** @internal peer DATA */
export const kData = Symbol('data');
/** @internal peer FIN */
export const kFin = Symbol('fin');
/** @internal peer RST_STREAM */
export const kReset = Symbol('reset');
/** @internal SYN_REPLY to a stream we opened */
export const kResponse = Symbol('response');
/** @internal our half closed without a DATA FIN */
export const kLocalFin = Symbol('localFin');
/** @internal the connection is gone */
export const kSessionGone = Symbol('sessionGone');

/** What a stream needs from its session. */
export interface StreamLink {
  send(frame: Buffer | Promise<Buffer>, done?: () => void): void;
  compress(headers: SpdyHeaders): Promise<Buffer>;
  unblock(stream: SpdyStream): void;
  block(stream: SpdyStream): void;
  release(stream: SpdyStream): void;
  alive(): boolean;
}

/**
 * One SPDY stream. Readable side: the peer's DATA, ending at its FIN. Writable side: our DATA; `end()`
 * sends FIN. `destroy()` before both sides finished sends RST_STREAM(CANCEL). Write errors on a dead
 * connection are swallowed: the session's `close` destroys the stream instead. A stream we opened emits
 * `response` (with the SYN_REPLY headers) when the peer accepts it.
 */
export class SpdyStream extends Duplex {
  /** The stream id (odd when the client opened it). */
  readonly id: number;
  /** The SYN_STREAM headers, names in lower case (e.g. `streamtype`). */
  readonly headers: Readonly<Record<string, string>>;
  readonly #link: StreamLink;
  #replied: boolean;
  #localFin = false;
  #remoteFin = false;
  #reset = false;

  /** @internal created by {@link SpdySession}; `local` is true for streams we opened. */
  constructor(id: number, headers: Record<string, string>, link: StreamLink, local: boolean) {
    super({ allowHalfOpen: true });
    this.id = id;
    this.headers = headers;
    this.#link = link;
    this.#replied = local;
  }

  /** Accepts a peer-opened stream with SYN_REPLY. Idempotent; writing replies implicitly. */
  reply(headers: SpdyHeaders = {}): void {
    if (this.#replied || this.#reset) return;
    this.#replied = true;
    const block = this.#link.compress(headers);
    this.#link.send(block.then((b) => encodeSynReply(this.id, 0, b)));
  }

  /** Abandons the stream with RST_STREAM(`status`) and destroys it. */
  reset(status: number = RstStatus.Cancel): void {
    if (!this.#reset && this.#link.alive()) this.#link.send(encodeRstStream(this.id, status));
    this.#reset = true;
    this.destroy();
  }

  override _read(): void {
    this.#link.unblock(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#reset) return callback();
    this.reply();
    for (let at = 0; at < chunk.length; at += DATA_CHUNK) {
      const last = at + DATA_CHUNK >= chunk.length;
      this.#link.send(
        encodeDataFrame(this.id, chunk.subarray(at, at + DATA_CHUNK), false),
        last ? callback : undefined,
      );
    }
    if (chunk.length === 0) callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#reset || this.#localFin) return callback();
    this.reply();
    this.#localFin = true;
    this.#link.send(encodeDataFrame(this.id, EMPTY, true), callback);
    if (this.#remoteFin) this.#link.release(this);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#reset && !(this.#localFin && this.#remoteFin) && this.#link.alive()) {
      this.#reset = true;
      this.#link.send(encodeRstStream(this.id, RstStatus.Cancel));
    }
    this.#link.release(this);
    callback(error);
  }

  /** Peer data for this stream. */
  [kData](data: Buffer): void {
    if (this.#remoteFin || this.#reset || data.length === 0) return;
    if (!this.push(data)) this.#link.block(this);
  }

  /** Peer FIN: the readable side ends. */
  [kFin](): void {
    if (this.#remoteFin) return;
    this.#remoteFin = true;
    this.push(null);
    if (this.#localFin) this.#link.release(this);
  }

  /** Peer RST_STREAM: the stream is gone in both directions. */
  [kReset](): void {
    this.#reset = true;
    this.destroy();
  }

  /**
   * The connection is gone. A stream whose peer already sent FIN keeps its buffered data for its reader
   * (only its writable side is closed); any other stream is destroyed.
   */
  [kSessionGone](): void {
    this.#reset = true;
    if (this.#remoteFin) this.end();
    else this.destroy();
  }

  /** SYN_REPLY to a stream we opened. */
  [kResponse](headers: Record<string, string>): void {
    this.emit('response', headers);
  }

  /** Our half is closed without a DATA FIN: unidirectional streams, or FIN already on SYN_STREAM. */
  [kLocalFin](): void {
    this.#localFin = true;
  }
}
