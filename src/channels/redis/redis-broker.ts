import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/config';
import { LOGGER, type Logger } from '../../logging/logger';
import { Metrics } from '../../metrics/metrics';
import { RedisConnections } from '../../redis/redis-connections';
import {
  BrokerUnavailableError,
  NotReplicatedError,
  IDEMPOTENCY_TTL_MS,
  type Broker,
  type PublicationHandler,
  type PublishOptions,
  type SubscribeOptions,
  type Subscription,
} from '../broker';
import { InvalidMessages } from '../invalid-messages';
import { newEpoch } from '../memory-broker';
import { MESSAGE_LIMITS, MessageLimits } from '../message-limits';
import { channelKind, preciseNow, type HistoryPage, type Publication, type StreamPosition } from '../publication';
import { compareStreamIds, formatStreamId, parseStreamId } from '../stream-id';
import { PUBLISH_HISTORY, PUBLISH_LIVE } from './broker-scripts';
import { channelKeys, channelOf, type ChannelKeys } from './channel-keys';
import { EntryDecoder } from './entry-decoder';
import { OrderedChannel, type OrderingContext } from './ordered-channel';
import { complete, RETRY_MS, StreamReader } from './stream-reader';
import { NamespaceRegistry } from '../namespaces';

/**
 * Cluster mode's broker over one Redis. Live-only channels are plain pub/sub. A history channel is a stream
 * plus pub/sub: a Lua script appends and publishes in one step, and each publication names the id before it
 * (`prev`), so a node that missed one (a cut or frozen link, a service's own XADD) notices at the next one
 * and reads the gap from the stream; after every reconnect it also reads each subscribed channel from the last
 * id it delivered. Channels other services append to directly (`alerts`) are also read with a blocking XREAD,
 * which the same last-id bookkeeping merges without duplicates.
 *
 * This class publishes, answers history, and subscribes: it routes each pub/sub message to its channel's
 * OrderedChannel (which delivers in id order), with EntryDecoder turning Redis payloads into Publications and
 * StreamReader reading streams.
 */
@Injectable()
export class RedisBroker implements Broker, OnApplicationBootstrap, OnModuleDestroy {
  readonly mode = 'cluster' as const;
  private readonly channels = new Map<string, OrderedChannel>();
  private readonly prefix: string;
  private readonly decoder: EntryDecoder;
  private readonly reader: StreamReader;
  private readonly context: OrderingContext;
  private stopped = false;

  /** Each channel's history size and TTL (its namespace's, so both modes keep the same retention). */
  private readonly namespaces: NamespaceRegistry;
  /**
   * The channels of the `single` namespaces (alerts): they keep the fixed Redis names of docs/cluster.md (channel-keys.ts).
   * A single namespace is one channel, named like it.
   */
  private readonly singles: ReadonlySet<string>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly metrics: Metrics,
    @Inject(MESSAGE_LIMITS) limits: MessageLimits,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.prefix = config.redisPrefix;
    this.namespaces = new NamespaceRegistry(config);
    this.singles = new Set(this.namespaces.all().filter((ns) => ns.single).map((ns) => ns.name));
    this.decoder = new EntryDecoder(limits, new InvalidMessages(metrics, log));
    this.reader = new StreamReader(redis, log);
    this.context = { redis, reader: this.reader, decoder: this.decoder, log, nodeId: config.nodeId, stopped: () => this.stopped };
    redis.subscriber.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
    // Shard channels (Redis Cluster).
    redis.subscriber.on('smessageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
    // After every reconnect (of the subscriber, once resubscribed, and of the whole set): read what each
    // history channel got while this node was away. A fill that finds nothing costs one round trip.
    const fillAll = () => {
      for (const channel of this.channels.values()) channel.catchUp();
    };
    redis.onSubscriberReady(fillAll);
    redis.onReady(fillAll);
    redis.onDown(() => {
      for (const channel of this.channels.values()) channel.linkLost();
    });
  }

  onApplicationBootstrap(): void {
    void this.reader.tail(() => this.channels.values(), () => this.stopped);
  }

  onModuleDestroy(): void {
    this.stopped = true;
  }

  isReady(): boolean {
    return this.redis.isReady();
  }

  knownPosition(channel: string): StreamPosition | undefined {
    return this.channels.get(channel)?.knownPosition();
  }

  private keys(channel: string): ChannelKeys {
    return this.channels.get(channel)?.keys ?? channelKeys(this.prefix, channel, this.singles.has(channel));
  }

  /** On Redis Cluster a channel's messages travel sharded: only to its shard and the nodes subscribed there. */
  private sharded(keys: ChannelKeys): boolean {
    return keys.sharded && this.redis.cluster;
  }

  private publishCommand(keys: ChannelKeys): 'PUBLISH' | 'SPUBLISH' {
    return this.sharded(keys) ? 'SPUBLISH' : 'PUBLISH';
  }

  async publish(channel: string, data: Record<string, unknown>, options: PublishOptions): Promise<Publication> {
    if (!this.redis.isCommandReady()) {
      this.log.debug({ event: 'publish_refused', status: this.redis.command.status }, 'publish refused: command link not ready');
      throw new BrokerUnavailableError();
    }
    const ts = preciseNow();
    const json = JSON.stringify(data);
    const origin = this.config.nodeId;
    const keys = this.keys(channel);
    const idem = options.idempotencyKey === undefined ? [] : [keys.idempotency(options.idempotencyKey)];
    let publication: Publication;
    try {
      if (options.history) {
        const link = this.redis.durable ?? this.redis.command;
        const [id, epoch, first] = (await PUBLISH_HISTORY.run(
          link,
          [keys.stream, keys.meta, ...idem],
          [
            this.namespaces.of(channel)?.historySize || this.config.historySize,
            newEpoch(),
            options.historyTtlMs ?? this.historyTtlMs(channel),
            options.externalAppends ? '' : keys.live,
            json,
            String(ts),
            origin,
            IDEMPOTENCY_TTL_MS,
            this.publishCommand(keys),
          ],
        )) as [string, string, string, number];
        // On the same link after the script: WAIT counts the replicas that have this connection's writes so far.
        if (this.redis.durable) await this.replicated(link);
        publication = { channel, id, key: parseStreamId(id), epoch, ts: Number(first), origin, data };
      } else {
        const envelope = `{"v":1,"ts":${ts},"o":"${origin}","data":${json}}`;
        const [first] = (await PUBLISH_LIVE.run(this.redis.command, [keys.meta, ...idem], [keys.live, envelope, IDEMPOTENCY_TTL_MS, String(ts), this.publishCommand(keys)])) as [
          string,
          number,
        ];
        publication = { channel, ts: Number(first), origin, data };
      }
    } catch (error) {
      if (error instanceof NotReplicatedError) throw error;
      this.log.debug({ event: 'publish_failed', channel: channelKind(channel), reason: (error as Error).message }, 'publish failed');
      throw new BrokerUnavailableError();
    }
    this.metrics.busPublished.labels(channelKind(channel)).inc();
    return publication;
  }

  /** WAIT for REDIS_MIN_REPLICAS_ACK replicas, at most half of REDIS_TIMEOUT_MS (the link must not look silent). */
  private async replicated(link: RedisConnections['command']): Promise<void> {
    const required = this.config.redisMinReplicasAck;
    const timeout = Math.max(50, Math.floor(this.config.redisTimeoutMs / 2));
    const acknowledged = Number(await link.wait(required, timeout));
    if (acknowledged < required) throw new NotReplicatedError(acknowledged, required, timeout);
  }

  subscribe(channel: string, handler: PublicationHandler, options: SubscribeOptions): Subscription {
    let ordered = this.channels.get(channel);
    if (!ordered) {
      const created = new OrderedChannel(
        channel,
        channelKeys(this.prefix, channel, this.singles.has(channel)),
        options,
        this.metrics.busReceived.labels(channelKind(channel)),
        this.historyTtlMs(channel),
        this.context,
      );
      created.start(this.subscribeChannel(created));
      this.channels.set(channel, (ordered = created));
    }
    ordered.add(handler);
    const current = ordered;
    const unsubscribe = () => {
      if (!current.remove(handler) || this.channels.get(channel) !== current) return;
      current.close();
      this.channels.delete(channel);
      const keys = current.keys;
      (this.sharded(keys) ? this.redis.subscriber.sunsubscribe(keys.live) : this.redis.subscriber.unsubscribe(keys.live)).catch(() => undefined);
    };
    return Object.assign(unsubscribe, { ready: ordered.ready });
  }

  /**
   * SUBSCRIBE once the subscriber link is ready, retried until it succeeds (or the channel is left). Issued
   * while the link is still connecting, ioredis may send it before its own ready check, whose INFO is then
   * refused in subscriber mode and takes the SUBSCRIBE down with it: seen as a replica that never delivered
   * (0 of 250,000 alerts in one latency run).
   */
  private async subscribeChannel(channel: OrderedChannel): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (channel.isClosed || this.stopped) return;
      if (this.redis.subscriber.status === 'ready') {
        try {
          const keys = channel.keys;
          await (this.sharded(keys) ? this.redis.subscriber.ssubscribe(keys.live) : this.redis.subscriber.subscribe(keys.live));
          return;
        } catch (error) {
          if (attempt % 20 === 0) this.log.warn({ channel: channel.kind, err: (error as Error).message }, 'subscribe failed; retrying');
        }
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  async history(channel: string, since?: { id: string; epoch?: string }, limit = Infinity): Promise<HistoryPage> {
    try {
      let publications: Publication[] = [];
      if (since) {
        const { stream } = this.keys(channel);
        publications = await this.reader.readRange(stream, since.id, limit, (id, fields) => this.decoder.entry(channel, id, fields));
      }
      // Read after the entries: if something after `since` was trimmed meanwhile, it shows here.
      const position = await this.reader.position(this.keys(channel), this.historyTtlMs(channel));
      const top = formatStreamId(position.top);
      if (!since) return { epoch: position.epoch, publications, recovered: true, top };
      const key = parseStreamId(since.id)!;
      const recovered = (since.epoch === undefined || since.epoch === position.epoch) && compareStreamIds(key, position.top) <= 0 && complete(position, key);
      return { epoch: position.epoch, publications, recovered, top };
    } catch (error) {
      throw error instanceof BrokerUnavailableError ? error : new BrokerUnavailableError();
    }
  }

  /** 0: kept until trimmed. Otherwise every key of the channel carries this TTL (docs/namespaces.md `history.ttl_s`). */
  private historyTtlMs(channel: string): number {
    return this.namespaces.of(channel)?.historyTtlMs ?? 0;
  }

  /** Routes a pub/sub message to its channel: counted here, decoded by the EntryDecoder, ordered by the channel. */
  private receive(redisChannel: string, payload: Buffer): void {
    const channel = channelOf(this.prefix, redisChannel, this.singles);
    if (channel === undefined) return;
    const ordered = this.channels.get(channel);
    const kind = ordered?.kind ?? channelKind(channel);
    const message = this.decoder.message(payload, kind);
    if (message === undefined) return;
    this.metrics.busReceived.labels(kind).inc();
    if (!ordered) return;
    const notice = this.decoder.notice(channel, kind, message, payload, ordered.keepsHistory);
    if (notice === undefined) return;
    if (notice.type === 'live') ordered.deliver(notice.publication);
    else if (notice.type === 'sync') ordered.catchUp();
    else ordered.arrived(notice.publication, notice.prev);
  }
}
