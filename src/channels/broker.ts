import type { HistoryPage, Publication, StreamPosition } from './publication';

export interface PublishOptions {
  /** Keep it in the channel's history (gives it an id); live-only otherwise. */
  history: boolean;
  /**
   * Retries with the same key within IDEMPOTENCY_TTL_MS return the first publication and publish nothing new
   * (cluster-wide in cluster mode).
   */
  idempotencyKey?: string;
  /** The channel's stream is also appended to by other services (SubscribeOptions.externalAppends). */
  externalAppends?: boolean;
  /** History: drop it when nobody wrote to it for this long (0: keep; absent: its namespace's TTL). */
  historyTtlMs?: number;
}

export interface SubscribeOptions {
  /** The channel keeps history: the broker delivers its publications in id order, each once per node. */
  history: boolean;
  /**
   * Other services append to this channel's stream directly (`XADD rt:alerts:stream`), without a notice on
   * pub/sub: the broker reads the stream itself.
   */
  externalAppends?: boolean;
}

export type PublicationHandler = (publication: Publication) => void;

/**
 * Call it to unsubscribe; `ready` resolves once every publication from then on will reach the handler. `settled`
 * (embedded mode: nothing to wait for) says so at once, so a first subscriber skips a promise turn and the
 * per-connection state of waiting for it.
 */
export type Subscription = (() => void) & { ready: Promise<void>; settled?: true };

/** Retries of a publish with the same Idempotency-Key within this window publish nothing new (docs/server-api.md: 5 min). */
export const IDEMPOTENCY_TTL_MS = 5 * 60_000;

/**
 * The one channel layer of every feature (after centrifuge's Broker: Publish / Subscribe / History with
 * positions of id and epoch). Embedded mode: in-process. Cluster mode: Redis, where history lives in streams
 * and fan-out goes over pub/sub, and each node subscribes to a channel only while it has a local subscriber.
 *
 * The per-node promise every implementation keeps: a subscriber of a history channel receives its
 * publications in id order, each exactly once, including those published while this node's link to the
 * broker was cut or frozen (caught up when it comes back); when that history is lost, the epoch changes.
 */
export interface Broker {
  readonly mode: 'embedded' | 'cluster';
  /** Resolves once the publication is stored (history) or handed to the transport; rejects while it is down. */
  publish(channel: string, data: Record<string, unknown>, options: PublishOptions): Promise<Publication>;
  subscribe(channel: string, handler: PublicationHandler, options: SubscribeOptions): Subscription;
  /**
   * The channel's epoch and, with `since`, the publications after it still in history (at most `limit`,
   * default all) with the `recovered` verdict. Rejects while the broker is down.
   */
  history(channel: string, since?: { id: string; epoch?: string }, limit?: number): Promise<HistoryPage>;
  /**
   * For a history channel this node subscribes to, once known (no round trip): its epoch, and the id after
   * which every publication will reach this node's handlers (the last one delivered here).
   */
  knownPosition(channel: string): StreamPosition | undefined;
  /** False while the transport is unreachable or silent (drives /readyz and ws_redis_up). */
  isReady(): boolean;
}

export const BROKER = Symbol('BROKER');

/** Thrown when the broker is unreachable; callers answer 503 / `unavailable`, never queue. */
export class BrokerUnavailableError extends Error {
  constructor(detail = 'Redis is unreachable') {
    super(detail);
  }
}

/**
 * REDIS_MIN_REPLICAS_ACK: the message is on the master (and may have been delivered) but fewer replicas than
 * required confirmed it in time, so a failover could still lose it. The publisher is told to retry with the same
 * Idempotency-Key, which publishes nothing new.
 */
export class NotReplicatedError extends BrokerUnavailableError {
  constructor(
    readonly acknowledged: number,
    readonly required: number,
    readonly waitedMs: number,
  ) {
    super(`stored on the Redis master but confirmed by ${acknowledged} of the ${required} replicas REDIS_MIN_REPLICAS_ACK requires within ${waitedMs} ms`);
  }
}
