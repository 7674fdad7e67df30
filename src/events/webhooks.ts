import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Counter, Gauge } from 'prom-client';
import { Webhook } from 'standardwebhooks';
import type { WebhookConfig } from '../config/config';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../metrics/metrics';
import type { EventsOut, EventType } from './events-out';
import type { ClaimedEvent, QueuedEvent, WebhookQueue } from './webhook-queue';

/** docs/events.md: no answer within 10 s is a failed attempt. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** A claim holds an event this long: past the request timeout with room for a stalled loop, so no replica takes an event another is still trying. */
export const LEASE_MS = 30_000;
/** Backoff: the first retry 500 ms after the failure (docs/events.md: 0.5 s, 1 s, 2 s, …), doubling, at most 30 s apart. */
export const FIRST_RETRY_MS = 500;
export const MAX_RETRY_MS = 30_000;
/** Requests in flight per replica: a dead receiver ties up at most this many sockets, never the event loop. */
export const CONCURRENCY = 4;
/** How often a replica looks for due events (retries, and events other replicas queued). */
export const POLL_MS = 250;
/** Events a replica keeps while Redis is unreachable (cluster mode); beyond it new events are dropped and counted. */
export const LOCAL_BUFFER_MAX = 10_000;
/**
 * On shutdown, requests in flight get this long to be answered and recorded (a 2xx then leaves the queue at
 * once); the rest are cut, and their events wait out the lease (30 s) for another replica.
 */
export const STOP_WAIT_MS = 2000;
/** Recent failures kept for the admin console. */
export const FAILURES_KEPT = 50;
/** Warn lines of one kind at most this often: a receiver refusing every event would otherwise log each one. */
const WARN_EVERY_MS = 10_000;

export type WebhookResult = 'delivered' | 'retried' | 'failed' | 'dropped';

/** One failed attempt, for the admin console: never the URL, the secret or a header value. */
export interface WebhookFailure {
  /** ISO 8601. */
  at: string;
  type: EventType;
  /** The `webhook-id`, so the receiver's logs can be searched for it. */
  id: string;
  /** What came of it: retried later, given up (4xx), or dropped (retry window over, queue full). */
  result: Exclude<WebhookResult, 'delivered'>;
  /** The receiver's status, when it answered. */
  status?: number;
  /** Why there was no answer: `timeout`, `ECONNREFUSED`, ... */
  error?: string;
}

/** What the admin console shows. */
export interface WebhookStatus {
  enabled: boolean;
  /** Events waiting (cluster mode: the cluster's queue); null when Redis cannot be asked. */
  queue: number | null;
  /** Requests to the receiver open on this replica. */
  in_flight: number;
  events: readonly EventType[];
  failures: WebhookFailure[];
}

/** Read by the admin console (`GET /api/webhooks`); provided by EventsModule in both cases. */
export const WEBHOOK_STATUS = Symbol('WEBHOOK_STATUS');

export interface WebhookStatusSource {
  status(): Promise<WebhookStatus>;
}

export const DISABLED_STATUS: WebhookStatusSource = {
  status: () => Promise.resolve({ enabled: false, queue: 0, in_flight: 0, events: [], failures: [] }),
};

/** Backoff after `attempts` failed attempts (1: the first failure): 0.5 s, 1 s, 2 s, ... at most 30 s. */
export function retryDelay(attempts: number): number {
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(attempts - 1, 16));
}

/** Whether an answer (or its absence) is worth another attempt: 5xx, 408, 429 and no answer (docs/events.md). */
function retryable(status: number | undefined): boolean {
  return status === undefined || status >= 500 || status === 408 || status === 429;
}

interface Attempt {
  status?: number;
  error?: string;
}

/**
 * Events out, delivered as Standard Webhooks POSTs to WEBHOOK_URL (docs/events.md). `emit` only appends
 * to a local array; the next tick writes the batch to the queue (memory, or Redis in one script call), and a
 * bounded set of requests (CONCURRENCY) takes due events from it. The receiver is never awaited on a path a
 * socket waits on: a slow or dead one fills the queue, not the event loop.
 */
export class WebhookEventsOut implements EventsOut, WebhookStatusSource {
  private readonly wanted: ReadonlySet<EventType>;
  private readonly signer: Webhook;
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;
  private readonly counter: Counter<'event' | 'result'>;
  /** Cached children: emit and each answer count without hashing labels (3 × 9 series). */
  private readonly counts = new Map<string, Counter.Internal>();
  private pending: QueuedEvent[] = [];
  /** emit's `queued` callbacks, called once the event's batch is written (or dropped by a full queue: dealt with). */
  private readonly onQueued = new WeakMap<QueuedEvent, () => void>();
  private flushing = false;
  private flushScheduled = false;
  private inFlight = 0;
  private claiming = false;
  private stopped = false;
  private poller: NodeJS.Timeout | undefined;
  private started = false;
  private readonly failures: WebhookFailure[] = [];
  private lastSize = 0;
  private readonly requests = new Set<{ destroy(): void }>();
  /** Set once stop() stops waiting: outcomes that come later are not recorded (Redis may be closing). */
  private aborted = false;
  private idle: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Per warn kind: when it was last written, and how many were held back since. */
  private readonly warned = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly config: WebhookConfig,
    private readonly queue: WebhookQueue & { ready?(): boolean; onReady?(listener: () => void): () => void },
    metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.wanted = new Set(config.events);
    this.signer = new Webhook(config.secret);
    this.url = new URL(config.url);
    const https = this.url.protocol === 'https:';
    // Kept-alive sockets, as many as requests in flight: one TCP (and TLS) handshake per socket, not per event.
    this.agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: CONCURRENCY }) : new HttpAgent({ keepAlive: true, maxSockets: CONCURRENCY });
    this.send = https ? httpsRequest : httpRequest;
    this.counter = new Counter({
      name: 'ws_webhook_events_total',
      help: 'Webhook deliveries by event type and result: delivered (2xx), retried (5xx, 408, 429, no answer), failed (other 4xx, given up), dropped (retry window over, or queue full)',
      labelNames: ['event', 'result'] as const,
      registers: [metrics.registry],
    });
    for (const type of config.events) for (const result of ['delivered', 'retried', 'failed', 'dropped'] as const) this.count(type, result, 0);
    const self = this;
    new Gauge({
      name: 'ws_webhook_queue',
      help: "Webhook events waiting to be delivered (cluster mode: the whole cluster's queue)",
      registers: [metrics.registry],
      async collect() {
        this.set(await self.queueSize());
      },
    });
  }

  /** Starts polling once the app is built (cluster mode: the Redis links exist by then). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.poller = setInterval(() => this.pump(), POLL_MS);
    this.poller.unref();
    // Cluster mode: what was buffered while Redis was away goes out as soon as it is back.
    this.unsubscribe = this.queue.onReady?.(() => this.scheduleFlush());
    this.scheduleFlush();
  }

  wants(type: EventType): boolean {
    return this.wanted.has(type);
  }

  emit(type: EventType, data: Record<string, unknown>, options?: { id?: string; queued?: () => void }): void {
    if (!this.wanted.has(type) || this.stopped) return;
    const id = options?.id ?? `msg_${randomUUID().replace(/-/g, '')}`;
    if (this.pending.length >= LOCAL_BUFFER_MAX) {
      this.count(type, 'dropped');
      this.remember({ type, id, result: 'dropped', error: `${LOCAL_BUFFER_MAX} events already wait for Redis` });
      return;
    }
    const now = Date.now();
    let body: string;
    try {
      // Serialised now: the caller may change `data` afterwards, and every attempt must sign the same bytes.
      body = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data });
    } catch (error) {
      // A cycle or a BigInt in `data`: a producer's bug, never the caller's exception (emit never throws).
      this.count(type, 'dropped');
      this.warn('webhook_unserialisable', { type, reason: (error as Error).message }, `webhook ${type} dropped: its data is not JSON (${(error as Error).message})`);
      return;
    }
    const event: QueuedEvent = { id, type, body, queuedAt: now };
    if (options?.queued) this.onQueued.set(event, options.queued);
    this.pending.push(event);
    this.scheduleFlush();
  }

  async status(): Promise<WebhookStatus> {
    let queue: number | null;
    try {
      queue = (await this.queue.size()) + this.pending.length;
    } catch {
      queue = null;
    }
    return { enabled: true, queue, in_flight: this.inFlight, events: [...this.wanted], failures: [...this.failures].reverse() };
  }

  /** Stops polling and sending; what is queued stays queued (cluster mode: in Redis, for the other replicas). */
  async stop(): Promise<void> {
    clearInterval(this.poller);
    this.unsubscribe?.();
    // Stopped first, so no new claim starts; then a last write of what was emitted but not yet queued (cluster
    // mode; embedded mode loses it with the process).
    this.stopped = true;
    if (this.pending.length && !this.flushing) await this.flush();
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idle = resolve;
        timer = setTimeout(resolve, STOP_WAIT_MS);
      });
      clearTimeout(timer);
    }
    this.aborted = true;
    for (const request of this.requests) request.destroy();
    this.agent.destroy();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  /** Writes the pending events to the queue in one batch; kept for the next try when Redis is unreachable. */
  private async flush(): Promise<void> {
    if (this.flushing || this.pending.length === 0 || !this.started) return;
    if (this.queue.ready && !this.queue.ready()) return; // onReady flushes
    this.flushing = true;
    const batch = this.pending;
    this.pending = [];
    try {
      const dropped = await this.queue.add(batch, this.config.queueMax);
      if (dropped > 0) {
        // The script keeps the first events of the batch and drops the rest.
        for (const event of batch.slice(batch.length - dropped)) {
          this.count(event.type, 'dropped');
          this.remember({ type: event.type, id: event.id, result: 'dropped', error: `queue full (WEBHOOK_QUEUE_MAX ${this.config.queueMax})` });
        }
      }
      this.flushing = false;
      for (const event of batch) {
        const queued = this.onQueued.get(event);
        if (!queued) continue;
        this.onQueued.delete(event);
        try {
          queued();
        } catch {
          // A producer's callback never stops the queue.
        }
      }
      this.pump();
    } catch (error) {
      this.flushing = false;
      // Back to the front, in order; emit's bound still holds (it counts drops beyond it).
      this.pending = batch.concat(this.pending);
      this.warn('webhook_queue_unavailable', { queued: this.pending.length, reason: (error as Error).message }, 'webhook events could not be queued in Redis; kept in memory and tried again every second');
      setTimeout(() => this.scheduleFlush(), 1000).unref();
      return;
    }
    if (this.pending.length) this.scheduleFlush();
  }

  /** Takes due events while there is room for more requests. */
  private pump(): void {
    if (this.claiming || this.stopped || !this.started || this.inFlight >= CONCURRENCY) return;
    if (this.queue.ready && !this.queue.ready()) return;
    this.claiming = true;
    const want = CONCURRENCY - this.inFlight;
    this.queue.claim(Date.now(), want, LEASE_MS).then(
      (events) => {
        this.claiming = false;
        for (const event of events) void this.deliver(event);
        // A full claim: there may be more due; the answers (or the next poll) pump again.
      },
      () => {
        this.claiming = false; // Redis unreachable: the next poll tries again
      },
    );
  }

  private async deliver(event: ClaimedEvent): Promise<void> {
    this.inFlight++;
    let attempt: Attempt;
    try {
      attempt = await this.post(event);
    } finally {
      this.inFlight--;
    }
    // Cut by stop(): the lease ends and another replica (or the next start) tries it.
    if (this.aborted) return;
    const now = Date.now();
    try {
      if (attempt.status !== undefined && attempt.status >= 200 && attempt.status < 300) {
        this.count(event.type, 'delivered');
        await this.queue.remove(event.id);
      } else if (!retryable(attempt.status)) {
        this.count(event.type, 'failed');
        this.remember({ type: event.type, id: event.id, result: 'failed', ...attempt });
        this.warn('webhook_failed', { type: event.type, id: event.id, status: attempt.status }, `webhook receiver refused ${event.type} ${event.id} with ${attempt.status}; given up (fix the receiver: only 5xx, 408 and 429 are retried)`);
        await this.queue.remove(event.id);
      } else if (now >= event.queuedAt + this.config.retryMs) {
        this.count(event.type, 'dropped');
        this.remember({ type: event.type, id: event.id, result: 'dropped', ...attempt });
        this.warn('webhook_dropped', { type: event.type, id: event.id, status: attempt.status, reason: attempt.error }, `webhook ${event.type} ${event.id} dropped: not delivered within WEBHOOK_RETRY_S (${this.config.retryMs / 1000} s)`);
        await this.queue.remove(event.id);
      } else {
        this.count(event.type, 'retried');
        this.remember({ type: event.type, id: event.id, result: 'retried', ...attempt });
        // The last attempt lands on the end of the window, not after it.
        const due = Math.min(now + retryDelay(event.attempts + 1), event.queuedAt + this.config.retryMs);
        await this.queue.reschedule(event, due);
      }
    } catch {
      // Redis went away before the outcome was written: the lease ends and the event is tried again (at least once).
    }
    if (this.stopped) {
      if (this.inFlight === 0) this.idle?.();
      return;
    }
    this.pump();
  }

  /** One signed POST; resolves with the status, or the reason there was none. Never rejects. */
  private post(event: ClaimedEvent): Promise<Attempt> {
    return new Promise((resolve) => {
      // webhook-timestamp is this attempt's time (the receiver rejects signatures older than its tolerance).
      const now = new Date();
      let settled = false;
      const done = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.requests.delete(request);
        resolve(attempt);
      };
      const request = this.send(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(event.body),
          'user-agent': 'realtime-gateway-webhooks',
          'webhook-id': event.id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': this.signer.sign(event.id, now, event.body),
        },
      });
      this.requests.add(request);
      const timer = setTimeout(() => {
        done({ error: 'timeout' });
        request.destroy();
      }, REQUEST_TIMEOUT_MS);
      request.on('response', (response: IncomingMessage) => {
        // The body is not read for anything; draining it frees the kept-alive socket.
        response.resume();
        response.on('end', () => done({ status: response.statusCode }));
        response.on('error', () => done({ status: response.statusCode }));
      });
      request.on('error', (error: Error & { code?: string }) => done({ error: error.code ?? 'request failed' }));
      request.end(event.body);
    });
  }

  private count(type: EventType, result: WebhookResult, by = 1): void {
    const key = `${type}\0${result}`;
    let child = this.counts.get(key);
    if (!child) this.counts.set(key, (child = this.counter.labels(type, result)));
    child.inc(by);
  }

  /** A warn line, at most one per kind per 10 s; the next says how many were held back. */
  private warn(kind: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const last = this.warned.get(kind);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.held++;
      return;
    }
    const held = last?.held ?? 0;
    this.warned.set(kind, { at: now, held: 0 });
    this.log.warn({ event: kind, ...fields, ...(held ? { suppressed: held } : {}) }, held ? `${message} (and ${held} more like it in the last ${Math.round((now - last!.at) / 1000)} s)` : message);
  }

  private remember(failure: Omit<WebhookFailure, 'at'>): void {
    this.failures.push({ at: new Date().toISOString(), ...failure });
    if (this.failures.length > FAILURES_KEPT) this.failures.shift();
  }

  private async queueSize(): Promise<number> {
    try {
      this.lastSize = (await this.queue.size()) + this.pending.length;
    } catch {
      // Redis unreachable: the last size known (a gauge that vanished would break dashboards).
    }
    return this.lastSize;
  }
}

