import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import Redis, { type RedisOptions } from 'ioredis';
import { Gauge } from 'prom-client';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { channelKind, createEnvelope, prefixed, preciseNow, type BusEnvelope, type BusHandler, type MessageBus } from './message-bus';
import { StreamIdGenerator } from './stream-id';

/** Marks envelopes written by a gateway; anything else on a channel came from another service. */
const ENVELOPE_VERSION = 1;
/** A malformed message is logged at most this often per channel kind (it is always counted). */
const INVALID_LOG_EVERY_MS = 5000;
/** Origin of messages that other services PUBLISH directly (`PUBLISH rt:alerts '{"data":{...}}'`). */
export const EXTERNAL_ORIGIN = 'external';

export class BusUnavailableError extends Error {
  constructor() {
    super('the message bus (Redis) is unreachable');
  }
}

type WireEnvelope = BusEnvelope & { v: number };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Cluster-mode bus over Redis pub/sub: one publisher and one subscriber connection per process; a channel is
 * subscribed only while this node has a handler for it. Each envelope is serialised once per publish.
 * Publishing fails fast while Redis is down (no unbounded offline queue); the subscriber reconnects and
 * resubscribes by itself (ioredis autoResubscribe).
 */
@Injectable()
export class RedisBus implements MessageBus, OnModuleDestroy {
  readonly mode = 'cluster' as const;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly handlers = new Map<string, Set<BusHandler>>();
  private readonly ids = new StreamIdGenerator();
  private readonly up: Gauge;
  private upValue = 0;
  private readonly invalidLoggedAt = new Map<string, number>();
  private readonly prefix: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    if (!config.redisUrl) throw new Error('RedisBus needs REDIS_URL');
    this.prefix = config.redisPrefix;
    this.up = new Gauge({ name: 'ws_redis_up', help: '1 while both Redis connections are ready', registers: [metrics.registry] });
    this.up.set(0);
    const common: RedisOptions = {
      connectionName: `realtime-gateway:${config.nodeId}`,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      connectTimeout: 5000,
    };
    this.pub = new Redis(config.redisUrl, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    // The subscriber keeps its offline queue so a subscribe issued while reconnecting is not lost.
    this.sub = new Redis(config.redisUrl, { ...common, autoResubscribe: true });
    for (const [name, connection] of [['pub', this.pub], ['sub', this.sub]] as const) {
      connection.on('ready', () => this.statusChanged(name));
      connection.on('close', () => this.statusChanged(name));
      connection.on('error', (error: Error) => this.log.debug({ redis: name, err: error.message }, 'redis connection error'));
    }
    this.sub.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
  }

  isReady(): boolean {
    return this.pub.status === 'ready' && this.sub.status === 'ready';
  }

  async publish<T>(channel: string, data: T): Promise<BusEnvelope<T>> {
    if (this.pub.status !== 'ready') throw new BusUnavailableError();
    const envelope = createEnvelope(this.ids, this.config.nodeId, channel, data);
    try {
      await this.pub.publish(prefixed(this.prefix, channel), JSON.stringify({ v: ENVELOPE_VERSION, ...envelope }));
    } catch {
      throw new BusUnavailableError();
    }
    this.metrics.busPublished.labels(channelKind(channel)).inc();
    return envelope;
  }

  subscribe<T>(channel: string, handler: BusHandler<T>): () => void {
    let handlers = this.handlers.get(channel);
    if (!handlers) {
      this.handlers.set(channel, (handlers = new Set()));
      this.sub.subscribe(prefixed(this.prefix, channel)).catch((error: Error) =>
        this.log.warn({ channel: channelKind(channel), err: error.message }, 'subscribe failed; retried on reconnect'),
      );
    }
    handlers.add(handler as BusHandler);
    return () => {
      handlers.delete(handler as BusHandler);
      if (handlers.size > 0 || this.handlers.get(channel) !== handlers) return;
      this.handlers.delete(channel);
      this.sub.unsubscribe(prefixed(this.prefix, channel)).catch(() => undefined);
    };
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.allSettled([this.pub.quit(), this.sub.quit()]);
    this.pub.disconnect();
    this.sub.disconnect();
  }

  private statusChanged(connection: 'pub' | 'sub'): void {
    const ready = this.isReady();
    if (this.upValue === (ready ? 1 : 0)) return;
    this.upValue = ready ? 1 : 0;
    this.up.set(this.upValue);
    if (ready) this.log.info({ event: 'redis_up' }, 'redis reachable');
    else this.log.warn({ event: 'redis_down', connection }, 'redis unreachable');
  }

  private receive(redisChannel: string, payload: Buffer): void {
    const channel = redisChannel.startsWith(`${this.prefix}:`) ? redisChannel.slice(this.prefix.length + 1) : redisChannel;
    const kind = channelKind(channel);
    let message: unknown;
    try {
      message = JSON.parse(payload.toString('utf8'));
    } catch {
      return this.invalid(kind, 'not JSON');
    }
    if (!isObject(message)) return this.invalid(kind, 'not a JSON object');
    let envelope: BusEnvelope;
    if (message.v === ENVELOPE_VERSION) {
      const wire = message as Partial<WireEnvelope>;
      if (typeof wire.id !== 'string' || typeof wire.origin !== 'string' || typeof wire.ts !== 'number' || !('data' in wire)) {
        return this.invalid(kind, 'incomplete envelope');
      }
      envelope = { id: wire.id, channel, origin: wire.origin, ts: wire.ts, data: wire.data };
    } else {
      // Published by another service: the whole object is the payload; receivers validate it.
      envelope = { id: '', channel, origin: EXTERNAL_ORIGIN, ts: preciseNow(), data: message };
    }
    this.metrics.busReceived.labels(kind).inc();
    const handlers = this.handlers.get(channel);
    if (!handlers) return;
    for (const handler of handlers) {
      try {
        handler(envelope);
      } catch (error) {
        this.log.error({ err: error, channel: kind }, 'bus handler failed');
      }
    }
  }

  private invalid(kind: string, reason: string): void {
    this.metrics.busInvalid.labels(kind).inc();
    const now = Date.now();
    if (now - (this.invalidLoggedAt.get(kind) ?? 0) < INVALID_LOG_EVERY_MS) return;
    this.invalidLoggedAt.set(kind, now);
    this.log.warn({ event: 'bus_invalid', channel: kind, reason }, 'dropped a malformed bus message (counted in ws_bus_invalid_total)');
  }
}
