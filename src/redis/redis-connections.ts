import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { Gauge } from 'prom-client';
import { APP_CONFIG, type AppConfig, type RedisTarget } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';

type Role = 'command' | 'subscriber' | 'blocking' | 'durable';

/** A link to Redis: one connection (standalone, Sentinel) or a Redis Cluster client (a connection per node). */
export type RedisLink = Redis | Cluster;

/** Longest blocking read: a frozen link is noticed within this plus REDIS_TIMEOUT_MS. */
const MAX_BLOCK_MS = 5000;
/** Connection errors are logged at warn at most this often per link (one line per new reason at once). */
const ERROR_LOG_EVERY_MS = 30_000;

/**
 * A client for the configured topology. Sentinel: ioredis asks the sentinels for the master, reconnects to the
 * new one after a failover (the failover detector listens for +switch-master), and checks the role it reached.
 */
export function redisClient(target: RedisTarget, options: RedisOptions, cluster: { sharded?: boolean } = {}): RedisLink {
  // A replica promoted away from under us (or a demoted old master) answers writes with READONLY: reconnect,
  // which in Sentinel mode resolves the master again.
  const common: RedisOptions = { ...options, reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false) };
  switch (target.kind) {
    case 'standalone':
      return new Redis(target.url, common);
    case 'sentinel':
      return new Redis({
        ...common,
        sentinels: target.sentinels,
        name: target.name,
        db: target.db,
        username: target.username,
        password: target.password,
        sentinelPassword: target.sentinelPassword,
        enableTLSForSentinelMode: target.tls,
        ...(target.tls ? { tls: {} } : {}),
        // No failoverDetector: its disconnect on +switch-master raced with the reconnect after a killed master
        // and left links closed for good (1 in 3 failover runs beside other suites). A dead master closes the
        // link anyway, a demoted one answers READONLY (above), and a silent one is found by the watchdog.
        sentinelRetryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      });
    case 'cluster': {
      // ioredis follows MOVED/ASK and the slot map itself; a failover is a new slot owner.
      const { retryStrategy, enableOfflineQueue, ...perNode } = options;
      return new Cluster(target.nodes, {
        redisOptions: { ...perNode, username: target.username, password: target.password, ...(target.tls ? { tls: {} } : {}) },
        clusterRetryStrategy: (attempt) => retryStrategy?.(attempt) ?? Math.min(attempt * 100, 2000),
        enableOfflineQueue: enableOfflineQueue ?? true,
        // SSUBSCRIBE goes to the node that owns the channel's slot: one subscriber connection per shard.
        shardedSubscribers: cluster.sharded ?? false,
        slotsRefreshTimeout: Math.min(5000, options.connectTimeout ?? 5000),
      });
    }
  }
}

@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  readonly command: RedisLink;
  readonly subscriber: RedisLink;
  readonly blocking: RedisLink;
  /** Redis Cluster: shard channels (SSUBSCRIBE/SPUBLISH) for everything but the classic `alerts` channel of docs/cluster.md. */
  readonly cluster: boolean;
  /**
   * REDIS_MIN_REPLICAS_ACK > 0 only: history publishes and their WAIT. WAIT counts the replicas that have this
   * connection's writes and blocks the connection meanwhile, so it gets a link of its own rather than stalling
   * presence and reads on `command`.
   */
  readonly durable: RedisLink | undefined;
  /** BLOCK argument of XREAD: a read returns empty after this long, so it never outlives the timeout. */
  readonly blockMs: number;
  private readonly up: Gauge;
  private upValue = 0;
  private readonly subscriberReadyListeners = new Set<() => void>();
  private readonly readyListeners = new Set<() => void>();
  private readonly downListeners = new Set<() => void>();
  private readonly silent = new Set<Role>();
  private readonly probing = new Map<Role, number>();
  private readonly lastError = new Map<Role, { reason: string; at: number }>();
  /** When each link last received anything: a busy link (replies queued behind thousands of commands) is alive. */
  private readonly heardAt = new Map<Role, number>();
  private readonly watchdog: NodeJS.Timeout;
  private readonly timeoutMs: number;
  private closing = false;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    if (!config.redis) throw new Error('cluster mode needs REDIS_URL');
    const target = config.redis;
    this.cluster = target.kind === 'cluster';
    this.timeoutMs = config.redisTimeoutMs;
    this.blockMs = Math.max(100, Math.min(MAX_BLOCK_MS, Math.floor(config.redisTimeoutMs / 2)));
    this.up = new Gauge({ name: 'ws_redis_up', help: '1 while every Redis connection of this node answers', registers: [metrics.registry] });
    this.up.set(0);
    const common: RedisOptions = {
      connectionName: `realtime-gateway:${config.nodeId}`,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      connectTimeout: Math.min(5000, config.redisTimeoutMs),
      keepAlive: 10_000,
    };
    this.command = redisClient(target, {
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: config.redisTimeoutMs,
    });
    // Subscriptions issued while reconnecting wait in the queue rather than being lost.
    this.subscriber = redisClient(target, { ...common, autoResubscribe: true }, { sharded: true });
    // The tail re-issues its read itself after a failure; a queued read simply waits for the link.
    this.blocking = redisClient(target, {
      ...common,
      maxRetriesPerRequest: null,
      commandTimeout: this.blockMs + config.redisTimeoutMs,
    });
    this.durable = config.redisMinReplicasAck > 0
      ? redisClient(target, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: config.redisTimeoutMs })
      : undefined;
    for (const [role, connection] of this.links()) {
      connection.on('ready', () => {
        this.silent.delete(role);
        this.probing.delete(role);
        this.statusChanged(role);
        if (role === 'subscriber') this.subscriberReady();
      });
      connection.on('close', () => this.statusChanged(role));
      // ioredis stops reconnecting in a few cases (status 'end'); a gateway must never stay cut off for good.
      connection.on('end', () => {
        if (this.closing) return;
        this.log.warn({ event: 'redis_reconnect', connection: role }, `redis ${role} link ended; connecting again`);
        setTimeout(() => {
          if (!this.closing && connection.status === 'end') connection.connect().catch(() => undefined);
        }, 1000).unref();
      });
      connection.on('connect', () => {
        this.heardAt.set(role, Date.now());
        (connection as unknown as { stream?: NodeJS.EventEmitter }).stream?.on('data', () => this.heardAt.set(role, Date.now()));
      });
      // ioredis reports every failed reconnect attempt: each new reason at warn at once, a repeated one at most
      // every 30 s, so an unreachable Redis (or sentinel, or wrong master name) is said, not only at debug.
      connection.on('error', (error: Error) => this.connectionError(role, error));
    }
    const every = Math.max(50, Math.floor(config.redisTimeoutMs / 4));
    this.watchdog = setInterval(() => this.probe(), every);
    this.watchdog.unref();
  }

  private connectionError(role: Role, error: Error): void {
    const now = Date.now();
    const last = this.lastError.get(role);
    if (last && last.reason === error.message && now - last.at < ERROR_LOG_EVERY_MS) return;
    this.lastError.set(role, { reason: error.message, at: now });
    this.log.warn({ event: 'redis_error', connection: role, reason: error.message }, `redis ${role} link: ${error.message}`);
  }

  private links(): [Role, RedisLink][] {
    const links: [Role, RedisLink][] = [
      ['command', this.command],
      ['subscriber', this.subscriber],
      ['blocking', this.blocking],
    ];
    if (this.durable) links.push(['durable', this.durable]);
    return links;
  }

  isReady(): boolean {
    return this.silent.size === 0 && this.links().every(([, connection]) => connection.status === 'ready');
  }

  /** The command link alone: publishing needs only it. */
  isCommandReady(): boolean {
    return this.command.status === 'ready' && !this.silent.has('command');
  }

  /** Called each time all connections are ready again (after start and after every outage). */
  onReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Called each time the set stops being ready (a link closed or went silent). */
  onDown(listener: () => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  /** Called after every reconnect of the subscriber, once its channels are subscribed again. */
  onSubscriberReady(listener: () => void): () => void {
    this.subscriberReadyListeners.add(listener);
    return () => this.subscriberReadyListeners.delete(listener);
  }

  /** A blocking read failed: if it timed out and nothing arrived meanwhile, the link is silent. */
  silentBlocking(error: Error): void {
    if (/timed out/i.test(error.message) && this.blocking.status === 'ready' && this.quiet('blocking')) this.declareSilent('blocking', this.blocking);
  }

  /** Nothing arrived on the link for REDIS_TIMEOUT_MS. */
  private quiet(role: Role): boolean {
    return Date.now() - (this.heardAt.get(role) ?? 0) >= this.timeoutMs;
  }

  /** Last of the shutdown hooks, so that features can still write their goodbyes in onModuleDestroy. */
  onApplicationShutdown(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.watchdog);
    await Promise.allSettled([this.command.quit(), this.subscriber.quit(), this.durable?.quit()]);
    // A pending XREAD BLOCK would delay QUIT; the tail stops on its own when the connection ends.
    for (const [, connection] of this.links()) connection.disconnect();
  }

  private subscriberReady(): void {
    // ioredis emits 'ready' before it resubscribes; a PING queued now is answered after the SUBSCRIBEs.
    setImmediate(() => {
      this.subscriber.ping().then(
        () => {
          for (const listener of this.subscriberReadyListeners) listener();
        },
        () => undefined, // the link dropped again; the next 'ready' retries
      );
    });
  }

  private probe(): void {
    if (this.closing) return;
    const now = Date.now();
    for (const [role, connection] of this.links()) {
      if (role === 'blocking' || connection.status !== 'ready' || this.silent.has(role)) continue;
      const sentAt = this.probing.get(role);
      if (sentAt !== undefined) {
        // Unanswered for the timeout and nothing else heard either: silent. (Under overload the probe waits
        // behind queued commands while replies keep arriving: that link is slow, not dead.)
        if (now - sentAt >= this.timeoutMs && this.quiet(role)) this.declareSilent(role, connection);
        continue;
      }
      this.probing.set(role, now);
      const clear = () => {
        if (this.probing.get(role) === now) this.probing.delete(role);
      };
      connection.ping().then(clear, (error: Error) => {
        clear();
        // The command link has a command timeout of its own, which answers a frozen probe first.
        if (/timed out/i.test(error.message) && connection.status === 'ready' && !this.silent.has(role) && this.quiet(role)) this.declareSilent(role, connection);
      });
    }
  }

  private declareSilent(role: Role, connection: RedisLink): void {
    this.silent.add(role);
    this.probing.delete(role);
    this.log.warn(
      { event: 'redis_silent', connection: role, timeoutMs: this.timeoutMs },
      `redis link answered nothing for ${this.timeoutMs} ms (REDIS_TIMEOUT_MS); reconnecting`,
    );
    this.statusChanged(role);
    // A new TCP connection; ioredis resubscribes and our listeners catch up from the last delivered ids.
    connection.disconnect(true);
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
      for (const listener of this.downListeners) listener();
    }
  }
}
