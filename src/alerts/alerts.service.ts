import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { InvalidMessages } from '../bus/invalid-messages';
import { MESSAGE_BUS, preciseNow, type BusEnvelope, type MessageBus } from '../bus/message-bus';
import { compareStreamIds, formatStreamId, StreamIdGenerator, type StreamId } from '../bus/stream-id';
import { CloseCode } from '../connection/close-codes';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { AlertInputSchema, encodeAlertFrame, type Alert, type AlertInput } from './alert';
import { ALERT_LOG, type AlertLog, type LoggedAlert } from './alert-log';

/** Bus channel for live-only alerts that other services PUBLISH (`rt:alerts` in cluster mode). */
export const ALERTS_CHANNEL = 'alerts';

/** An alert on its way to sockets; live-only ones are not in the log, so no resume floor applies to them. */
interface Delivery extends LoggedAlert {
  durable: boolean;
}

function targets(alert: Alert): (conn: Connection) => boolean {
  if (!alert.roles && !alert.users) return () => true;
  const roles = alert.roles && new Set(alert.roles);
  const users = alert.users && new Set(alert.users);
  return (conn) => (roles?.has(conn.user.role) ?? false) || (users?.has(conn.user.sub) ?? false);
}

/**
 * Alerts: publish (appended to the alert log, which assigns the id), delivery of the log's tail and of
 * live-only alerts to subscribers, and resume: replay after an id, `resumed`, then live alerts without a gap
 * or a duplicate.
 */
@Injectable()
export class AlertsService implements OnModuleInit, OnModuleDestroy {
  private readonly liveIds = new StreamIdGenerator();
  /** Connections that resumed: durable alerts at or below their last replayed id are skipped once. */
  private readonly floors = new Map<Connection, StreamId>();
  /** Connections whose replay is still being read: what arrives meanwhile waits here, in order. */
  private readonly resuming = new Map<Connection, Delivery[]>();
  private readonly invalid: InvalidMessages;
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(ALERT_LOG) private readonly alertLog: AlertLog,
    @Inject(MESSAGE_BUS) private readonly bus: MessageBus,
    private readonly connections: ConnectionManager,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.invalid = new InvalidMessages(metrics, log);
  }

  onModuleInit(): void {
    this.alertLog.tail((entry) => this.deliver({ ...entry, durable: true }));
    this.unsubscribe = this.bus.subscribe<unknown>(ALERTS_CHANNEL, (envelope) => this.live(envelope));
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  /** Appends to the alert log; every node's subscribers get it from the log's tail. */
  publish(input: AlertInput): Promise<Alert> {
    return this.alertLog.append(input);
  }

  /**
   * A new subscriber: replay after `since` (if given) and then `resumed`; live alerts follow in order.
   * Synchronous for a live-only subscriber (the common case); a resume returns the replay's promise.
   */
  attach(conn: Connection, since: StreamId | undefined): void | Promise<void> {
    conn.onClose(() => {
      this.floors.delete(conn);
      this.resuming.delete(conn);
    });
    if (since !== undefined) return this.resume(conn, since);
  }

  private async resume(conn: Connection, since: StreamId): Promise<void> {
    const waiting: Delivery[] = [];
    this.resuming.set(conn, waiting);
    let replay;
    try {
      replay = await this.alertLog.since(since);
    } catch (error) {
      this.resuming.delete(conn);
      this.log.warn({ event: 'resume_failed', conn: conn.id, err: (error as Error).message }, 'alert history unavailable');
      // Rare: the guard refuses `since` with 503 while Redis is down; this is a link lost mid-replay.
      conn.close(CloseCode.INTERNAL_ERROR, 'alert history unavailable, reconnect');
      return;
    }
    if (!this.resuming.has(conn)) return; // closed while reading
    this.resuming.delete(conn);
    let floor = since;
    for (const { alert, key, frame } of replay.alerts) {
      if (targets(alert)(conn)) conn.sendEncoded(frame);
      floor = key;
    }
    conn.send({ type: 'resumed', recovered: replay.recovered });
    this.floors.set(conn, floor);
    for (const delivery of waiting) if (this.admits(conn, delivery) && targets(delivery.alert)(conn)) conn.sendEncoded(delivery.frame);
  }

  /** Alerts another service PUBLISHed: validated, given a node-local id, delivered live (not resumable). */
  private live(envelope: BusEnvelope<unknown>): void {
    const parsed = AlertInputSchema.safeParse(envelope.data);
    if (!parsed.success) return this.invalid.drop(ALERTS_CHANNEL, parsed.error.issues[0].message);
    const key = this.liveIds.next();
    const alert: Alert = { id: formatStreamId(key), ts: key.ms, ...parsed.data };
    this.deliver({ alert, key, frame: encodeAlertFrame(alert), publishedAt: envelope.ts, durable: false });
  }

  /** Whether a resumed connection still needs this alert (durable ones up to its replay were already sent). */
  private admits(conn: Connection, delivery: Delivery): boolean {
    if (!delivery.durable || this.floors.size === 0) return true;
    const floor = this.floors.get(conn);
    if (!floor) return true;
    if (compareStreamIds(delivery.key, floor) <= 0) return false;
    this.floors.delete(conn);
    return true;
  }

  private deliver(delivery: Delivery): void {
    const isTarget = targets(delivery.alert);
    let written = false;
    for (const conn of this.connections.registry.inGateway('alerts')) {
      if (this.resuming.size > 0) {
        const waiting = this.resuming.get(conn);
        if (waiting) {
          waiting.push(delivery);
          continue;
        }
      }
      if (this.admits(conn, delivery) && isTarget(conn) && conn.sendEncoded(delivery.frame)) written = true;
    }
    // Only what reached a socket is a delivery: a replica without subscribers (or without targets) would
    // otherwise report every alert as delivered at once and pull the histogram down.
    if (!written) return;
    this.connections.whenFlushed(() =>
      this.metrics.deliverySeconds.observe(Math.max(0, preciseNow() - delivery.publishedAt) / 1000),
    );
  }
}
