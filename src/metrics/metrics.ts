import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Label values are bounded sets: `gateway` is a registered gateway's name (or `unknown`), `channel` a channel
 * kind; never a room, a user, a raw path or a token.
 */

/**
 * One labelled series counted on a hot path (a connect, a close, a welcome written): plain additions, handed to
 * prom-client when the metric is read. prom-client hashes the label values and validates them on every inc() of a
 * child, three times per upgrade (about 1.5 µs each under load; the gauge's setDelta was 1.5% of the server's CPU
 * in an upgrade profile).
 */
export class Tally {
  private pending = 0;
  constructor(private readonly child: { inc(value: number): void }) {}
  inc(value = 1): void {
    this.pending += value;
  }
  /** Gauges only: counters cannot go down. */
  dec(value = 1): void {
    this.pending -= value;
  }
  flush(): void {
    if (this.pending === 0) return;
    const value = this.pending;
    this.pending = 0;
    this.child.inc(value);
  }
}

/**
 * Every metric of the README's Observability section, on a registry of its own (not prom-client's global one) so that several app instances
 * can live in one test process.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly tallies: Tally[] = [];
  /** prom-client calls a metric's collect() before reading it: every tally is handed over then. */
  private readonly flushTallies = (): void => {
    for (const tally of this.tallies) tally.flush();
  };

  readonly connectionsActive = new Gauge({
    name: 'ws_connections_active',
    help: 'Open WebSocket connections on this node',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly connectionsTotal = new Counter({
    name: 'ws_connections_total',
    help: 'WebSocket connections accepted since start',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly upgradesRejected = new Counter({
    name: 'ws_upgrades_rejected_total',
    help: 'Upgrade requests refused with an HTTP status before the handshake',
    labelNames: ['gateway', 'status', 'error'] as const,
    registers: [this.registry],
  });
  readonly closes = new Counter({
    name: 'ws_closes_total',
    help: 'Closed connections by close code, whoever closed (1006: peer vanished or missed heartbeat)',
    labelNames: ['gateway', 'code'] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly messagesReceived = new Counter({
    name: 'ws_messages_received_total',
    help: 'Frames received from clients',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly messagesSent = new Counter({
    name: 'ws_messages_sent_total',
    help: 'Frames sent to clients (one per socket per message)',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly frameErrors = new Counter({
    name: 'ws_frame_errors_total',
    help: 'Client frames answered with an error frame or a protocol close, by error',
    labelNames: ['gateway', 'error'] as const,
    registers: [this.registry],
  });
  readonly busPublished = new Counter({
    name: 'ws_bus_published_total',
    help: 'Messages this node published on the bus, by channel kind',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly busReceived = new Counter({
    name: 'ws_bus_received_total',
    help: 'Messages this node received from the bus, by channel kind',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly busInvalid = new Counter({
    name: 'ws_bus_invalid_total',
    help: 'Malformed bus messages dropped, by channel kind',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly subscriptionsActive = new Gauge({
    name: 'ws_subscriptions_active',
    help: 'Channel subscriptions held by /ws connections on this node, by channel kind',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly proxyRequests = new Counter({
    name: 'ws_proxy_requests_total',
    help: 'Questions to the subscribe proxy (SUBSCRIBE_PROXY_URL), by result: allowed, denied, error, timeout',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly acks = new Counter({
    name: 'ws_acks_total',
    help: 'Acknowledgements of alerts recorded on this node (each user\'s first ack of an alert; repeats and refused acks not counted)',
    registers: [this.registry],
  });
  readonly pushSent = new Counter({
    name: 'ws_push_sent_total',
    help: 'Web Push messages by result: sent (2xx), retried (an attempt answered 408, 429, 5xx or not at all, tried again), removed (404, 410: the subscription is deleted), failed (any other answer: given up), dropped (attempts or patience exhausted, queue full, or shutdown)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly deliverySeconds = new Histogram({
    name: 'ws_delivery_seconds',
    help: 'Time from publish to the message being written to the local sockets',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named *_total fail `promtool check metrics`; their per-type siblings (nodejs_active_handles{type}
    // and so on) carry the same numbers.
    // Visible at 0 from the start, whether or not VAPID_* is set, so dashboards and alerts have a baseline.
    for (const result of ['sent', 'retried', 'removed', 'failed', 'dropped']) this.pushSent.labels(result).inc(0);
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
  }

  /** Series that must be visible at zero before the first event, so dashboards and alerts have a baseline. */
  /** A hot-path tally of one series of one of the metrics above that flush tallies when read. */
  tally(metric: Counter<string> | Gauge<string>, ...labels: string[]): Tally {
    const tally = new Tally(metric.labels(...labels));
    this.tallies.push(tally);
    return tally;
  }

  initGateway(gateway: string): void {
    this.connectionsActive.labels(gateway).set(0);
    this.connectionsTotal.labels(gateway).inc(0);
    this.messagesReceived.labels(gateway).inc(0);
    this.messagesSent.labels(gateway).inc(0);
  }
}
