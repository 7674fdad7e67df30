import type { WebSocket } from 'ws';
import type { ZodType } from 'zod';
import type { Principal } from '../auth/principal';
import { CloseCode } from './close-codes';
import { encodeFrame, errorFrame, type ErrorCode } from './frames';
import type { TokenBucket } from './token-bucket';

/** A frame handler bound by Nest (@SubscribeMessage), called with the validated frame. */
export type FrameHandler = (frame: Record<string, unknown>, type: string) => unknown;

/** What a connection needs from the node-wide machinery; implemented by ConnectionManager. */
export interface ConnectionHost {
  enqueue(conn: Connection, data: Buffer): boolean;
  flushNow(conn: Connection): void;
  frameError(conn: Connection, code: string): void;
  fail(conn: Connection, error: unknown): void;
}

export interface ConnectionInit {
  id: string;
  gateway: string;
  user: Principal;
  params: Readonly<Record<string, string>>;
  attributes: Readonly<Record<string, unknown>>;
  bucket: TokenBucket;
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
  readonly bucket: TokenBucket;
  /** Schemas of the client frame types this gateway declared. */
  readonly frames: Readonly<Record<string, ZodType>> | undefined;
  lastFrameAt: number;
  /** Cleared on each heartbeat ping, set by the pong (or by any frame). */
  alive = true;
  /** The code the server decided on, or the one the peer sent; the first decision wins. */
  closeCode: number | undefined;
  closeReason = '';
  /** Room keys this connection joined in the registry. */
  rooms: Set<string> | undefined;
  handlers: Map<string, FrameHandler> | undefined;
  /** Outbox state: frames queued during this event-loop turn. */
  pending: Buffer | Buffer[] | undefined;
  pendingBytes = 0;
  /** Outbox state: the socket's unsent bytes when the first frame of this turn was queued. */
  unsentBytes = 0;
  private closeListeners: (() => void)[] | undefined;
  private closeTasks: Promise<unknown>[] | undefined;

  constructor(
    readonly ws: WebSocket,
    private readonly host: ConnectionHost,
    init: ConnectionInit,
  ) {
    this.id = init.id;
    this.gateway = init.gateway;
    this.user = init.user;
    this.params = init.params;
    this.attributes = init.attributes;
    this.bucket = init.bucket;
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
    return this.host.enqueue(this, encodeFrame(frame));
  }

  /** Queues an already serialised frame; broadcasts serialise once and call this per socket. */
  sendEncoded(data: Buffer): boolean {
    return this.host.enqueue(this, data);
  }

  /** Sends `{"type":"error",...}`; the connection stays open. */
  sendError(code: ErrorCode, message: string): void {
    this.host.frameError(this, code);
    this.send(errorFrame(code, message));
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
