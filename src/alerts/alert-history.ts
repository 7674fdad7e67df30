import { compareStreamIds, type StreamId } from '../bus/stream-id';
import type { LoggedAlert as StoredAlert, Replay } from './alert-log';

/**
 * The last `capacity` alerts in a ring buffer (embedded mode's stand-in for the Redis stream). Alerts are
 * appended in id order, so a resume is a binary search plus a slice.
 */
export class AlertHistory {
  private readonly items: (StoredAlert | undefined)[];
  private head = 0; // index of the oldest
  private count = 0;
  /** Everything at or before this id is no longer here (evicted, or from before this process started). */
  private horizon: StreamId;

  constructor(
    private readonly capacity: number,
    startedAt = Date.now(),
  ) {
    this.items = new Array(capacity);
    this.horizon = { ms: startedAt - 1, seq: Number.MAX_SAFE_INTEGER };
  }

  get size(): number {
    return this.count;
  }

  append(entry: StoredAlert): void {
    if (this.count === this.capacity) {
      this.horizon = this.items[this.head]!.key;
      this.items[this.head] = entry;
      this.head = (this.head + 1) % this.capacity;
    } else {
      this.items[(this.head + this.count) % this.capacity] = entry;
      this.count++;
    }
  }

  private at(i: number): StoredAlert {
    return this.items[(this.head + i) % this.capacity]!;
  }

  /** Alerts strictly after `since`, oldest first; not recovered when some may have been evicted. */
  since(since: StreamId): Replay {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareStreamIds(this.at(mid).key, since) <= 0) lo = mid + 1;
      else hi = mid;
    }
    const alerts: StoredAlert[] = [];
    for (let i = lo; i < this.count; i++) alerts.push(this.at(i));
    return { alerts, recovered: compareStreamIds(since, this.horizon) >= 0 };
  }
}
