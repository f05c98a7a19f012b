/**
 * A small SPDY/3.1 session over one socket: enough for the kubelet's streaming endpoints (exec, attach,
 * port-forward), which kube-apiserver reaches with SPDY/3.1 (docs/architecture.md#kubelet-api-and-streaming). The peer opens streams
 * (`on('stream')`), each a Duplex: bytes in from DATA frames, bytes out as DATA frames, `end()` sends FIN.
 *
 * Deliberately absent: flow control (the Go client never sends WINDOW_UPDATE, so enforcing a window would
 * stall it; SETTINGS and WINDOW_UPDATE are read and ignored), priorities, server push. Backpressure is
 * TCP's: when a stream's reader falls behind, the socket is paused until it catches up.
 * The `client` role dials a streaming server: the local provider's exec, attach and port-forward into containerd
 * (operator/providers/local/cri/streaming.ts), and the kubelet API's tests and smoke checks (`exec-client.ts`).
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  ControlType,
  decodeHeaderBlock,
  encodeGoAway,
  encodeHeaderBlock,
  encodePing,
  encodeRstStream,
  encodeSynStream,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  HeaderZlib,
  parseFrame,
  RstStatus,
  SpdyProtocolError,
  type SpdyFrame,
  type SpdyHeaders,
} from './spdy-frames.ts';
import {
  kData,
  kFin,
  kLocalFin,
  kReset,
  kResponse,
  kSessionGone,
  SpdyStream,
  type StreamLink,
} from './spdy-stream.ts';

export { SpdyStream };

/** Options of a {@link SpdySession}. */
export interface SpdySessionOptions {
  /** `server` (default) accepts odd stream ids from the peer; `client` opens odd ids itself. */
  role?: 'server' | 'client';
  /** Bytes already read from the socket past the HTTP upgrade (`head` of Node's `upgrade` event). */
  initialData?: Buffer;
}

/** Events of a {@link SpdySession}. */
export interface SpdySessionEvents {
  /** The peer opened a stream; call `stream.reply()` (or write to it) to accept it. */
  stream: [stream: SpdyStream];
  /** The peer sent GOAWAY: it opens no more streams. */
  goaway: [lastGoodStreamId: number, status: number];
  /** The socket closed; every stream is destroyed. `error` is set for protocol or socket errors. */
  close: [error: Error | undefined];
}

const EMPTY = Buffer.alloc(0);

/**
 * A SPDY/3.1 connection. Construct it on a socket right after the `101 Switching Protocols` exchange.
 * Errors never escape as `error` events: they end the session, and `close` carries them.
 */
export class SpdySession extends EventEmitter<SpdySessionEvents> {
  readonly #socket: Duplex;
  readonly #role: 'server' | 'client';
  readonly #inflate = new HeaderZlib('inflate');
  readonly #deflate = new HeaderZlib('deflate');
  readonly #streams = new Map<number, SpdyStream>();
  readonly #blocked = new Set<SpdyStream>();
  readonly #pings = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  #buffer: Buffer = EMPTY;
  #inbox: SpdyFrame[] = [];
  #draining = false;
  #lastRemoteId = 0;
  #nextLocalId: number;
  #nextPingId: number;
  #pendingWrites = 0;
  #writeChain: Promise<void> = Promise.resolve();
  /** We sent GOAWAY: no new streams from either side. */
  #sentGoAway = false;
  /** The peer sent GOAWAY: it opens no more streams. */
  #peerGoAway = false;
  #peerEnded = false;
  #socketGone = false;
  #closed = false;
  #error: Error | undefined;
  readonly #link: StreamLink;

  constructor(socket: Duplex, options: SpdySessionOptions = {}) {
    super();
    this.#socket = socket;
    this.#role = options.role ?? 'server';
    this.#nextLocalId = this.#role === 'client' ? 1 : 2;
    this.#nextPingId = this.#role === 'client' ? 1 : 2;
    this.#link = {
      send: (frame, done) => this.#send(frame, done),
      compress: (headers) => this.#deflate.process(encodeHeaderBlock(headers)),
      block: (stream) => {
        this.#blocked.add(stream);
        this.#socket.pause();
      },
      unblock: (stream) => {
        if (this.#blocked.delete(stream) && this.#blocked.size === 0 && !this.#closed) this.#socket.resume();
      },
      release: (stream) => {
        if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
        this.#link.unblock(stream);
      },
      alive: () => !this.#closed,
    };
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', (err) => (this.#error ??= err));
    socket.on('end', () => {
      // The peer is done sending; what it sent before EOF is still handled before we go away.
      this.#peerEnded = true;
      if (!this.#draining) void this.close();
    });
    socket.on('close', () => this.#onSocketClose());
    if (options.initialData?.length) this.#receive(options.initialData);
    // A socket paused while the HTTP head was read does not flow again just because we listen.
    socket.resume();
  }

  /** Streams currently open (not yet finished in both directions, nor reset). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Opens a stream (client role, or server push-style use); it is usable once `response` arrives. */
  openStream(headers: SpdyHeaders, options: { fin?: boolean } = {}): SpdyStream {
    if (this.#closed || this.#sentGoAway || this.#peerGoAway) {
      throw new Error('SPDY session is closing: no new streams');
    }
    const id = this.#nextLocalId;
    this.#nextLocalId += 2;
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
    const stream = new SpdyStream(id, lower, this.#link, true);
    this.#streams.set(id, stream);
    const block = this.#deflate.process(encodeHeaderBlock(headers));
    this.#send(block.then((b) => encodeSynStream(id, options.fin ? FLAG_FIN : 0, b)));
    if (options.fin) {
      stream[kLocalFin]();
      stream.end();
    }
    return stream;
  }

  /** Sends a PING and resolves with the round-trip time in milliseconds when the peer echoes it. */
  ping(): Promise<number> {
    const id = this.#nextPingId;
    this.#nextPingId += 2;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(new Error('SPDY session closed'));
      this.#pings.set(id, { resolve: () => resolve(performance.now() - started), reject });
      this.#send(encodePing(id));
    });
  }

  /**
   * Sends GOAWAY, then ends the socket once every queued frame is written. Resolves when the socket has
   * closed; a peer that keeps its side open longer than `timeoutMs` has the socket destroyed under it.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.#closed) return resolve();
      this.once('close', () => resolve());
      if (options.timeoutMs !== undefined) {
        const timer = setTimeout(() => this.#socket.destroy(), options.timeoutMs);
        this.once('close', () => clearTimeout(timer));
      }
    });
    if (!this.#sentGoAway && !this.#closed) {
      this.#sentGoAway = true;
      this.#send(encodeGoAway(this.#lastRemoteId, 0));
      this.#afterWrites(() => this.#socket.end());
    }
    return closed;
  }

  /** Closes the socket now, without GOAWAY. */
  destroy(error?: Error): void {
    this.#error ??= error;
    this.#socket.destroy();
  }

  /** Writes frames in order; a frame still being compressed holds back the frames queued after it. */
  #send(frame: Buffer | Promise<Buffer>, done?: () => void): void {
    const write = (buf: Buffer) => {
      if (this.#socket.destroyed || this.#socket.writableEnded) return done && queueMicrotask(done);
      // Socket write errors are not the stream's: the socket's close event tears everything down.
      this.#socket.write(buf, () => done?.());
    };
    if (this.#pendingWrites === 0 && Buffer.isBuffer(frame)) return write(frame);
    this.#pendingWrites++;
    this.#writeChain = this.#writeChain
      .then(() => frame)
      .then(write, (err: Error) => this.destroy(err))
      .finally(() => this.#pendingWrites--);
  }

  #afterWrites(fn: () => void): void {
    if (this.#pendingWrites === 0) fn();
    else this.#writeChain = this.#writeChain.then(fn);
  }

  #receive(chunk: Buffer): void {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    let parsed;
    try {
      while ((parsed = parseFrame(this.#buffer))) {
        this.#inbox.push(parsed.frame);
        this.#buffer = this.#buffer.subarray(parsed.size);
      }
    } catch (err) {
      return this.#protocolError(err as Error);
    }
    void this.#drain();
  }

  /** Handles frames strictly in arrival order, waiting only where a header block must be inflated. */
  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      let frame;
      while (!this.#closed && (frame = this.#inbox.shift())) {
        const pending = this.#handle(frame);
        if (pending) await pending;
      }
    } catch (err) {
      this.#protocolError(err as Error);
    } finally {
      this.#draining = false;
      if (this.#peerEnded) void this.close();
      if (this.#socketGone) this.#teardown();
    }
  }

  #handle(frame: SpdyFrame): Promise<void> | undefined {
    switch (frame.type) {
      case 'data': {
        const stream = this.#streams.get(frame.streamId);
        if (!stream) return; // late data for a stream already gone: ignore, as Go's spdystream does
        stream[kData](frame.data);
        if (frame.flags & FLAG_FIN) stream[kFin]();
        return;
      }
      case 'syn_stream':
        // The header block must be inflated even for a stream we refuse: the zlib context is shared.
        return this.#inflateHeaders(frame.headerBlock).then((headers) => this.#accept(frame, headers));
      case 'syn_reply':
      case 'headers':
        return this.#inflateHeaders(frame.headerBlock).then((headers) => {
          const stream = this.#streams.get(frame.streamId);
          if (!stream) return;
          if (frame.type === 'syn_reply') stream[kResponse](headers);
          if (frame.flags & FLAG_FIN) stream[kFin]();
        });
      case 'rst_stream':
        this.#streams.get(frame.streamId)?.[kReset]();
        return;
      case 'ping':
        if ((frame.id & 1) !== (this.#nextPingId & 1)) this.#send(encodePing(frame.id));
        else this.#pings.get(frame.id)?.resolve();
        this.#pings.delete(frame.id);
        return;
      case 'goaway':
        this.#peerGoAway = true;
        this.emit('goaway', frame.lastGoodStreamId, frame.status);
        return;
      case 'bad_version':
        throw new SpdyProtocolError(`unsupported SPDY version ${frame.version}`);
      default:
        return; // SETTINGS, WINDOW_UPDATE and unknown control frames: ignored (no flow control)
    }
  }

  async #inflateHeaders(block: Buffer): Promise<Record<string, string>> {
    return decodeHeaderBlock(await this.#inflate.process(block));
  }

  #accept(frame: Extract<SpdyFrame, { type: 'syn_stream' }>, headers: Record<string, string>): void {
    const id = frame.streamId;
    const peerParity = this.#role === 'server' ? 1 : 0;
    if (id === 0 || (id & 1) !== peerParity || id <= this.#lastRemoteId || this.#streams.has(id)) {
      this.#send(
        encodeRstStream(id, this.#streams.has(id) ? RstStatus.StreamInUse : RstStatus.ProtocolError),
      );
      return;
    }
    this.#lastRemoteId = id;
    if (this.#sentGoAway || this.#peerGoAway || this.listenerCount('stream') === 0) {
      this.#send(encodeRstStream(id, RstStatus.RefusedStream));
      return;
    }
    const stream = new SpdyStream(id, headers, this.#link, false);
    this.#streams.set(id, stream);
    if (frame.flags & FLAG_UNIDIRECTIONAL) stream[kLocalFin]();
    if (frame.flags & FLAG_FIN) stream[kFin]();
    this.emit('stream', stream);
  }

  #protocolError(err: Error): void {
    if (this.#closed) return;
    this.#error ??= err;
    this.#sentGoAway = true;
    this.#send(encodeGoAway(this.#lastRemoteId, 1));
    this.#afterWrites(() => this.#socket.destroy());
  }

  #onSocketClose(): void {
    this.#socketGone = true;
    // Frames that arrived before the close but wait behind a header block are still delivered.
    if (!this.#draining) this.#teardown();
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#inbox = [];
    for (const stream of [...this.#streams.values()]) stream[kSessionGone]();
    this.#streams.clear();
    for (const ping of this.#pings.values()) ping.reject(new Error('SPDY session closed'));
    this.#pings.clear();
    this.#inflate.close();
    this.#deflate.close();
    this.emit('close', this.#error);
  }
}

export { ControlType, RstStatus };
