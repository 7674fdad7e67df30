import { formatStreamId, type StreamIdGenerator } from './stream-id';

/**
 * What travels on the bus: the payload plus what every receiver needs to order, deduplicate and time it.
 * The Redis implementation serialises exactly this object once per publish.
 */
export interface BusEnvelope<T = unknown> {
  /** Unique per message (`<ms>-<seq>` from the publishing node). */
  id: string;
  /** Logical channel, e.g. `alerts` or `chat:lobby`; Redis adds REDIS_PREFIX (`rt:chat:lobby`). */
  channel: string;
  /** NODE_ID of the publisher (lets a node skip its own echo where it already delivered locally). */
  origin: string;
  /** Publish time in ms since the epoch, sub-millisecond precision, for ws_delivery_seconds. */
  ts: number;
  data: T;
}

export type BusHandler<T = unknown> = (envelope: BusEnvelope<T>) => void;

/** Call it to unsubscribe; `ready` resolves once messages published from now on will arrive. */
export type Subscription = (() => void) & { ready: Promise<void> };

/**
 * Fan-out between the nodes of a deployment. Embedded mode: in-process. Cluster mode: Redis pub/sub, with
 * each node subscribed to a channel only while it has a local listener for it.
 */
export interface MessageBus {
  readonly mode: 'embedded' | 'cluster';
  /** Resolves once the message is handed to the transport; rejects when the transport is down. */
  publish<T>(channel: string, data: T): Promise<BusEnvelope<T>>;
  /** The first handler of a channel subscribes it, the last one to unsubscribe leaves it. */
  subscribe<T>(channel: string, handler: BusHandler<T>): Subscription;
  /** False while the transport is unreachable (drives /readyz). */
  isReady(): boolean;
}

export const MESSAGE_BUS = Symbol('MESSAGE_BUS');

/** Bounded metric label for a channel: its kind (`chat:lobby` → `chat`), never the room. */
export function channelKind(channel: string): string {
  const colon = channel.indexOf(':');
  return colon === -1 ? channel : channel.slice(0, colon);
}

/** The Redis channel or key for a logical name, under REDIS_PREFIX. */
export function prefixed(prefix: string, name: string): string {
  return `${prefix}:${name}`;
}

/** Wall-clock ms with sub-ms precision, comparable across processes on one host. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The envelope every bus implementation publishes: a fresh id from this node, its name, and the time. */
export function createEnvelope<T>(ids: StreamIdGenerator, origin: string, channel: string, data: T): BusEnvelope<T> {
  return { id: formatStreamId(ids.next()), channel, origin, ts: preciseNow(), data };
}
