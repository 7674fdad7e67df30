import type { StreamId } from './stream-id';

/**
 * One message on a channel, as every node sees it. History channels give it an `id` (its position in the
 * channel's stream, increasing) and the channel's `epoch`; live-only messages have neither, so no client can
 * resume from them.
 */
export interface Publication {
  /** Logical channel: `alerts`, `user:<sub>`, `chat:<room>`, `signaling:<id>`; Redis adds REDIS_PREFIX. */
  readonly channel: string;
  readonly id?: string;
  /** `id` parsed, for ordering. */
  readonly key?: StreamId;
  /** Publish time, ms since the epoch with sub-ms precision where known (ws_delivery_seconds). */
  readonly ts: number;
  /** NODE_ID of the publishing node, or `external` for other services. */
  readonly origin: string;
  /** The payload: always a JSON object within MAX_PUBLISH_BYTES and MAX_JSON_DEPTH. */
  readonly data: Record<string, unknown>;
  /** History channels: the channel's epoch when it was published (set by the publishing node). */
  readonly epoch?: string;
  /** History channels, as delivered: the id before this one on the channel (`0-0` for the first). */
  readonly prev?: string;
  /**
   * Not a message: this node could not deliver some publications of the channel (its history was lost, or
   * trimmed before the node could read it). Subscribers must be told to resume, which says `recovered:false`.
   */
  readonly lost?: true;
}

/** A position in a channel's history: resume after `id`, valid while the channel's epoch is `epoch`. */
export interface StreamPosition {
  readonly id: string;
  readonly epoch: string;
}

/** What a resume gets: the publications after `since` still in history, and whether that is provably all. */
export interface HistoryPage {
  epoch: string;
  /** Oldest first; invalid entries already skipped (and counted). */
  publications: Publication[];
  /**
   * True only when continuity is proven: same epoch (when given), `since` not ahead of the channel's last id,
   * nothing after `since` trimmed.
   */
  recovered: boolean;
  /** The channel's newest id when the page was read (`0-0` for an empty channel). */
  top: string;
}

export const EXTERNAL_ORIGIN = 'external';

/** Bounded metric label for a channel: its kind (`chat:lobby` → `chat`), never the room or the user. */
export function channelKind(channel: string): string {
  const colon = channel.indexOf(':');
  return colon === -1 ? channel : channel.slice(0, colon);
}

/** Wall-clock ms with sub-ms precision, comparable across processes on one host. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
