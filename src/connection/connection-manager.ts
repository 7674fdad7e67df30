import { Inject, Injectable, Optional, type OnModuleDestroy } from '@nestjs/common';
import type { RawData } from 'ws';
import type { ZodType } from 'zod';
import type { Principal } from '../auth/principal';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { EVENTS_OUT, type EventsOut } from '../events/events-out';
import { hotLine, jsonString, LOGGER, type HotLine, type Logger } from '../logging/logger';
import { Metrics, type Tally } from '../metrics/metrics';
import { CloseCode, closeCodeLabel, WS_ERROR_CLOSE_CODES } from './close-codes';
import { Connection, type ConnectionHost, type FrameHandler, type Socket } from './connection';
import { ConnectionRegistry } from './connection-registry';
import { FrameError, PONG_TEXT } from './frames';
import { jsonDepthExceeds } from './json-depth';
import { Outbox } from './outbox';
import { TokenBucket } from './token-bucket';

const CONNECTION = Symbol('connection');
type TaggedSocket = Socket & { [CONNECTION]?: Connection };

const PING_TEXT = Buffer.from('ping');

/** A drain closes at least this many sockets per second, however long DRAIN_WINDOW_MS is. */
const MIN_DRAIN_RATE = 100;
/** Granularity of a spread drain. */
const DRAIN_TICK_MS = 10;
/** Beyond this many refused frames (× burst) a client is abusive, not bursty: close 1008. */
const ABUSE_FACTOR = 3;

interface GatewayCounters {
  received: Tally;
  sent: Tally;
  active: Tally;
  opened: Tally;
}

/** What the door hands over for a socket that passed every check (the upgrade context fits it). */
export interface AcceptedUpgrade {
  readonly connectionId: string;
  readonly gateway: string;
  readonly user?: Principal;
  readonly params: Readonly<Record<string, string>>;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** Held by every connection whose path has no params or whose guards attached nothing (most). */
const NOTHING: Readonly<Record<string, never>> = Object.freeze({});

/** An empty object held per connection is 56 bytes of heap each; they all share one instead. */
function orShared<T extends Readonly<Record<string, unknown>>>(values: T): T {
  for (const _ in values) return values;
  return NOTHING as T;
}

function handlerFor(conn: Connection, type: string): FrameHandler | undefined {
  const handlers = conn.handlers;
  if (handlers) for (let i = 0; i < handlers.length; i++) if (handlers[i].message === type) return handlers[i].callback;
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeIssue(error: { issues: { path: PropertyKey[]; message: string }[] }): string {
  const issue = error.issues[0];
  const where = issue.path.length ? issue.path.map(String).join('.') : 'frame';
  return `${where}: ${issue.message}`;
}

/**
 * Owns every accepted socket on this node: registry, inbound frame pipeline, heartbeat, idle and token-expiry
 * checks, write coalescing and closing with the right code. Gateways only see Connection objects.
 */
@Injectable()
export class ConnectionManager implements ConnectionHost, OnModuleDestroy {
  readonly registry = new ConnectionRegistry();
  private readonly outbox: Outbox;
  readonly slowConsumerBytes: number;
  private readonly perGateway = new Map<string, GatewayCounters>();
  private readonly closeTallies = new Map<string, Tally>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly sweeper: NodeJS.Timeout;
  private readonly emptyWaiters: (() => void)[] = [];
  private readonly roomsEmptied: ((rooms: readonly string[]) => void)[] = [];
  private nextId = 0;
  private drainPromise: Promise<void> | undefined;
  // ws calls listeners with `this` bound to the socket: one function per event for all sockets, not a
  // closure per socket.
  private readonly onMessage: (this: TaggedSocket, data: RawData, isBinary: boolean) => void;
  private readonly onPong: (this: TaggedSocket) => void;
  private readonly onError: (this: TaggedSocket, error: Error & { code?: string }) => void;
  private readonly onClose: (this: TaggedSocket, code: number, reason: Buffer) => void;
  /** The connect and close lines (debug), written without pino's generic path (undefined: through pino). */
  private readonly connectLine: HotLine | undefined;
  private readonly closeLine: HotLine | undefined;
  /** Since the last summary line (CONNECTION_LOG_INTERVAL_MS): opens, closes, and closes by code label. */
  private openedSince = 0;
  private closedSince = 0;
  private readonly closesSince = new Map<string, number>();
  private readonly summary: NodeJS.Timeout;
  /** Events out for `connection.opened` / `.closed`, or undefined when not wanted: one test per socket then. */
  private readonly openedOut: EventsOut | undefined;
  private readonly closedOut: EventsOut | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
    @Optional() @Inject(EVENTS_OUT) events?: EventsOut,
  ) {
    this.openedOut = events?.wants('connection.opened') ? events : undefined;
    this.closedOut = events?.wants('connection.closed') ? events : undefined;
    this.slowConsumerBytes = config.slowConsumerBytes;
    this.outbox = new Outbox({
      onSlowConsumer: (conn) => conn.close(CloseCode.TRY_AGAIN_LATER, 'slow consumer'),
      // Once per upgrade (the welcome) and per flush: a cached child, not a labels() hash per call.
      onWritten: (gateway, frames) => this.gatewayCounters(gateway).sent.inc(frames),
      onWriteError: (conn, error) => {
        this.log.debug({ conn: conn.id, gateway: conn.gateway, err: error }, 'write failed');
        conn.terminate(CloseCode.ABNORMAL, 'write failed');
      },
    });
    const manager = this;
    this.onMessage = function (data, isBinary) {
      const conn = this[CONNECTION];
      if (conn) manager.handleFrame(conn, data as Buffer, isBinary);
    };
    this.onPong = function () {
      const conn = this[CONNECTION];
      if (conn) conn.alive = true;
    };
    this.onError = function (error) {
      const conn = this[CONNECTION];
      if (conn) manager.socketError(conn, error);
    };
    this.onClose = function (code, reason) {
      const conn = this[CONNECTION];
      if (conn) manager.closed(conn, code, reason);
    };
    // A line per connect and per close at debug; info gets one summary per interval (docs/benchmarks.md, "What a
    // connection costs": at info the two lines were ~420 bytes per connection, 4 MB/s at 10,000 connects per
    // second that nobody reads one by one; ws_closes_total is the record of every close).
    this.connectLine = hotLine(log, 'debug', 'connection opened');
    this.closeLine = hotLine(log, 'debug', 'connection closed');
    this.summary = setInterval(() => this.logSummary(), config.connectionLogIntervalMs).unref();
    this.heartbeat = setInterval(() => this.pingAll(), config.heartbeatIntervalMs).unref();
    const sweepEvery = config.idleTimeoutMs ? Math.min(1000, Math.max(25, config.idleTimeoutMs / 4)) : 1000;
    this.sweeper = setInterval(() => this.sweep(), sweepEvery).unref();
  }

  get draining(): boolean {
    return this.drainPromise !== undefined;
  }

  /**
   * Called by the adapter once the handshake is done and every guard has passed. `frames` are the gateway's
   * schemas from @RealtimeGateway({ frames }).
   */
  /** Unique on this node; the upgrade context gets it before the guards run. */
  newConnectionId(): string {
    return (++this.nextId).toString(36);
  }

  accept(ws: Socket, accepted: AcceptedUpgrade, frames?: Readonly<Record<string, ZodType>>): Connection {
    const now = Date.now();
    const conn = new Connection(ws, this, {
      id: accepted.connectionId,
      gateway: accepted.gateway,
      user: accepted.user!,
      params: orShared(accepted.params),
      attributes: orShared(accepted.attributes),
      frames,
      now,
    });
    (ws as TaggedSocket)[CONNECTION] = conn;
    ws.on('message', this.onMessage);
    ws.on('pong', this.onPong);
    ws.on('error', this.onError);
    ws.on('close', this.onClose);
    this.registry.add(conn);
    const counters = this.gatewayCounters(conn.gateway);
    counters.active.inc();
    counters.opened.inc();
    this.openedSince++;
    const line = this.connectLine;
    if (!line) {
      this.log.debug(
        { event: 'connect', conn: conn.id, gateway: conn.gateway, sub: conn.user.sub, role: conn.user.role },
        'connection opened',
      );
    } else if (line.enabled) {
      // The same line as the object above would give (test/unit/logger.spec.ts).
      line.write(
        `,"event":"connect","conn":${jsonString(conn.id)},"gateway":${jsonString(conn.gateway)},"sub":${jsonString(conn.user.sub)},"role":${jsonString(conn.user.role)}`,
      );
    }
    this.openedOut?.emit('connection.opened', { user: conn.user.sub, gateway: conn.gateway, node: this.config.nodeId });
    return conn;
  }

  /** The inbound pipeline: binary, rate limit, text ping, JSON, type, schema, handler. */
  private handleFrame(conn: Connection, data: Buffer, isBinary: boolean): void {
    const now = Date.now();
    conn.lastFrameAt = now;
    conn.alive = true;
    this.gatewayCounters(conn.gateway).received.inc();
    if (!conn.isOpen) return;
    if (isBinary) {
      this.frameError(conn, 'binary');
      conn.close(CloseCode.UNSUPPORTED_DATA, 'binary frames are not accepted');
      return;
    }
    const bucket = (conn.bucket ??= new TokenBucket(this.config.rateLimitPerSec, this.config.rateLimitBurst, conn.openedAt, conn.frameCredit));
    if (!bucket.take(now)) {
      if (bucket.dropped >= ABUSE_FACTOR * this.config.rateLimitBurst) {
        this.frameError(conn, 'rate_limit_abuse');
        conn.close(CloseCode.POLICY_VIOLATION, 'rate limit exceeded');
      } else {
        conn.sendError(
          'rate_limited',
          `too many frames: at most ${this.config.rateLimitPerSec}/s (burst ${this.config.rateLimitBurst}); this one was dropped`,
        );
      }
      return;
    }
    if (data.length === 4 && data.equals(PING_TEXT)) {
      conn.sendEncoded(PONG_TEXT);
      return;
    }
    if (jsonDepthExceeds(data, this.config.maxJsonDepth)) {
      conn.sendError('invalid_message', `frame nested deeper than ${this.config.maxJsonDepth} levels (MAX_JSON_DEPTH)`);
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(data.toString('utf8'));
    } catch {
      conn.sendError('invalid_json', 'frame is not valid JSON');
      return;
    }
    if (!isPlainObject(frame) || typeof frame.type !== 'string') {
      conn.sendError('invalid_message', 'a frame is a JSON object with a string "type"');
      return;
    }
    const type = frame.type;
    if (type === 'ping') {
      conn.send({ type: 'pong', ts: now });
      return;
    }
    const handler = handlerFor(conn, type);
    if (!handler) {
      const known = ['ping', ...(conn.handlers?.map((h) => h.message) ?? [])].join(', ');
      conn.sendError('unknown_type', `unknown type "${type.slice(0, 64)}" (this endpoint accepts: ${known})`);
      return;
    }
    const schema = conn.frames?.[type];
    if (schema) {
      const parsed = schema.safeParse(frame);
      if (!parsed.success) {
        conn.sendError('invalid_message', `invalid "${type}" frame: ${describeIssue(parsed.error)}`);
        return;
      }
      frame = parsed.data;
    }
    try {
      const result = handler(frame as Record<string, unknown>, type);
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        (result as Promise<unknown>).then(
          (reply) => this.reply(conn, reply),
          (error) => conn.fail(error),
        );
      } else {
        this.reply(conn, result);
      }
    } catch (error) {
      conn.fail(error);
    }
  }

  /** A handler's return value, when it is a frame, goes back to the sender. */
  private reply(conn: Connection, reply: unknown): void {
    if (isPlainObject(reply) && typeof reply.type === 'string') conn.send(reply);
  }

  private socketError(conn: Connection, error: Error & { code?: string }): void {
    const code = error.code ? WS_ERROR_CLOSE_CODES[error.code] : undefined;
    if (code !== undefined || error.code?.startsWith('WS_ERR_')) {
      this.frameError(conn, code === CloseCode.MESSAGE_TOO_BIG ? 'too_big' : code ? 'invalid_utf8' : 'protocol');
      if (conn.closeCode === undefined) {
        conn.closeCode = code ?? CloseCode.PROTOCOL_ERROR;
        conn.closeReason = error.message;
      }
    }
    // A misbehaving client can produce these at will: debug, not error.
    this.log.debug({ conn: conn.id, gateway: conn.gateway, code: error.code }, 'socket error');
  }

  private closed(conn: Connection, wireCode: number, reason: Buffer): void {
    if (conn.closeCode === undefined) {
      conn.closeCode = wireCode;
      conn.closeReason = reason.length ? reason.toString('utf8').slice(0, 123) : '';
    }
    conn.discardQueue();
    conn.handlers = undefined;
    const emptied = this.registry.remove(conn);
    this.gatewayCounters(conn.gateway).active.dec();
    const codeLabel = closeCodeLabel(conn.closeCode);
    this.closeTally(conn.gateway, codeLabel).inc();
    this.closedSince++;
    this.closesSince.set(codeLabel, (this.closesSince.get(codeLabel) ?? 0) + 1);
    const line = this.closeLine;
    if (!line) {
      this.log.debug(
        {
          event: 'close',
          conn: conn.id,
          gateway: conn.gateway,
          sub: conn.user.sub,
          code: conn.closeCode,
          reason: conn.closeReason,
          durationMs: Date.now() - conn.openedAt,
        },
        'connection closed',
      );
    } else if (line.enabled) {
      // closeCode is a number by now (set above); both numbers are finite integers.
      line.write(
        `,"event":"close","conn":${jsonString(conn.id)},"gateway":${jsonString(conn.gateway)},"sub":${jsonString(conn.user.sub)},"code":${conn.closeCode},"reason":${jsonString(conn.closeReason)},"durationMs":${Date.now() - conn.openedAt}`,
      );
    }
    this.closedOut?.emit('connection.closed', {
      user: conn.user.sub,
      gateway: conn.gateway,
      node: this.config.nodeId,
      code: conn.closeCode,
      reason: conn.closeReason,
      duration_ms: Date.now() - conn.openedAt,
    });
    conn.runCloseListeners((error) =>
      this.log.error({ conn: conn.id, gateway: conn.gateway, err: error }, 'error in a close handler'),
    );
    if (emptied.length) for (const listener of this.roomsEmptied) listener(emptied);
    if (this.registry.size === 0 && this.emptyWaiters.length) {
      for (const resolve of this.emptyWaiters.splice(0)) resolve();
    }
  }

  /**
   * Called with the rooms (channels) a closing connection left without a member on this node, after its own
   * close listeners: one listener for the node instead of a closure per socket per room.
   */
  onRoomsEmptied(listener: (rooms: readonly string[]) => void): void {
    this.roomsEmptied.push(listener);
  }

  // ConnectionHost
  schedule(conn: Connection): void {
    this.outbox.schedule(conn);
  }

  slowConsumer(conn: Connection): void {
    this.outbox.slowConsumer(conn);
  }

  flushNow(conn: Connection): void {
    this.outbox.flushNow(conn);
  }

  /** Runs `callback` once the frames queued so far are written (for delivery-latency metrics). */
  whenFlushed(callback: () => void): void {
    this.outbox.whenFlushed(callback);
  }

  frameError(conn: Connection, code: string): void {
    this.metrics.frameErrors.labels(conn.gateway, code).inc();
  }

  fail(conn: Connection, error: unknown): void {
    if (error instanceof FrameError) {
      conn.sendError(error.code, error.message, error.channel);
      return;
    }
    this.log.error(
      { conn: conn.id, gateway: conn.gateway, sub: conn.user.sub, err: error },
      'unexpected error in a gateway handler; closing this connection with 1011',
    );
    conn.close(CloseCode.INTERNAL_ERROR, 'internal error');
  }

  /** ws_closes_total by gateway and code label (bounded: closeCodeLabel), one tally each. */
  private closeTally(gateway: string, code: string): Tally {
    const key = `${gateway} ${code}`;
    let tally = this.closeTallies.get(key);
    if (!tally) this.closeTallies.set(key, (tally = this.metrics.tally(this.metrics.closes, gateway, code)));
    return tally;
  }

  /** prom-client hashes the label values on every inc() of a child: tallies, added up when metrics are read. */
  private gatewayCounters(gateway: string): GatewayCounters {
    let counters = this.perGateway.get(gateway);
    if (!counters) {
      counters = {
        received: this.metrics.tally(this.metrics.messagesReceived, gateway),
        sent: this.metrics.tally(this.metrics.messagesSent, gateway),
        active: this.metrics.tally(this.metrics.connectionsActive, gateway),
        opened: this.metrics.tally(this.metrics.connectionsTotal, gateway),
      };
      this.perGateway.set(gateway, counters);
    }
    return counters;
  }

  /** Terminates sockets that did not answer the previous ping (counted 1006), pings the rest. */
  private pingAll(): void {
    for (const conn of this.registry.all()) {
      if (!conn.alive) {
        conn.terminate(CloseCode.ABNORMAL, 'missed heartbeat');
        continue;
      }
      conn.alive = false;
      if (conn.ws.readyState === 1) conn.ws.ping();
    }
  }

  /** Token expiry (4001) and idle timeout (1001), checked in one pass. */
  private sweep(): void {
    const now = Date.now();
    const idle = this.config.idleTimeoutMs;
    for (const conn of this.registry.all()) {
      if (!conn.isOpen) continue;
      const exp = conn.user.exp;
      if (exp !== undefined && now >= exp * 1000) conn.close(CloseCode.TOKEN_EXPIRED, 'token expired');
      else if (idle > 0 && now - conn.lastFrameAt >= idle) conn.close(CloseCode.GOING_AWAY, 'idle timeout');
    }
  }

  /**
   * Closes every socket with `code`, spread over up to DRAIN_WINDOW_MS (at least MIN_DRAIN_RATE per second,
   * so a small node drains fast) so that clients do not all reconnect to the other replicas in the same
   * instant; then waits up to `graceMs` for the close handshakes and terminates the stragglers. Idempotent:
   * later calls share the first drain.
   */
  drain(code: number = CloseCode.SERVICE_RESTART, reason = 'server restarting', graceMs = this.config.shutdownGraceMs) {
    this.drainPromise ??= (async () => {
      await this.closeSpread([...this.registry.all()], code, reason, this.config.drainWindowMs);
      await this.untilEmpty(graceMs);
      if (this.registry.size === 0) return;
      for (const conn of [...this.registry.all()]) conn.terminate(code, reason);
      // Their close events (log line, ws_closes_total) come a tick later; let them land before exit.
      await this.untilEmpty(1000);
    })();
    return this.drainPromise;
  }

  private async untilEmpty(timeoutMs: number): Promise<void> {
    if (this.registry.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.emptyWaiters.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  private async closeSpread(conns: Connection[], code: number, reason: string, windowMs: number): Promise<void> {
    const spanMs = Math.min(windowMs, (conns.length / MIN_DRAIN_RATE) * 1000);
    const steps = Math.max(1, Math.min(conns.length, Math.floor(spanMs / DRAIN_TICK_MS)));
    const perStep = Math.ceil(conns.length / steps);
    for (let step = 0, i = 0; i < conns.length; step++) {
      if (step > 0) await new Promise((resolve) => setTimeout(resolve, spanMs / steps));
      for (const end = Math.min(conns.length, i + perStep); i < end; i++) conns[i].close(code, reason);
    }
  }

  /**
   * The info line of CONNECTION_LOG_INTERVAL_MS: how many connections opened and closed (by close code label,
   * as ws_closes_total counts them) since the last one, and how many are open. None for a quiet interval.
   */
  private logSummary(): void {
    const opened = this.openedSince;
    const closed = this.closedSince;
    if (opened === 0 && closed === 0) return;
    const closes = Object.fromEntries(this.closesSince);
    this.openedSince = 0;
    this.closedSince = 0;
    this.closesSince.clear();
    const intervalMs = this.config.connectionLogIntervalMs;
    this.log.info(
      { event: 'connections', opened, closed, closes, open: this.registry.size, intervalMs },
      `connections: +${opened} opened, -${closed} closed in the last ${intervalMs / 1000} s`,
    );
  }

  onModuleDestroy(): void {
    clearInterval(this.heartbeat);
    clearInterval(this.sweeper);
    clearInterval(this.summary);
    this.logSummary(); // what the last interval (the drain's closes) saw
  }
}
