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
import { jsonDepthExceeds, MESSAGE_LIMITS, MessageLimits } from '../message-limits';
import { channelKind, EXTERNAL_ORIGIN, isObject, preciseNow, type HistoryPage, type Publication, type StreamPosition } from '../publication';
import { compareStreamIds, formatStreamId, parseStreamId, type StreamId } from '../stream-id';
import { POSITION, PUBLISH_HISTORY, PUBLISH_LIVE, RENEW_EPOCH } from './broker-scripts';
import { channelKeys, channelOf, type ChannelKeys } from './channel-keys';
import { NamespaceRegistry } from '../namespaces';

/** Entries per XRANGE / XREAD round trip: catching up after an outage goes page by page. */
const PAGE = 500;
/** Pause before a failed stream read is tried again. */
const RETRY_MS = 250;
/** A gateway envelope adds its own fields around the payload. */
const ENVELOPE_BYTES = 512;

type StreamEntry = [id: string, fields: string[]];

interface ChannelState {
  /** Its Redis names, computed once (every publish, read and tail turn uses them). */
  keys: ChannelKeys;
  readonly channel: string;
  readonly kind: string;
  readonly handlers: Set<PublicationHandler>;
  readonly options: SubscribeOptions;
  /** ws_bus_received_total{channel=<kind>}, looked up once (prom-client hashes labels on every call). */
  readonly received: { inc(): void };
  readonly ready: Promise<void>;
  /** History channels: the epoch and the last id delivered on this node (undefined until initialised). */
  epoch?: string;
  last?: StreamId;
  /** Arrivals held while the state is initialised or a gap is filled; replayed in order after. */
  held: { publication: Publication; prev?: StreamId }[];
  filling: boolean;
  /** Another fill is due once the running one ends (a poke or a tail read came in meanwhile). */
  refill: boolean;
  /**
   * False from a link loss until a fill has checked the epoch again: what a read returns after a reconnect may
   * be a new history (Redis restarted empty) whose ids merely follow the old ones, and must not be delivered
   * as a continuation (it would be delivered again after the epoch change is noticed).
   */
  verified: boolean;
  closed: boolean;
}

/** What POSITION says about a channel's stream. */
interface Position {
  epoch: string;
  /** The newest id ever added (`0-0` for none). */
  top: StreamId;
  /** The oldest id still present. */
  first?: StreamId;
  /** Whether any entry was ever trimmed or deleted. */
  removed: boolean;
  maxDeleted: StreamId;
}

/**
 * Whether every entry after `after` is still in the stream. Conservative: once anything was trimmed, only an
 * `after` at or past the oldest entry left is proven (the trimmed one just before it cannot be named).
 */
function complete(position: Position, after: StreamId): boolean {
  if (compareStreamIds(position.maxDeleted, after) > 0) return false;
  if (!position.removed) return true;
  return position.first === undefined ? compareStreamIds(after, position.top) >= 0 : compareStreamIds(after, position.first) >= 0;
}

/** An entry's payload: the gateway's `p` field, or another service's fields (each a JSON value). */
function entryPayload(fields: string[], limits: MessageLimits): { ok: true; data: Record<string, unknown>; ts?: number; origin?: string } | { ok: false; reason: string } {
  let p: string | undefined;
  let ts: number | undefined;
  let origin: string | undefined;
  const other: [string, string][] = [];
  let bytes = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (name === 'p') p = value;
    else if (name === 'ts') ts = Number(value);
    else if (name === 'o') origin = value;
    else {
      // Only the payload counts, in bytes: the gateway's own `ts` and `o` fields are not the message.
      other.push([name, value]);
      bytes += Buffer.byteLength(value);
    }
  }
  if (bytes > limits.maxBytes) return { ok: false, reason: `larger than ${limits.maxBytes} bytes (MAX_PUBLISH_BYTES)` };
  const when = ts !== undefined && Number.isFinite(ts) && ts > 0 ? ts : undefined;
  if (p !== undefined) {
    const verdict = limits.parseObject(p);
    return verdict.ok ? { ok: true, data: verdict.value, ts: when, origin } : { ok: false, reason: verdict.reason };
  }
  if (other.length === 0) return { ok: false, reason: 'no "data" field' };
  const data: Record<string, unknown> = {};
  for (const [name, value] of other) {
    if (jsonDepthExceeds(value, limits.maxDepth - 1)) return { ok: false, reason: `"${name}" nested deeper than ${limits.maxDepth} levels (MAX_JSON_DEPTH)` };
    try {
      data[name] = JSON.parse(value);
    } catch {
      return { ok: false, reason: `"${name}" is not JSON` };
    }
  }
  return { ok: true, data, ts: when, origin: EXTERNAL_ORIGIN };
}

/**
 * Cluster mode's broker over one Redis. Live-only channels are plain pub/sub. A history channel is a stream
 * plus pub/sub: a Lua script appends and publishes in one step, and each publication names the id before it
 * (`prev`), so a node that missed one (a cut or frozen link, a service's own XADD) notices at the next one
 * and reads the gap from the stream; after every reconnect it also reads each subscribed channel from the last
 * id it delivered. Channels other services append to directly (`alerts`) are also read with a blocking XREAD,
 * which the same last-id bookkeeping merges without duplicates.
 */
@Injectable()
export class RedisBroker implements Broker, OnApplicationBootstrap, OnModuleDestroy {
  readonly mode = 'cluster' as const;
  private readonly states = new Map<string, ChannelState>();
  private readonly invalid: InvalidMessages;
  private readonly prefix: string;
  private stopped = false;
  private tailing = false;
  private lastTailErrorLog = 0;

  /** Each channel's history size and TTL (its namespace's, so both modes keep the same retention). */
  private readonly namespaces: NamespaceRegistry;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly metrics: Metrics,
    @Inject(MESSAGE_LIMITS) private readonly limits: MessageLimits,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.prefix = config.redisPrefix;
    this.namespaces = new NamespaceRegistry(config);
    this.invalid = new InvalidMessages(metrics, log);
    redis.subscriber.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
    // Shard channels (Redis Cluster).
    redis.subscriber.on('smessageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
    // After every reconnect (of the subscriber, once resubscribed, and of the whole set): read what each
    // history channel got while this node was away. A fill that finds nothing costs one round trip.
    const fillAll = () => {
      for (const state of this.states.values()) if (state.options.history) void this.fill(state);
    };
    redis.onSubscriberReady(fillAll);
    redis.onReady(fillAll);
    redis.onDown(() => {
      for (const state of this.states.values()) if (state.options.history) state.verified = false;
    });
  }

  onApplicationBootstrap(): void {
    void this.tail();
  }

  onModuleDestroy(): void {
    this.stopped = true;
  }

  isReady(): boolean {
    return this.redis.isReady();
  }

  knownPosition(channel: string): StreamPosition | undefined {
    const state = this.states.get(channel);
    if (state?.epoch === undefined || state.last === undefined) return undefined;
    return { id: formatStreamId(state.last), epoch: state.epoch };
  }

  private keys(channel: string): ChannelKeys {
    return this.states.get(channel)?.keys ?? channelKeys(this.prefix, channel);
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
    let state = this.states.get(channel);
    if (!state) {
      const created: ChannelState = {
        keys: channelKeys(this.prefix, channel),
        channel,
        kind: channelKind(channel),
        received: this.metrics.busReceived.labels(channelKind(channel)),
        handlers: new Set(),
        options,
        ready: undefined as unknown as Promise<void>,
        held: [],
        filling: false,
        refill: false,
        verified: true,
        closed: false,
      };
      (created as { ready: Promise<void> }).ready = this.subscribeChannel(created).then(() => (options.history ? this.initialise(created) : undefined));
      this.states.set(channel, (state = created));
    }
    state.handlers.add(handler);
    const current = state;
    const unsubscribe = () => {
      current.handlers.delete(handler);
      if (current.handlers.size > 0 || this.states.get(channel) !== current) return;
      current.closed = true;
      this.states.delete(channel);
      const keys = current.keys;
      (this.sharded(keys) ? this.redis.subscriber.sunsubscribe(keys.live) : this.redis.subscriber.unsubscribe(keys.live)).catch(() => undefined);
    };
    return Object.assign(unsubscribe, { ready: state.ready });
  }

  /**
   * SUBSCRIBE once the subscriber link is ready, retried until it succeeds (or the channel is left). Issued
   * while the link is still connecting, ioredis may send it before its own ready check, whose INFO is then
   * refused in subscriber mode and takes the SUBSCRIBE down with it: seen as a replica that never delivered
   * (0 of 250,000 alerts in one latency run).
   */
  private async subscribeChannel(state: ChannelState): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (state.closed || this.stopped) return;
      if (this.redis.subscriber.status === 'ready') {
        try {
          const keys = state.keys;
          await (this.sharded(keys) ? this.redis.subscriber.ssubscribe(keys.live) : this.redis.subscriber.subscribe(keys.live));
          return;
        } catch (error) {
          if (attempt % 20 === 0) this.log.warn({ channel: state.kind, err: (error as Error).message }, 'subscribe failed; retrying');
        }
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  async history(channel: string, since?: { id: string; epoch?: string }, limit = Infinity): Promise<HistoryPage> {
    try {
      const publications: Publication[] = [];
      if (since) {
        let from = `(${since.id}`;
        const { stream } = this.keys(channel);
        while (publications.length < limit) {
          const page = (await this.redis.command.xrange(stream, from, '+', 'COUNT', Math.min(PAGE, limit - publications.length))) as StreamEntry[];
          for (const [id, fields] of page) {
            const publication = this.decodeEntry(channel, id, fields);
            if (publication) publications.push(publication);
          }
          if (page.length < PAGE) break;
          from = `(${page[page.length - 1][0]}`;
        }
      }
      // Read after the entries: if something after `since` was trimmed meanwhile, it shows here.
      const position = await this.position(channel);
      const top = formatStreamId(position.top);
      if (!since) return { epoch: position.epoch, publications, recovered: true, top };
      const key = parseStreamId(since.id)!;
      const recovered = (since.epoch === undefined || since.epoch === position.epoch) && compareStreamIds(key, position.top) <= 0 && complete(position, key);
      return { epoch: position.epoch, publications, recovered, top };
    } catch (error) {
      throw error instanceof BrokerUnavailableError ? error : new BrokerUnavailableError();
    }
  }

  /** 0: kept until trimmed. Otherwise every key of the channel carries this TTL (SPEC v3 `history.ttl_s`). */
  private historyTtlMs(channel: string): number {
    return this.namespaces.of(channel)?.historyTtlMs ?? 0;
  }

  private async position(channel: string): Promise<Position> {
    const { stream, meta } = this.keys(channel);
    const [epoch, top, first, removed, maxDeleted] = (await POSITION.run(
      this.redis.command,
      [stream, meta],
      [newEpoch(), this.historyTtlMs(channel)],
    )) as [string, string, string, number, string];
    return { epoch, top: parseStreamId(top)!, first: first ? parseStreamId(first) : undefined, removed: removed === 1, maxDeleted: parseStreamId(maxDeleted)! };
  }

  /** First subscriber of a history channel on this node: start from the channel's current end. */
  private async initialise(state: ChannelState): Promise<void> {
    for (;;) {
      try {
        const { epoch, top } = await this.position(state.channel);
        state.epoch = epoch;
        // What was published after SUBSCRIBE took effect and before POSITION read the end came on pub/sub and
        // waits in `held`: start before the first of it, so it is delivered rather than taken for history from
        // before this node's time (a member that joined meanwhile is owed it).
        const first = state.held.find((h) => h.prev !== undefined && h.publication.epoch === epoch);
        state.last = first && compareStreamIds(first.prev!, top) < 0 ? first.prev : top;
        break;
      } catch {
        if (state.closed || this.stopped) return;
        // Redis is down: the subscriber's reconnect fills; retry the position after a short wait.
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    this.release(state);
  }

  /** Replays what arrived while the state was busy, through the same checks. */
  private release(state: ChannelState): void {
    const held = state.held;
    state.held = [];
    for (const { publication, prev } of held) this.accept(state, publication, prev);
    if (state.refill) {
      state.refill = false;
      void this.fill(state);
    }
  }

  private receive(redisChannel: string, payload: Buffer): void {
    const channel = channelOf(this.prefix, redisChannel);
    if (channel === undefined) return;
    const state = this.states.get(channel);
    const kind = state?.kind ?? channelKind(channel);
    const verdict = this.limits.parseObject(payload, this.limits.maxBytes + ENVELOPE_BYTES);
    if (!verdict.ok) return this.invalid.drop(kind, verdict.reason);
    const message = verdict.value;
    this.metrics.busReceived.labels(kind).inc();
    if (!state) return;
    if (message.v !== 1) {
      // Another service's PUBLISH: the whole object is the payload, live only.
      if (jsonDepthExceeds(payload, this.limits.maxDepth)) return this.invalid.drop(kind, `nested deeper than ${this.limits.maxDepth} levels (MAX_JSON_DEPTH)`);
      return this.dispatch(state, { channel, ts: preciseNow(), origin: EXTERNAL_ORIGIN, data: message });
    }
    if (message.sync === true) {
      // A service appended to the stream itself and asks the nodes to read it.
      if (state.options.history) void this.fill(state);
      return;
    }
    if (!isObject(message.data) || typeof message.ts !== 'number' || typeof message.o !== 'string') {
      return this.invalid.drop(kind, 'incomplete envelope');
    }
    if (typeof message.id !== 'string') return this.dispatch(state, { channel, ts: message.ts, origin: message.o, data: message.data });
    const key = parseStreamId(message.id);
    const prev = typeof message.prev === 'string' ? parseStreamId(message.prev) : undefined;
    if (!key || !prev || typeof message.epoch !== 'string' || !state.options.history) return this.invalid.drop(kind, 'incomplete envelope');
    const publication: Publication = { channel, id: message.id, key, epoch: message.epoch, prev: message.prev as string, ts: message.ts, origin: message.o, data: message.data };
    if (message.epoch !== state.epoch && state.last !== undefined && !state.filling) {
      // The history was lost (Redis restarted empty, the stream deleted): read the new one from its start.
      state.held.push({ publication, prev });
      void this.fill(state);
      return;
    }
    this.accept(state, publication, prev);
  }

  /** A history publication: delivered if it follows the last one delivered here, read from the stream if not. */
  private accept(state: ChannelState, publication: Publication, prev: StreamId | undefined): void {
    if (state.last === undefined || state.filling || !state.verified) {
      state.held.push({ publication, prev });
      if (!state.verified) void this.fill(state);
      return;
    }
    if (compareStreamIds(publication.key!, state.last) <= 0) return; // already delivered
    if (prev !== undefined && compareStreamIds(prev, state.last) !== 0) {
      state.held.push({ publication, prev });
      void this.fill(state);
      return;
    }
    state.last = publication.key;
    this.dispatch(state, publication);
  }

  /** Reads the stream from the last delivered id to its end, delivering in order; then what was held. */
  private async fill(state: ChannelState): Promise<void> {
    if (state.filling || state.last === undefined) {
      state.refill = true;
      return;
    }
    state.filling = true;
    try {
      const position = await this.position(state.channel);
      const epoch = position.epoch;
      state.verified = true;
      if (epoch !== state.epoch) {
        this.log.warn({ event: 'history_lost', channel: state.kind, last: formatStreamId(state.last!) }, 'channel history was lost (epoch changed); subscribers are told');
        state.epoch = epoch;
        state.last = { ms: 0, seq: 0 };
        this.lost(state);
      } else if (!complete(position, state.last!)) {
        // Trimmed before this node read them (more than HISTORY_SIZE while it was away).
        this.log.warn(
          { event: 'history_trimmed', channel: state.kind, last: formatStreamId(state.last!), first: position.first && formatStreamId(position.first) },
          'publications were trimmed before this node could read them; subscribers are told',
        );
        this.lost(state);
      } else if (await this.rewound(state)) {
        // The stream no longer holds what this node delivered last: a failover promoted a replica that had not
        // received the newest entries (replication is asynchronous). Their ids stay in clients' hands, and new
        // entries get later ids, so nothing would show the gap: a new epoch makes every resume across it say
        // recovered:false, here and on every node.
        const renewed = (await RENEW_EPOCH.run(this.redis.command, [state.keys.meta], [state.epoch!, newEpoch()])) as string;
        this.log.warn(
          { event: 'history_rewound', channel: state.kind, last: formatStreamId(state.last!), top: formatStreamId(position.top) },
          'channel history lost entries this node had delivered (Redis failover); new epoch, subscribers are told',
        );
        state.epoch = renewed;
        state.last = position.top;
        this.lost(state);
      }
      const key = state.keys.stream;
      for (;;) {
        const page = (await this.redis.command.xrange(key, `(${state.last!.ms}-${state.last!.seq}`, '+', 'COUNT', PAGE)) as StreamEntry[];
        this.deliverEntries(state, page);
        if (page.length < PAGE || state.closed) break;
      }
      state.filling = false;
      this.release(state);
    } catch {
      // Redis is down again (or only this link): held publications wait; try again shortly, and the next
      // reconnect fills too.
      state.filling = false;
      // Retry if the link is back, or if a fill was asked for meanwhile (the reconnect's own fill, which found
      // this one in flight and left it the work): dropping that request left the channel unread until the next
      // publication, and a rewound or lost history unannounced.
      const again = state.refill || this.redis.isCommandReady();
      state.refill = false;
      if (!this.stopped && !state.closed && again) setTimeout(() => void this.fill(state), RETRY_MS).unref();
    }
  }

  /** Whether the last id this node delivered is missing from a stream that was not trimmed past it. */
  private async rewound(state: ChannelState): Promise<boolean> {
    const last = state.last!;
    if (last.ms === 0 && last.seq === 0) return false;
    const id = formatStreamId(last);
    const found = (await this.redis.command.xrange(state.keys.stream, id, id, 'COUNT', 1)) as StreamEntry[];
    return found.length === 0;
  }

  private deliverEntries(state: ChannelState, entries: StreamEntry[]): void {
    for (const [id, fields] of entries) {
      const key = parseStreamId(id);
      if (!key || compareStreamIds(key, state.last!) <= 0) continue;
      const prev = formatStreamId(state.last!);
      state.last = key;
      state.received.inc();
      const publication = this.decodeEntry(state.channel, id, fields, state.epoch, prev);
      if (publication) this.dispatch(state, publication);
    }
  }

  private decodeEntry(channel: string, id: string, fields: string[], epoch?: string, prev?: string): Publication | undefined {
    const key = parseStreamId(id);
    const payload = entryPayload(fields, this.limits);
    if (!payload.ok || !key) {
      // Skipped and counted, wherever it is read (live, or in a client's replay); never closes a client.
      this.invalid.drop(channelKind(channel), payload.ok ? `bad id ${id}` : payload.reason);
      return undefined;
    }
    return { channel, id, key, epoch, prev, ts: payload.ts ?? key.ms, origin: payload.origin ?? EXTERNAL_ORIGIN, data: payload.data };
  }

  private dispatch(state: ChannelState, publication: Publication): void {
    for (const handler of state.handlers) {
      try {
        handler(publication);
      } catch (error) {
        this.log.error({ err: error, channel: state.kind }, 'channel handler failed');
      }
    }
  }

  /** Subscribers may have missed publications that no longer exist: their handlers hear it as `lost`. */
  private lost(state: ChannelState): void {
    this.dispatch(state, { channel: state.channel, ts: preciseNow(), origin: this.config.nodeId, data: {}, lost: true });
  }

  /**
   * Channels other services XADD to directly: one blocking XREAD over them from this node's last ids, on its
   * own connection. It stops when the node stops; a failed or timed-out read is retried from the same ids.
   */
  private async tail(): Promise<void> {
    if (this.tailing) return;
    this.tailing = true;
    while (!this.stopped) {
      const tailed = [...this.states.values()].filter((s) => s.options.externalAppends && s.last !== undefined);
      if (tailed.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      try {
        const keys = tailed.map((s) => s.keys.stream);
        const ids = tailed.map((s) => `${s.last!.ms}-${s.last!.seq}`);
        const reply = (await this.redis.blocking.xread('COUNT', PAGE, 'BLOCK', this.redis.blockMs, 'STREAMS', ...keys, ...ids)) as
          | [string, StreamEntry[]][]
          | null;
        if (!reply) continue;
        // A blocking read wakes on the first entry of a burst, and the rest lands a moment later: read what is
        // already there, without blocking, and deliver both together, so the burst reaches each socket in one
        // write (bursts of 8 from one publisher, cluster mode: 0.63x -> 0.92x embedded, docs/benchmarks.md).
        const after = ids.slice();
        for (const [key, entries] of reply) if (entries.length) after[keys.indexOf(key)] = entries[entries.length - 1][0];
        const more = (await this.redis.blocking.xread('COUNT', PAGE, 'STREAMS', ...keys, ...after)) as [string, StreamEntry[]][] | null;
        for (const [key, entries] of more ?? []) {
          const got = reply.find(([k]) => k === key);
          if (got) got[1].push(...entries);
          else reply.push([key, entries]);
        }
        for (const [key, entries] of reply) {
          const state = tailed[keys.indexOf(key)];
          if (!state || state.closed) continue;
          // Entries directly follow the id the read started from; if the state moved meanwhile (or is busy),
          // the ones it already has are skipped by id, and a busy state reads again after.
          if (state.filling) state.refill = true;
          else if (!state.verified) void this.fill(state);
          else this.deliverEntries(state, entries);
        }
      } catch (error) {
        if (this.stopped) return;
        this.redis.silentBlocking(error as Error);
        const now = Date.now();
        if (now - this.lastTailErrorLog > 5000) {
          this.lastTailErrorLog = now;
          this.log.warn({ event: 'stream_tail_error', err: (error as Error).message }, 'stream read failed; retrying from the last id');
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }
}

