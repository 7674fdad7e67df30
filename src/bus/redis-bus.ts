import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { RedisConnections, RedisUnavailableError } from '../redis/redis-connections';
import { InvalidMessages } from './invalid-messages';
import {
  channelKind,
  createEnvelope,
  prefixed,
  preciseNow,
  type BusEnvelope,
  type BusHandler,
  type MessageBus,
  type Subscription,
} from './message-bus';
import { StreamIdGenerator } from './stream-id';

/** Marks envelopes written by a gateway; anything else on a channel came from another service. */
const ENVELOPE_VERSION = 1;
/** Origin of messages that other services PUBLISH directly (`PUBLISH rt:alerts '{"data":{...}}'`). */
export const EXTERNAL_ORIGIN = 'external';

type WireEnvelope = BusEnvelope & { v: number };

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Cluster-mode bus over Redis pub/sub: a channel is subscribed only while this node has a handler for it, and
 * each envelope is serialised once per publish. Publishing fails fast while Redis is down (no unbounded
 * offline queue); the subscriber connection resubscribes by itself after a reconnect.
 */
@Injectable()
export class RedisBus implements MessageBus {
  readonly mode = 'cluster' as const;
  private readonly handlers = new Map<string, Set<BusHandler>>();
  /** Per subscribed channel: settles when Redis confirmed the SUBSCRIBE. */
  private readonly subscribed = new Map<string, Promise<void>>();
  private readonly ids = new StreamIdGenerator();
  private readonly invalid: InvalidMessages;
  private readonly prefix: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.prefix = config.redisPrefix;
    this.invalid = new InvalidMessages(metrics, log);
    redis.subscriber.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
  }

  isReady(): boolean {
    return this.redis.isReady();
  }

  async publish<T>(channel: string, data: T): Promise<BusEnvelope<T>> {
    if (this.redis.command.status !== 'ready') throw new RedisUnavailableError();
    const envelope = createEnvelope(this.ids, this.config.nodeId, channel, data);
    try {
      await this.redis.command.publish(prefixed(this.prefix, channel), JSON.stringify({ v: ENVELOPE_VERSION, ...envelope }));
    } catch {
      throw new RedisUnavailableError();
    }
    this.metrics.busPublished.labels(channelKind(channel)).inc();
    return envelope;
  }

  subscribe<T>(channel: string, handler: BusHandler<T>): Subscription {
    let handlers = this.handlers.get(channel);
    if (!handlers) {
      this.handlers.set(channel, (handlers = new Set()));
      const subscribing = this.redis.subscriber.subscribe(prefixed(this.prefix, channel)).then(
        () => undefined,
        (error: Error) => this.log.warn({ channel: channelKind(channel), err: error.message }, 'subscribe failed; retried on reconnect'),
      );
      this.subscribed.set(channel, subscribing);
    }
    handlers.add(handler as BusHandler);
    const unsubscribe = () => {
      handlers.delete(handler as BusHandler);
      if (handlers.size > 0 || this.handlers.get(channel) !== handlers) return;
      this.handlers.delete(channel);
      this.subscribed.delete(channel);
      this.redis.subscriber.unsubscribe(prefixed(this.prefix, channel)).catch(() => undefined);
    };
    return Object.assign(unsubscribe, { ready: this.subscribed.get(channel)! });
  }

  private receive(redisChannel: string, payload: Buffer): void {
    const channel = redisChannel.startsWith(`${this.prefix}:`) ? redisChannel.slice(this.prefix.length + 1) : redisChannel;
    const kind = channelKind(channel);
    let message: unknown;
    try {
      message = JSON.parse(payload.toString('utf8'));
    } catch {
      return this.invalid.drop(kind, 'not JSON');
    }
    if (!isObject(message)) return this.invalid.drop(kind, 'not a JSON object');
    let envelope: BusEnvelope;
    if (message.v === ENVELOPE_VERSION) {
      const wire = message as Partial<WireEnvelope>;
      if (typeof wire.id !== 'string' || typeof wire.origin !== 'string' || typeof wire.ts !== 'number' || !('data' in wire)) {
        return this.invalid.drop(kind, 'incomplete envelope');
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
}
