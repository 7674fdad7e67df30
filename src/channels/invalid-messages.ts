import type { Logger } from '../logging/logger';
import type { Metrics } from '../metrics/metrics';

/** A malformed message is logged at most this often per channel kind (it is always counted). */
const LOG_EVERY_MS = 5000;

/**
 * The broker and the channel policies each drop malformed input of the same channel kind; they share one
 * limit per app (keyed by its Metrics), or a flood would log once per dropper.
 */
const lastLogged = new WeakMap<Metrics, Map<string, number>>();

/**
 * Drops malformed messages from other services visibly but cheaply: every one is counted in
 * `ws_bus_invalid_total{channel}`, and a flood costs one log line per channel kind every few seconds.
 */
export class InvalidMessages {
  private readonly loggedAt: Map<string, number>;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.loggedAt = lastLogged.get(metrics) ?? new Map();
    lastLogged.set(metrics, this.loggedAt);
  }

  drop(kind: string, reason: string): void {
    this.metrics.busInvalid.labels(kind).inc();
    const now = Date.now();
    if (now - (this.loggedAt.get(kind) ?? 0) < LOG_EVERY_MS) return;
    this.loggedAt.set(kind, now);
    this.log.warn({ event: 'bus_invalid', channel: kind, reason }, 'dropped a malformed bus message (counted in ws_bus_invalid_total)');
  }
}
