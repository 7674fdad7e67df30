import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import Redis, { type RedisOptions } from 'ioredis';
import { Gauge } from 'prom-client';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';

/** Thrown when a command needs Redis and the link is down; callers answer 503, never queue. */
export class RedisUnavailableError extends Error {
  constructor() {
    super('Redis is unreachable');
  }
}

type Role = 'command' | 'subscriber' | 'blocking';

/**
 * The three Redis connections of a cluster-mode node, and whether they are all up (`ws_redis_up`, /readyz):
 * - `command`: publishes, stream appends, presence scripts. No offline queue: while Redis is down every
 *   command fails at once instead of piling up in memory.
 * - `subscriber`: pub/sub only; ioredis resubscribes by itself after a reconnect.
 * - `blocking`: the alert stream tail (XREAD BLOCK would stall everything else on a shared connection).
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  readonly command: Redis;
  readonly subscriber: Redis;
  readonly blocking: Redis;
  private readonly up: Gauge;
  private upValue = 0;
  private readonly readyListeners = new Set<() => void>();
  private closing = false;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    if (!config.redisUrl) throw new Error('cluster mode needs REDIS_URL');
    this.up = new Gauge({ name: 'ws_redis_up', help: '1 while every Redis connection of this node is ready', registers: [metrics.registry] });
    this.up.set(0);
    const common: RedisOptions = {
      connectionName: `realtime-gateway:${config.nodeId}`,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      connectTimeout: 5000,
      keepAlive: 10_000,
    };
    this.command = new Redis(config.redisUrl, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    // Subscriptions issued while reconnecting wait in the queue rather than being lost.
    this.subscriber = new Redis(config.redisUrl, { ...common, autoResubscribe: true });
    // The tail re-issues its read itself after a failure; a queued read simply waits for the link.
    this.blocking = new Redis(config.redisUrl, { ...common, maxRetriesPerRequest: null });
    for (const [role, connection] of [
      ['command', this.command],
      ['subscriber', this.subscriber],
      ['blocking', this.blocking],
    ] as const) {
      connection.on('ready', () => this.statusChanged(role));
      connection.on('close', () => this.statusChanged(role));
      // ioredis reports every failed reconnect attempt; the up/down transitions are logged once each.
      connection.on('error', (error: Error) => this.log.debug({ redis: role, err: error.message }, 'redis connection error'));
    }
  }

  isReady(): boolean {
    return this.command.status === 'ready' && this.subscriber.status === 'ready' && this.blocking.status === 'ready';
  }

  /** Called each time all connections are ready again (after start and after every outage). */
  onReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Last of the shutdown hooks, so that features can still write their goodbyes in onModuleDestroy. */
  onApplicationShutdown(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([this.command.quit(), this.subscriber.quit()]);
    // A pending XREAD BLOCK would delay QUIT; the tail stops on its own when the connection ends.
    for (const connection of [this.command, this.subscriber, this.blocking]) connection.disconnect();
  }

  private statusChanged(role: Role): void {
    const ready = this.isReady();
    if (this.upValue === (ready ? 1 : 0)) return;
    this.upValue = ready ? 1 : 0;
    this.up.set(this.upValue);
    if (this.closing) return;
    if (ready) {
      this.log.info({ event: 'redis_up' }, 'redis reachable');
      for (const listener of this.readyListeners) {
        try {
          listener();
        } catch (error) {
          this.log.error({ err: error }, 'redis ready listener failed');
        }
      }
    } else {
      this.log.warn({ event: 'redis_down', connection: role }, 'redis unreachable');
    }
  }
}
