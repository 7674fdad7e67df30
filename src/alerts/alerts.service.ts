import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { MESSAGE_BUS, preciseNow, type BusEnvelope, type MessageBus } from '../bus/message-bus';
import { compareStreamIds, formatStreamId, parseStreamId, StreamIdGenerator, type StreamId } from '../bus/stream-id';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { Metrics } from '../metrics/metrics';
import { encodeAlertFrame, type Alert, type AlertInput } from './alert';
import { AlertHistory } from './alert-history';

export const ALERTS_CHANNEL = 'alerts';

function isTarget(alert: Alert, roles: Set<string> | undefined, users: Set<string> | undefined, conn: Connection) {
  if (!roles && !users) return true;
  return (roles?.has(conn.user.role) ?? false) || (users?.has(conn.user.sub) ?? false);
}

/**
 * Alerts: publish (id assigned, kept in history, fanned out through the bus), delivery to subscribers, and
 * resume: replay after an id, then live alerts without a gap or a duplicate.
 */
@Injectable()
export class AlertsService implements OnModuleInit, OnModuleDestroy {
  private readonly history: AlertHistory;
  private readonly ids = new StreamIdGenerator();
  /** Connections that resumed: live alerts at or below their last replayed id are skipped once. */
  private readonly floors = new WeakMap<Connection, StreamId>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(MESSAGE_BUS) private readonly bus: MessageBus,
    private readonly connections: ConnectionManager,
    private readonly metrics: Metrics,
  ) {
    this.history = new AlertHistory(config.alertHistorySize);
  }

  onModuleInit(): void {
    this.unsubscribe = this.bus.subscribe<Alert>(ALERTS_CHANNEL, (envelope) => this.deliver(envelope));
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  async publish(input: AlertInput): Promise<Alert> {
    const key = this.ids.next();
    const alert: Alert = { id: formatStreamId(key), ts: key.ms, ...input };
    this.history.append({ alert, key, frame: encodeAlertFrame(alert) });
    await this.bus.publish(ALERTS_CHANNEL, alert);
    return alert;
  }

  /** A new subscriber: replay after `since` (if given) and then `resumed`; live alerts follow in order. */
  attach(conn: Connection, since: string | undefined): void {
    if (since === undefined) return;
    const replay = this.history.since(since);
    let last = parseStreamId(since)!;
    for (const { alert, key, frame } of replay.alerts) {
      const roles = alert.roles && new Set(alert.roles);
      const users = alert.users && new Set(alert.users);
      if (isTarget(alert, roles, users, conn)) conn.sendEncoded(frame);
      last = key;
    }
    this.floors.set(conn, last);
    conn.send({ type: 'resumed', recovered: replay.recovered });
  }

  private deliver(envelope: BusEnvelope<Alert>): void {
    const alert = envelope.data;
    const key = parseStreamId(alert.id);
    if (!key) return;
    const frame = encodeAlertFrame(alert);
    const roles = alert.roles && new Set(alert.roles);
    const users = alert.users && new Set(alert.users);
    for (const conn of this.connections.registry.inGateway('alerts')) {
      const floor = this.floors.get(conn);
      if (floor) {
        if (compareStreamIds(key, floor) <= 0) continue;
        this.floors.delete(conn);
      }
      if (isTarget(alert, roles, users, conn)) conn.sendEncoded(frame);
    }
    this.connections.whenFlushed(() =>
      this.metrics.deliverySeconds.observe(Math.max(0, preciseNow() - envelope.ts) / 1000),
    );
  }
}
