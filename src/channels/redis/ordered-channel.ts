import type { Logger } from '../../logging/logger';
import type { RedisConnections } from '../../redis/redis-connections';
import type { PublicationHandler, SubscribeOptions } from '../broker';
import { newEpoch } from '../memory-broker';
import { channelKind, preciseNow, type Publication, type StreamPosition } from '../publication';
import { compareStreamIds, formatStreamId, parseStreamId, type StreamId } from '../stream-id';
import { RENEW_EPOCH } from './broker-scripts';
import type { ChannelKeys } from './channel-keys';
import type { EntryDecoder, StreamEntry } from './entry-decoder';
import { complete, RETRY_MS, type StreamReader, type TailedStream } from './stream-reader';

/** What every channel of one broker shares. */
export interface OrderingContext {
  readonly redis: RedisConnections;
  readonly reader: StreamReader;
  readonly decoder: EntryDecoder;
  readonly log: Logger;
  /** NODE_ID: the origin of this node's `lost` notices. */
  readonly nodeId: string;
  /** The broker stopped: nothing is retried any more. */
  stopped(): boolean;
}

/**
 * One channel this node subscribes to, and its handlers. A live-only channel hands every publication straight
 * to them. A history channel delivers each publication once, in id order: one that does not follow the last id
 * delivered here (`prev`) waits while the gap is read from the stream; after a link loss the stream is read
 * again from that id; a history that was lost, trimmed past it or rewound by a failover is announced to the
 * handlers as `lost` (with a new epoch where needed).
 */
export class OrderedChannel implements TailedStream {
  readonly kind: string;
  /** Its stream's key, for the blocking read (TailedStream). */
  readonly stream: string;
  private readonly handlers = new Set<PublicationHandler>();
  private started!: Promise<void>;
  /** History channels: the epoch and the last id delivered on this node (undefined until initialised). */
  private epoch?: string;
  private last?: StreamId;
  /** Arrivals held while the state is initialised or a gap is filled; replayed in order after. */
  private held: { publication: Publication; prev?: StreamId }[] = [];
  private filling = false;
  /** Another fill is due once the running one ends (a poke or a tail read came in meanwhile). */
  private refill = false;
  /**
   * False from a link loss until a fill has checked the epoch again: what a read returns after a reconnect may
   * be a new history (Redis restarted empty) whose ids merely follow the old ones, and must not be delivered
   * as a continuation (it would be delivered again after the epoch change is noticed).
   */
  private verified = true;
  private closed = false;

  constructor(
    readonly channel: string,
    /** Its Redis names, computed once (every publish, read and tail turn uses them). */
    readonly keys: ChannelKeys,
    private readonly options: SubscribeOptions,
    /** ws_bus_received_total{channel=<kind>}, looked up once (prom-client hashes labels on every call). */
    private readonly received: { inc(): void },
    /** Its namespace's history TTL, which POSITION gives a meta key it creates (0: none). */
    private readonly historyTtlMs: number,
    private readonly context: OrderingContext,
  ) {
    this.kind = channelKind(channel);
    this.stream = keys.stream;
  }

  /** Resolves once every publication from then on will reach the handlers. */
  get ready(): Promise<void> {
    return this.started;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether publications may carry ids (pub/sub notices of a live-only channel may not). */
  get keepsHistory(): boolean {
    return this.options.history;
  }

  /** Starts delivering once the pub/sub subscription took effect: a history channel first finds its stream's end. */
  start(subscribed: Promise<void>): void {
    this.started = subscribed.then(() => (this.options.history ? this.initialise() : undefined));
  }

  add(handler: PublicationHandler): void {
    this.handlers.add(handler);
  }

  /** Removes a handler; true when none is left. */
  remove(handler: PublicationHandler): boolean {
    this.handlers.delete(handler);
    return this.handlers.size === 0;
  }

  /** The node left the channel: running reads and retries end. */
  close(): void {
    this.closed = true;
  }

  /** The epoch and the last id delivered here, once known. */
  knownPosition(): StreamPosition | undefined {
    if (this.epoch === undefined || this.last === undefined) return undefined;
    return { id: formatStreamId(this.last), epoch: this.epoch };
  }

  /** After a reconnect, or when a service asks (`sync`): read what the stream got meanwhile. */
  catchUp(): void {
    if (this.options.history) void this.fill();
  }

  /** A link was lost: what is read next must be checked against the epoch first (`verified`). */
  linkLost(): void {
    if (this.options.history) this.verified = false;
  }

  /** A live publication: straight to the handlers. */
  deliver(publication: Publication): void {
    this.dispatch(publication);
  }

  /** A history publication's pub/sub notice. */
  arrived(publication: Publication, prev: StreamId): void {
    if (publication.epoch !== this.epoch && this.last !== undefined && !this.filling) {
      // The history was lost (Redis restarted empty, the stream deleted): read the new one from its start.
      this.held.push({ publication, prev });
      void this.fill();
      return;
    }
    this.accept(publication, prev);
  }

  /** The blocking read follows only channels other services append to, once the last id is known. */
  tailFrom(): string | undefined {
    if (!this.options.externalAppends || this.last === undefined) return undefined;
    return `${this.last.ms}-${this.last.seq}`;
  }

  /** What the blocking read found after tailFrom()'s id. */
  tailed(entries: StreamEntry[]): void {
    if (this.closed) return;
    // Entries directly follow the id the read started from; if the state moved meanwhile (or is busy),
    // the ones it already has are skipped by id, and a busy state reads again after.
    if (this.filling) this.refill = true;
    else if (!this.verified) void this.fill();
    else this.deliverEntries(entries);
  }

  /** First subscriber of a history channel on this node: start from the channel's current end. */
  private async initialise(): Promise<void> {
    for (;;) {
      try {
        const { epoch, top } = await this.context.reader.position(this.keys, this.historyTtlMs);
        this.epoch = epoch;
        // What was published after SUBSCRIBE took effect and before POSITION read the end came on pub/sub and
        // waits in `held`: start before the first of it, so it is delivered rather than taken for history from
        // before this node's time (a member that joined meanwhile is owed it).
        const first = this.held.find((h) => h.prev !== undefined && h.publication.epoch === epoch);
        this.last = first && compareStreamIds(first.prev!, top) < 0 ? first.prev : top;
        break;
      } catch {
        if (this.closed || this.context.stopped()) return;
        // Redis is down: the subscriber's reconnect fills; retry the position after a short wait.
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    this.release();
  }

  /** Replays what arrived while the state was busy, through the same checks. */
  private release(): void {
    const held = this.held;
    this.held = [];
    for (const { publication, prev } of held) this.accept(publication, prev);
    if (this.refill) {
      this.refill = false;
      void this.fill();
    }
  }

  /** A history publication: delivered if it follows the last one delivered here, read from the stream if not. */
  private accept(publication: Publication, prev: StreamId | undefined): void {
    if (this.last === undefined || this.filling || !this.verified) {
      this.held.push({ publication, prev });
      if (!this.verified) void this.fill();
      return;
    }
    if (compareStreamIds(publication.key!, this.last) <= 0) return; // already delivered
    if (prev !== undefined && compareStreamIds(prev, this.last) !== 0) {
      this.held.push({ publication, prev });
      void this.fill();
      return;
    }
    this.last = publication.key;
    this.dispatch(publication);
  }

  /** Reads the stream from the last delivered id to its end, delivering in order; then what was held. */
  private async fill(): Promise<void> {
    if (this.filling || this.last === undefined) {
      this.refill = true;
      return;
    }
    const { redis, reader, log } = this.context;
    this.filling = true;
    try {
      const position = await reader.position(this.keys, this.historyTtlMs);
      const epoch = position.epoch;
      this.verified = true;
      if (epoch !== this.epoch) {
        log.warn({ event: 'history_lost', channel: this.kind, last: formatStreamId(this.last!) }, 'channel history was lost (epoch changed); subscribers are told');
        this.epoch = epoch;
        this.last = { ms: 0, seq: 0 };
        this.lost();
      } else if (!complete(position, this.last!)) {
        // Trimmed before this node read them (more than HISTORY_SIZE while it was away).
        log.warn(
          { event: 'history_trimmed', channel: this.kind, last: formatStreamId(this.last!), first: position.first && formatStreamId(position.first) },
          'publications were trimmed before this node could read them; subscribers are told',
        );
        this.lost();
      } else if (await this.rewound()) {
        // The stream no longer holds what this node delivered last: a failover promoted a replica that had not
        // received the newest entries (replication is asynchronous). Their ids stay in clients' hands, and new
        // entries get later ids, so nothing would show the gap: a new epoch makes every resume across it say
        // recovered:false, here and on every node.
        const renewed = (await RENEW_EPOCH.run(redis.command, [this.keys.meta], [this.epoch!, newEpoch()])) as string;
        log.warn(
          { event: 'history_rewound', channel: this.kind, last: formatStreamId(this.last!), top: formatStreamId(position.top) },
          'channel history lost entries this node had delivered (Redis failover); new epoch, subscribers are told',
        );
        this.epoch = renewed;
        this.last = position.top;
        this.lost();
      }
      await reader.readToEnd(
        this.keys.stream,
        () => this.last!,
        (page) => {
          this.deliverEntries(page);
          return !this.closed;
        },
      );
      this.filling = false;
      this.release();
    } catch {
      // Redis is down again (or only this link): held publications wait; try again shortly, and the next
      // reconnect fills too.
      this.filling = false;
      // Retry if the link is back, or if a fill was asked for meanwhile (the reconnect's own fill, which found
      // this one in flight and left it the work): dropping that request left the channel unread until the next
      // publication, and a rewound or lost history unannounced.
      const again = this.refill || redis.isCommandReady();
      this.refill = false;
      if (!this.context.stopped() && !this.closed && again) setTimeout(() => void this.fill(), RETRY_MS).unref();
    }
  }

  /** Whether the last id this node delivered is missing from a stream that was not trimmed past it. */
  private async rewound(): Promise<boolean> {
    const last = this.last!;
    if (last.ms === 0 && last.seq === 0) return false;
    return !(await this.context.reader.holds(this.keys.stream, formatStreamId(last)));
  }

  private deliverEntries(entries: StreamEntry[]): void {
    for (const [id, fields] of entries) {
      const key = parseStreamId(id);
      if (!key || compareStreamIds(key, this.last!) <= 0) continue;
      const prev = formatStreamId(this.last!);
      this.last = key;
      this.received.inc();
      const publication = this.context.decoder.entry(this.channel, id, fields, this.epoch, prev);
      if (publication) this.dispatch(publication);
    }
  }

  private dispatch(publication: Publication): void {
    for (const handler of this.handlers) {
      try {
        handler(publication);
      } catch (error) {
        this.context.log.error({ err: error, channel: this.kind }, 'channel handler failed');
      }
    }
  }

  /** Subscribers may have missed publications that no longer exist: their handlers hear it as `lost`. */
  private lost(): void {
    this.dispatch({ channel: this.channel, ts: preciseNow(), origin: this.context.nodeId, data: {}, lost: true });
  }
}
