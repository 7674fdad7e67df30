import type { StreamId } from '../bus/stream-id';
import type { Alert, AlertInput } from './alert';

/** An alert as the log holds it: its position, the client frame (serialised once) and when it was published. */
export interface LoggedAlert {
  alert: Alert;
  key: StreamId;
  frame: Buffer;
  /** Publish time (ms since the epoch, sub-ms where known) for ws_delivery_seconds. */
  publishedAt: number;
}

export interface Replay {
  alerts: LoggedAlert[];
  /** False when alerts after the requested id may be gone (trimmed, or older than this log). */
  recovered: boolean;
}

/**
 * The durable, ordered alert history behind `POST /api/alerts` and `?since=`. Embedded mode: a ring buffer in
 * memory. Cluster mode: the Redis stream `<prefix>:alerts:stream`, tailed by every node.
 */
export interface AlertLog {
  /** Appends and resolves with the stored alert; its id is its log position. Rejects while the log is down. */
  append(input: AlertInput): Promise<Alert>;
  /** Alerts strictly after `since`, oldest first. Rejects while the log is down. */
  since(since: StreamId): Promise<Replay>;
  /** Every appended alert (from any node) in log order, once per node, including those missed during an outage. */
  tail(handler: (entry: LoggedAlert) => void): void;
  isReady(): boolean;
}

export const ALERT_LOG = Symbol('ALERT_LOG');
