/**
 * A minimal RFC 6455 WebSocket server side, enough for the fake ECI exec sessions: the upgrade handshake,
 * unfragmented binary/text messages (client frames are masked), ping/pong and close. Node has a WebSocket
 * client built in but no server, and the project takes no dependency for a test double.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** One accepted WebSocket connection. */
export interface WebSocketPeer {
  /** Sends one binary message. */
  send(data: Buffer): void;
  /** Sends a close frame with `code` and ends the socket. */
  close(code?: number): void;
  /** Called with each complete message from the client. */
  onMessage: (data: Buffer) => void;
  /** Called once when the connection is gone. */
  onClose: () => void;
}

/** Completes the upgrade of `req` on `socket` and returns the peer, or answers 400 and returns undefined. */
export function acceptWebSocket(req: IncomingMessage, socket: Duplex): WebSocketPeer | undefined {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return undefined;
  }
  const accept = createHash('sha1')
    .update(key + GUID)
    .digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  let closed = false;
  const peer: WebSocketPeer = {
    send: (data) => {
      if (!closed) socket.write(frame(0x2, data));
    },
    close: (code = 1000) => {
      if (closed) return;
      closed = true;
      const payload = Buffer.alloc(2);
      payload.writeUInt16BE(code);
      socket.end(frame(0x8, payload));
    },
    onMessage: () => {},
    onClose: () => {},
  };
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const parsed = parseFrame(buffered);
      if (!parsed) break;
      buffered = buffered.subarray(parsed.length);
      if (parsed.opcode === 0x8) peer.close(1000);
      else if (parsed.opcode === 0x9) socket.write(frame(0xa, parsed.payload));
      else if (parsed.opcode === 0x1 || parsed.opcode === 0x2) peer.onMessage(parsed.payload);
    }
  });
  socket.on('close', () => {
    closed = true;
    peer.onClose();
  });
  socket.on('error', () => socket.destroy());
  return peer;
}

function frame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

function parseFrame(buf: Buffer): { opcode: number; payload: Buffer; length: number } | undefined {
  if (buf.length < 2) return undefined;
  const opcode = buf[0]! & 0x0f;
  const masked = (buf[1]! & 0x80) !== 0;
  let len = buf[1]! & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    offset = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  const maskLen = masked ? 4 : 0;
  if (buf.length < offset + maskLen + len) return undefined;
  const mask = buf.subarray(offset, offset + maskLen);
  const payload = Buffer.from(buf.subarray(offset + maskLen, offset + maskLen + len));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
  return { opcode, payload, length: offset + maskLen + len };
}
