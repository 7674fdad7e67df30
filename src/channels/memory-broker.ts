import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import {
  IDEMPOTENCY_TTL_MS,
  type Broker,
  type PublicationHandler,
  type PublishOptions,
  type Subscription,
} from './broker';
import { NamespaceRegistry } from './namespaces';
import { IdempotencyCache } from './idempotency';
import { MemoryHistory } from './memory-history';
import { channelKind, preciseNow, type HistoryPage, type Publication, type StreamPosition } from './publication';
import { formatStreamId, StreamIdGenerator } from './stream-id';

/** Every subscription here is live at once: one resolved promise for all of them. */
const SETTLED = { ready: Promise.resolve(), settled: true } as const;

/** How often idle histories are looked at for expiry. */
const SWEEP_MS = 60_000;

/** Random per process, so an epoch drawn here differs from any drawn by another process or an earlier run. */
const EPOCH_PREFIX = randomBytes(6).toString('hex');
let epochs = 0;

/**
 * A fresh epoch: the process's random prefix and a counter. Cheap, because the Redis publish script takes a
 * candidate on every call (used only when the channel has none); randomBytes per call cost ~7 µs per publish.
 */
export function newEpoch(): string {
  return `${EPOCH_PREFIX}${(epochs++).toString(36)}`;
}

/**
 * Embedded mode's broker: one process is the deployment. Delivery runs in a microtask so a publisher never
 * runs subscriber code inline. Each history channel is a ring of HISTORY_SIZE with an epoch drawn at
 * creation, so a restarted process (which lost everything) never claims continuity. A history nobody
 * subscribes to and nobody wrote for its namespace's TTL is dropped (its epoch with it): rooms a client invents
 * cannot grow memory without bound.
 */
@Injectable()
export class MemoryBroker implements Broker, OnModuleDestroy {
  readonly mode = 'embedded' as const;
  /** One handler (a node's hub: the common case) held directly; a Set of one per channel cost ~200 bytes each. */
  private readonly handlers = new Map<string, PublicationHandler | Set<PublicationHandler>>();
  private readonly histories = new Map<string, MemoryHistory>();
  private readonly ids = new StreamIdGenerator();
  private readonly idempotency = new IdempotencyCache<Publication>(IDEMPOTENCY_TTL_MS);
  private readonly sweeper: NodeJS.Timeout;
  /** Each channel's history size and TTL: its namespace's (HISTORY_SIZE and no TTL for a channel of none). */
  private readonly namespaces: NamespaceRegistry;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.namespaces = new NamespaceRegistry(config);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  async publish(channel: string, data: Record<string, unknown>, options: PublishOptions): Promise<Publication> {
    // Per channel, as in cluster mode (the key lives beside the channel's stream there): the same key on two
    // channels is two publications.
    const key = options.idempotencyKey === undefined ? undefined : `${channel}\u0000${options.idempotencyKey}`;
    if (key !== undefined) {
      const first = this.idempotency.get(key);
      if (first) return first;
    }
    const now = Date.now();
    let publication: Publication;
    if (options.history) {
      const id = this.ids.next(now);
      const history = this.historyOf(channel);
      const { id: prev, epoch } = history.position();
      publication = { channel, id: formatStreamId(id), key: id, epoch, prev, ts: preciseNow(), origin: this.config.nodeId, data };
      history.append(publication, now);
    } else {
      publication = { channel, ts: preciseNow(), origin: this.config.nodeId, data };
    }
    if (key !== undefined) this.idempotency.set(key, publication);
    const kind = channelKind(channel);
    this.metrics.busPublished.labels(kind).inc();
    queueMicrotask(() => {
      const handlers = this.handlers.get(channel);
      if (!handlers) return;
      this.metrics.busReceived.labels(kind).inc();
      if (typeof handlers === 'function') return this.run(handlers, publication, kind);
      for (const handler of handlers) this.run(handler, publication, kind);
    });
    return publication;
  }

  private run(handler: PublicationHandler, publication: Publication, kind: string): void {
    try {
      handler(publication);
    } catch (error) {
      this.log.error({ err: error, channel: kind }, 'channel handler failed');
    }
  }

  subscribe(channel: string, handler: PublicationHandler): Subscription {
    const held = this.handlers.get(channel);
    if (held === undefined) this.handlers.set(channel, handler);
    else if (typeof held !== 'function') held.add(handler);
    else if (held !== handler) this.handlers.set(channel, new Set([held, handler]));
    const unsubscribe = () => this.unsubscribe(channel, handler);
    return Object.assign(unsubscribe, SETTLED);
  }

  private unsubscribe(channel: string, handler: PublicationHandler): void {
    const held = this.handlers.get(channel);
    if (held === handler) this.handlers.delete(channel);
    else if (held !== undefined && typeof held !== 'function' && held.delete(handler) && held.size === 0) this.handlers.delete(channel);
  }

  async history(channel: string, since?: { id: string; epoch?: string }, limit?: number): Promise<HistoryPage> {
    return this.historyOf(channel).since(since, limit);
  }

  knownPosition(channel: string): StreamPosition {
    return this.historyOf(channel).position();
  }

  isReady(): boolean {
    return true;
  }

  /**
   * The channel's history, renewed (new epoch, nothing kept) once nobody published to it for its namespace's TTL,
   * checked on every use as Redis expires keys: a late resume is told recovered:false, never served what the TTL
   * should have removed. Holders are told at once (a `lost` notice positioned at the new, empty history).
   */
  private historyOf(channel: string, now = Date.now()): MemoryHistory {
    let history = this.histories.get(channel);
    if (history && history.size > 0 && this.expired(channel, history, now)) {
      history = new MemoryHistory(newEpoch(), this.sizeOf(channel), now);
      this.histories.set(channel, history);
      const handlers = this.handlers.get(channel);
      if (handlers) {
        const { id, epoch } = history.position();
        const notice: Publication = { channel, lost: true, epoch, prev: id, ts: preciseNow(), origin: this.config.nodeId, data: {} };
        queueMicrotask(() => {
          if (typeof handlers === 'function') handlers(notice);
          else for (const handler of handlers) handler(notice);
        });
      }
    }
    if (!history) {
      history = new MemoryHistory(newEpoch(), this.sizeOf(channel), now);
      this.histories.set(channel, history);
    }
    return history;
  }

  private sizeOf(channel: string): number {
    return this.namespaces.of(channel)?.historySize || this.config.historySize;
  }

  private expired(channel: string, history: MemoryHistory, now: number): boolean {
    const ttl = this.namespaces.of(channel)?.historyTtlMs ?? 0;
    return ttl > 0 && history.lastAppendAt < now - ttl;
  }

  /** Memory: an expired history nobody holds is dropped without waiting for its next use. */
  private sweep(): void {
    const now = Date.now();
    for (const [channel, history] of this.histories) {
      if (this.expired(channel, history, now) && !this.handlers.has(channel)) this.histories.delete(channel);
    }
  }
}
