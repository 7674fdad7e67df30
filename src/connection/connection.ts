import type { Duplex } from 'node:stream';
import type { ZodType } from 'zod';
import type { Principal } from '../auth/principal';
import { CloseCode } from './close-codes';
import { encodeFrame, errorFrame, type ErrorCode } from './frames';
import type { TokenBucket } from './token-bucket';

/** A frame handler bound by Nest (@SubscribeMessage), called with the validated frame. */
export type FrameHandler = (frame: Record<string, unknown>, type: string) => unknown;

/** One frame type a gateway handles, and its handler for this connection. */
export interface FrameHandlerEntry {
  readonly message: string;
  readonly callback: FrameHandler;
}

/** What a connection needs from the node-wide machinery; implemented by ConnectionManager. */
export interface ConnectionHost {
  /** Unsent bytes (the kernel's buffer not counted) above which a socket is a slow consumer (1013). */
  readonly slowConsumerBytes: number;
  /** The connection queued its first frame of this event-loop turn: flush it with the others. */
  schedule(conn: Connection): void;
  slowConsumer(conn: Connection): void;
  flushNow(conn: Connection): void;
  frameError(conn: Connection, code: string): void;
  fail(conn: Connection, error: unknown): void;
}

const TEXT = { binary: false } as const;

/**
 * What a connection writes to and listens on: a `ws` WebSocket, or an SSE stream (`SseSocket`) that behaves like
 * one (the same events, `this` bound to the socket; `readyState` 1 while open).
 */
export interface Socket {
  readonly readyState: number;
  /** Bytes handed to it and not yet to the kernel. */
  readonly bufferedAmount: number;
  send(data: Buffer, options: { binary: boolean }): void;
  close(code: number, reason: string): void;
  terminate(): void;
  ping(): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- ws's overloads take listeners of several shapes
  on(event: 'message' | 'pong' | 'error' | 'close', listener: (...args: any[]) => void): unknown;
}

/** A position a delivered frame moves its channel to (history channels). */
export interface FramePosition {
  readonly channel: string;
  readonly id?: string;
  readonly epoch?: string;
}

/**
 * A transport that wraps each frame in its own envelope (an SSE event with its `id:` cursor). Frames sent as
 * objects are shown to it first (a `subscribed` or a welcome moves positions); a publication's position comes
 * with it.
 */
export interface FrameWrapper {
  wrap(data: Buffer, position?: FramePosition): Buffer;
  wrapObject(frame: object): Buffer;
}

/** ws keeps the TCP socket private; corking it is how several frames become one write(v) syscall. */
function rawSocket(ws: Socket): Duplex | undefined {
  return (ws as unknown as { _socket?: Duplex })._socket;
}

export interface ConnectionInit {
  id: string;
  gateway: string;
  user: Principal;
  params: Readonly<Record<string, string>>;
  attributes: Readonly<Record<string, unknown>>;
  frames?: Readonly<Record<string, ZodType>>;
  now: number;
}

/**
 * One accepted WebSocket, as the gateways see it: the verified user, the path params, and safe send/close.
 * Gateways never touch the raw socket, so every write goes through the outbox (coalescing, slow-consumer
 * limit) and every close is recorded with its code.
 */
export class Connection {
  readonly id: string;
  /** The registered gateway's name (metric label, log field). */
  readonly gateway: string;
  readonly user: Principal;
  readonly params: Readonly<Record<string, string>>;
  /** Values the upgrade guards attached for this gateway (e.g. a resume id). */
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly openedAt: number;
  /**
   * The inbound rate limit, made on the first frame (ConnectionManager.handleFrame) as if made at `openedAt`:
   * a full bucket only refills up to its burst, so that is the same bucket, and the many connections that never
   * send a frame (alerts subscribers) skip an object each.
   */
  bucket: TokenBucket | undefined;
  /** Schemas of the client frame types this gateway declared. */
  readonly frames: Readonly<Record<string, ZodType>> | undefined;
  lastFrameAt: number;
  /** Cleared on each heartbeat ping, set by the pong (or by any frame). */
  alive = true;
  /** The code the server decided on, or the one the peer sent; the first decision wins. */
  closeCode: number | undefined;
  closeReason = '';
  /** Room keys this connection joined in the registry. */
  rooms: string[] | undefined;
  /**
   * It speaks the channel vocabulary (`/ws`): every delivery is a frame naming its channel (`publication`,
   * `join`, …), not the path endpoint's (`alert`, `message`, …).
   */
  multiplexed = false;
  /**
   * Frames this connection may send at its start beyond RATE_LIMIT_BURST, once (`/ws`: a reconnecting client
   * re-subscribes every channel it held, up to MAX_SUBSCRIPTIONS_PER_CONNECTION, in one go).
   */
  frameCredit = 0;
  /**
   * The gateway's frame types and this connection's handlers, as Nest made them (a list of a few, searched in
   * order: a Map per connection cost ~200 bytes of heap more).
   */
  handlers: readonly FrameHandlerEntry[] | undefined;
  /** Set for SSE streams: every frame is wrapped as an event (WebSocket connections: undefined, one check). */
  wrapper: FrameWrapper | undefined;
  /** This turn's write queue, private like ws's sender queue: frames queued since the last flush. */
  private pending: Buffer | Buffer[] | undefined;
  private pendingBytes = 0;
  /** The socket's unsent bytes when the first frame of this turn was queued (a costly getter, read once). */
  private unsentBytes = 0;
  private closeListeners: (() => void)[] | undefined;
  private closeTasks: Promise<unknown>[] | undefined;

  constructor(
    readonly ws: Socket,
    private readonly host: ConnectionHost,
    init: ConnectionInit,
  ) {
    this.id = init.id;
    this.gateway = init.gateway;
    this.user = init.user;
    this.params = init.params;
    this.attributes = init.attributes;
    this.frames = init.frames;
    this.openedAt = init.now;
    this.lastFrameAt = init.now;
  }

  /** Open and not being closed by us: frames sent now will be written. */
  get isOpen(): boolean {
    return this.closeCode === undefined && this.ws.readyState === 1;
  }

  /** Serialises and queues one frame for this socket. Returns false when it was not queued. */
  send(frame: object): boolean {
    if (this.wrapper !== undefined) return this.queue(this.wrapper.wrapObject(frame));
    return this.queue(encodeFrame(frame));
  }

  /**
   * Queues an already serialised frame (broadcasts serialise once and call this per socket; buffers are
   * shared, never copied). Over SLOW_CONSUMER_BYTES the socket is a slow consumer and nothing is queued.
   * `position`: where a history publication moves its channel (an SSE stream's cursor); WebSocket ignores it.
   */
  sendEncoded(data: Buffer, position?: FramePosition): boolean {
    return this.queue(this.wrapper === undefined ? data : this.wrapper.wrap(data, position));
  }

  private queue(data: Buffer): boolean {
    const pending = this.pending;
    if (pending === undefined) {
      if (!this.isOpen) return false;
      this.unsentBytes = this.ws.bufferedAmount;
    }
    if (this.unsentBytes + this.pendingBytes + data.length > this.host.slowConsumerBytes) {
      this.host.slowConsumer(this);
      return false;
    }
    if (pending === undefined) {
      this.pending = data;
      this.host.schedule(this);
    } else if (Array.isArray(pending)) {
      pending.push(data);
    } else {
      this.pending = [pending, data];
    }
    this.pendingBytes += data.length;
    return true;
  }

  /** @internal the writer's turn: hands this turn's frames to the socket in one corked write; returns how many. */
  flush(): number {
    const pending = this.pending;
    if (pending === undefined) return 0;
    this.pending = undefined;
    this.pendingBytes = 0;
    const ws = this.ws;
    if (ws.readyState !== 1) return 0;
    if (!Array.isArray(pending)) {
      ws.send(pending, TEXT);
      return 1;
    }
    const socket = rawSocket(ws);
    socket?.cork();
    try {
      for (let i = 0; i < pending.length; i++) ws.send(pending[i], TEXT);
    } finally {
      socket?.uncork();
    }
    return pending.length;
  }

  /** @internal the socket closed: what was queued will never be written. */
  discardQueue(): void {
    this.pending = undefined;
    this.pendingBytes = 0;
  }

  /** Sends `{"type":"error",...}`; the connection stays open. */
  sendError(code: ErrorCode, message: string, channel?: string): void {
    this.host.frameError(this, code);
    this.send(errorFrame(code, message, channel));
  }

  /** Graceful close with a code; frames queued before it are written first. */
  close(code: number, reason = ''): void {
    if (this.closeCode !== undefined) return;
    this.closeCode = code;
    this.closeReason = reason;
    this.host.flushNow(this);
    this.ws.close(code, reason);
  }

  /** Drops the TCP connection at once (dead peers, hard limits); counted under `code`. */
  terminate(code: number = CloseCode.ABNORMAL, reason = ''): void {
    if (this.closeCode === undefined) {
      this.closeCode = code;
      this.closeReason = reason;
    }
    this.ws.terminate();
  }

  /** An unexpected error while serving this connection: log it and close this socket only (1011). */
  fail(error: unknown): void {
    this.host.fail(this, error);
  }

  /** Runs after the socket is closed and removed from the registry. */
  onClose(listener: () => void): void {
    (this.closeListeners ??= []).push(listener);
  }

  /**
   * From a close listener: work the gateway still does for this connection (telling its room it left). What the
   * upgrade guards reserved (a seat, a room membership) is released only after it, so that a successor cannot
   * announce itself before this connection's departure was announced.
   */
  finishing(task: Promise<unknown>): void {
    (this.closeTasks ??= []).push(task.catch(() => undefined));
  }

  /** @internal resolves when every `finishing` task has settled. */
  async finished(): Promise<void> {
    if (this.closeTasks) await Promise.all(this.closeTasks);
  }

  /** @internal called once by the manager. */
  runCloseListeners(onError: (error: unknown) => void): void {
    const listeners = this.closeListeners;
    this.closeListeners = undefined;
    if (!listeners) return;
    for (const listener of listeners) {
      try {
        listener();
      } catch (error) {
        onError(error);
      }
    }
  }
}
