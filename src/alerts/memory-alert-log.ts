import { Inject, Injectable } from '@nestjs/common';
import { formatStreamId, StreamIdGenerator, type StreamId } from '../bus/stream-id';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { preciseNow } from '../bus/message-bus';
import { Metrics } from '../metrics/metrics';
import { encodeAlertFrame, type Alert, type AlertInput } from './alert';
import { AlertHistory } from './alert-history';
import type { AlertLog, LoggedAlert, Replay } from './alert-log';

/** Embedded mode: the last ALERT_HISTORY_SIZE alerts in memory; delivery in a microtask, like the bus. */
@Injectable()
export class MemoryAlertLog implements AlertLog {
  private readonly history: AlertHistory;
  private readonly ids = new StreamIdGenerator();
  private readonly handlers: ((entry: LoggedAlert) => void)[] = [];

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: Metrics,
  ) {
    this.history = new AlertHistory(config.alertHistorySize);
  }

  async append(input: AlertInput): Promise<Alert> {
    const key = this.ids.next();
    const alert: Alert = { id: formatStreamId(key), ts: key.ms, ...input };
    const entry: LoggedAlert = { alert, key, frame: encodeAlertFrame(alert), publishedAt: preciseNow() };
    this.history.append(entry);
    this.metrics.busPublished.labels('alerts').inc();
    queueMicrotask(() => {
      this.metrics.busReceived.labels('alerts').inc();
      for (const handler of this.handlers) handler(entry);
    });
    return alert;
  }

  async since(since: StreamId): Promise<Replay> {
    return this.history.since(since);
  }

  tail(handler: (entry: LoggedAlert) => void): void {
    this.handlers.push(handler);
  }

  isReady(): boolean {
    return true;
  }
}
