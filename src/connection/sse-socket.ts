import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCode } from './close-codes';
import type { FramePosition, FrameWrapper, Socket } from './connection';
import { detachFromHttp } from './http-detach';
import { StreamCursor } from './stream-cursor';

const COMMENT = ':\n\n';
/**
 * A drain's last event: reconnect (with the cursor) in about a second, wherever the load balancer sends it. Its
 * `retry:` sets an EventSource's reconnection delay (browsers default to about 3 s).
 */
export const RECONNECT = 'retry: 1000\ndata: {"type":"reconnect"}\n\n';
/** A stream we ended whose peer does not let it finish (it reads nothing) is dropped after this. */
const END_TIMEOUT_MS = 5000;

/**
 * One event's bytes as they go on the wire: `id: <cursor>\n` when it has one, `data: <frame>\n\n`, and around it
 * the HTTP/1.1 chunk (`<hex length>\r\n … \r\n`) when the response is chunked. One buffer, one write.
 */
function eventBytes(id: string | undefined, data: Buffer | string, chunked: boolean): Buffer {
  const head = id === undefined ? 'data: ' : `id: ${id}\ndata: `; // a cursor is ASCII
  const dataLength = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  const length = head.length + dataLength + 2;
  const open = chunked ? `${length.toString(16)}\r\n` : '';
  const out = Buffer.allocUnsafe(open.length + length + (chunked ? 2 : 0));
  let at = out.write(open, 0, 'latin1');
  at += out.write(head, at, 'latin1');
  at += typeof data === 'string' ? out.write(data, at, 'utf8') : data.copy(out, at);
  out.write(chunked ? '\n\n\r\n' : '\n\n', at, 'latin1');
  return out;
}

/**
 * The last publication wrapped, and what it became for each cursor a stream had before it: a broadcast wraps each
 * publication for one stream after another, and streams holding the same channels at the same positions (the
 * common case: every alerts stream) get the same bytes and the same next cursor, so only the first of each state
 * pays for them. What a stream's cursor becomes depends only on its cursor's text, the channel, the epoch it
 * keeps and the id. At most SHARED_STATES states per publication are kept (streams whose cursors all differ build
 * their own).
 */
let shared: { data: Buffer; position: FramePosition; chunked: boolean; byCursor: Map<string, { after: string; bytes: Buffer }> } | undefined;
const SHARED_STATES = 64;
/** The same for events without a position (live-only channels). */
let lastPlain: { data: Buffer; chunked: boolean; bytes: Buffer } | undefined;

/**
 * An SSE stream (`GET /sse`, docs/protocol.md "Without WebSocket: Server-Sent Events") as the connection core sees a WebSocket: the same
 * events (`message` for a frame POSTed to `/sse/send`, `close` once), `send` of already wrapped events, `close`
 * with a code. It wraps each frame as an unnamed event (`data: <frame>`), with an `id:` line holding the cursor
 * whenever a frame moved a channel's position, so a reconnecting `EventSource` resumes every channel.
 *
 * A close the server decides is told in the stream before it ends, since SSE has no close frame: 1012 (drain) as
 * `{"type":"reconnect"}`, anything else as `{"type":"close","code","reason"}`. A stream the client ends counts as
 * 1001 (going away).
 */
export class SseSocket extends EventEmitter implements Socket, FrameWrapper {
  /** 1 open, 2 closing (we ended it), 3 closed; as WebSocket's. */
  readyState = 1;
  /** The TCP socket, corked by the connection's flush as ws's is; every byte of the body is written straight to it. */
  readonly _socket: Duplex;
  private readonly cursor = new StreamCursor();
  private code: number = CloseCode.GOING_AWAY;
  private reason = '';
  private endTimer: NodeJS.Timeout | undefined;

  /**
   * Opens a stream on `res`, its head set (writeHead) and its socket its own: the head is written at once, and
   * from then on the stream holds the TCP socket only. Events go straight to it, already framed (node:http would
   * write four pieces per event: the chunk's length, a line break, the event, a line break; and defer each uncork
   * to a tick of its own), and so does the end. On the next turn (outside node:http's parser, which may be running
   * this) the socket is taken off node:http as an upgrade's is ({@link detachFromHttp}), so that neither the
   * request, the response nor the parser stays for the life of the stream; where that cannot be done the socket
   * stays on node:http, which then holds them, and the stream works the same.
   */
  static open(req: IncomingMessage, res: ServerResponse): SseSocket {
    res.flushHeaders();
    const socket = new SseSocket(res.socket!, res.chunkedEncoding);
    setImmediate(detachWhenOpen, socket, req, res);
    return socket;
  }

  /** `chunked`: the response body is chunked (HTTP/1.1): each event is framed as one chunk here. */
  constructor(
    socket: Duplex,
    private readonly chunked: boolean,
  ) {
    super();
    this._socket = socket;
    socket.on('close', () => this.closed());
    // The peer's end: it went away (1001), or it answered ours. Either way our side ends (the server's sockets
    // are half-open: node:http ended them itself until now).
    socket.on('end', () => {
      if (this.readyState === 1) this.readyState = 2;
      socket.end();
    });
    // Our end is written, everything before it taken by the peer: the stream is over (the socket closes when the
    // peer ends its side, or END_TIMEOUT_MS after ours).
    socket.on('finish', () => this.ended());
    // A reset or a failed write: the socket closes next, as 1001. node:http answered these by destroying it.
    socket.on('error', noop);
  }

  get bufferedAmount(): number {
    return this._socket.writableLength;
  }

  /** The cursor of the last event that carried one. */
  get position(): string {
    return this.cursor.toString();
  }

  wrap(data: Buffer, position?: FramePosition): Buffer {
    const chunked = this.chunked;
    if (position === undefined || position.id === undefined) {
      const plain = lastPlain;
      if (plain !== undefined && plain.data === data && plain.chunked === chunked) return plain.bytes;
      const bytes = eventBytes(undefined, data, chunked);
      lastPlain = { data, chunked, bytes };
      return bytes;
    }
    const cursor = this.cursor;
    const before = cursor.toString();
    const epoch = position.epoch ?? cursor.epochOf(position.channel);
    let last = shared;
    if (last === undefined || last.data !== data || last.position !== position || last.chunked !== chunked) last = shared = { data, position, chunked, byCursor: new Map() };
    // Within one publication the epoch is the publication's, or (without one) each stream's own: then it is part of the state.
    const state = position.epoch !== undefined || epoch === undefined ? before : `${before} ${epoch}`;
    const known = last.byCursor.get(state);
    if (known !== undefined) {
      cursor.advance(position.channel, epoch, position.id, known.after);
      return known.bytes;
    }
    cursor.set(position.channel, { epoch, id: position.id });
    const after = cursor.toString();
    const bytes = eventBytes(after, data, chunked);
    if (last.byCursor.size < SHARED_STATES) last.byCursor.set(state, { after, bytes });
    return bytes;
  }

  wrapObject(frame: object): Buffer {
    const f = frame as { type?: unknown; channel?: unknown; channels?: unknown; epoch?: unknown; id?: unknown };
    let moved = false;
    if (f.type === 'welcome' && typeof f.channels === 'object' && f.channels !== null) {
      this.cursor.clear();
      for (const [channel, position] of Object.entries(f.channels as Record<string, { epoch?: string; id?: string }>)) this.cursor.set(channel, position);
      moved = true;
    } else if (f.type === 'subscribed' && typeof f.channel === 'string') {
      this.cursor.set(f.channel, { epoch: f.epoch as string | undefined, id: f.id as string | undefined });
      moved = true;
    } else if (f.type === 'unsubscribed' && typeof f.channel === 'string') {
      this.cursor.delete(f.channel);
      moved = true;
    }
    return eventBytes(moved ? this.cursor.toString() : undefined, JSON.stringify(frame), this.chunked);
  }

  /** An event from wrap/wrapObject, as it goes on the wire. */
  send(data: Buffer): void {
    if (this.readyState === 1) this._socket.write(data);
  }

  /** A comment line: keeps proxies from closing an idle stream (SSE_HEARTBEAT_MS). */
  comment(): void {
    if (this.readyState === 1) this._socket.write(this.chunked ? `3\r\n${COMMENT}\r\n` : COMMENT);
  }

  /** A frame POSTed for this stream: handled as a WebSocket text frame. */
  receive(data: Buffer): void {
    if (this.readyState === 1) this.emit('message', data, false);
  }

  /** SSE has no ping: a dead peer shows as a failed write, and a peer that stops reading as a slow consumer. */
  ping(): void {
    this.emit('pong');
  }

  close(code: number, reason: string): void {
    if (this.readyState !== 1) return;
    this.readyState = 2;
    this.code = code;
    this.reason = reason;
    // The last event, the terminating chunk of a chunked body, and the end of the connection: a stream's socket
    // serves no other request (an HTTP/1.0 body ends with it anyway).
    const last = code === CloseCode.SERVICE_RESTART ? RECONNECT : `data: ${JSON.stringify({ type: 'close', code, reason })}\n\n`;
    this._socket.end(this.chunked ? `${Buffer.byteLength(last).toString(16)}\r\n${last}\r\n0\r\n\r\n` : last);
    this.endTimer = setTimeout(() => this._socket.destroy(), END_TIMEOUT_MS).unref();
  }

  terminate(): void {
    this._socket.destroy();
  }

  private ended(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit('close', this.code, Buffer.from(this.reason));
  }

  private closed(): void {
    clearTimeout(this.endTimer);
    this.ended();
  }
}

const noop = () => undefined;

function detachWhenOpen(socket: SseSocket, req: IncomingMessage, res: ServerResponse): void {
  if (socket.readyState !== 1 || socket._socket.destroyed) return; // already ending: node:http's listeners see it out
  // Detached, nothing reads the socket any more: read it (and drop what a client sends after its request) so
  // that its end is seen.
  if (detachFromHttp(req, res, socket._socket)) socket._socket.resume();
}
