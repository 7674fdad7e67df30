import type { Logger } from '../logging/logger';
import type { Metrics } from '../metrics/metrics';

/** A malformed message is logged at most this often per channel kind (it is always counted). */
const LOG_EVERY_MS = 5000;

/**
 * Drops malformed messages from other services visibly but cheaply: every one is counted in
 * `ws_bus_invalid_total{channel}`, and a flood costs one log line per channel kind every few seconds.
 */
export class InvalidMessages {
  private readonly loggedAt = new Map<string, number>();

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  drop(kind: string, reason: string): void {
    this.metrics.busInvalid.labels(kind).inc();
    const now = Date.now();
    if (now - (this.loggedAt.get(kind) ?? 0) < LOG_EVERY_MS) return;
    this.loggedAt.set(kind, now);
    this.log.warn({ event: 'bus_invalid', channel: kind, reason }, 'dropped a malformed bus message (counted in ws_bus_invalid_total)');
  }
}
