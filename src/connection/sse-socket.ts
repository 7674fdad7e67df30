import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCode } from './close-codes';
import type { FramePosition, FrameWrapper, Socket } from './connection';
import { StreamCursor } from './stream-cursor';

const DATA = Buffer.from('data: ');
const END = Buffer.from('\n\n');
const COMMENT = Buffer.from(':\n\n');
/**
 * A drain's last event: reconnect (with the cursor) in about a second, wherever the load balancer sends it. Its
 * `retry:` sets an EventSource's reconnection delay (browsers default to about 3 s).
 */
export const RECONNECT = 'retry: 1000\ndata: {"type":"reconnect"}\n\n';
/** A stream we ended whose peer does not let it finish (it reads nothing) is dropped after this. */
const END_TIMEOUT_MS = 5000;

/**
 * An SSE stream (`GET /sse`, SPEC v3 "Reach without WebSocket") as the connection core sees a WebSocket: the same
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
  /** The TCP socket, corked by the connection's flush as ws's is. */
  readonly _socket: Duplex | undefined;
  private readonly cursor = new StreamCursor();
  private code: number = CloseCode.GOING_AWAY;
  private reason = '';
  private endTimer: NodeJS.Timeout | undefined;

  constructor(private readonly res: ServerResponse) {
    super();
    this._socket = res.socket ?? undefined;
    res.once('close', () => this.ended());
    res.on('error', (error) => this.emit('error', error));
  }

  get bufferedAmount(): number {
    return this.res.writableLength;
  }

  /** The cursor of the last event that carried one. */
  get position(): string {
    return this.cursor.toString();
  }

  wrap(data: Buffer, position?: FramePosition): Buffer {
    if (position === undefined || position.id === undefined) return Buffer.concat([DATA, data, END]);
    this.cursor.set(position.channel, { epoch: position.epoch, id: position.id });
    return Buffer.concat([Buffer.from(`id: ${this.cursor.toString()}\ndata: `), data, END]);
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
    const json = JSON.stringify(frame);
    return Buffer.from(moved ? `id: ${this.cursor.toString()}\ndata: ${json}\n\n` : `data: ${json}\n\n`);
  }

  send(data: Buffer): void {
    if (this.readyState === 1) this.res.write(data);
  }

  /** A comment line: keeps proxies from closing an idle stream (SSE_HEARTBEAT_MS). */
  comment(): void {
    if (this.readyState === 1) this.res.write(COMMENT);
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
    this.res.end(code === CloseCode.SERVICE_RESTART ? RECONNECT : `data: ${JSON.stringify({ type: 'close', code, reason })}\n\n`);
    this.endTimer = setTimeout(() => this.res.destroy(), END_TIMEOUT_MS).unref();
  }

  terminate(): void {
    this.res.destroy();
  }

  private ended(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    clearTimeout(this.endTimer);
    this.emit('close', this.code, Buffer.from(this.reason));
  }
}
