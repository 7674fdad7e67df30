import type { HistoryPage, Publication } from './publication';
import { compareStreamIds, formatStreamId, parseStreamId, type StreamId } from './stream-id';

const ZERO: StreamId = { ms: 0, seq: 0 };
/** The ring of a history nothing was appended to yet (most `user:<sub>` channels), shared: never written. */
const NONE: readonly (Publication | undefined)[] = [];

/**
 * One channel's last `capacity` publications in a ring (embedded mode's stand-in for a Redis stream). It grows
 * as messages arrive, so a quiet room costs a few slots, not HISTORY_SIZE. Publications are appended in id
 * order, so a resume is a binary search plus a slice.
 */
export class MemoryHistory {
  private items = NONE as (Publication | undefined)[];
  private head = 0; // index of the oldest
  private count = 0;
  /** Ids before `{ ms: this, seq: MAX }` are from before this history began (a resume without an epoch cannot prove them). */
  private readonly beganMs: number;
  /** The newest id evicted: what came after it is all still here. */
  private evicted: StreamId | undefined;
  /** The newest id ever appended. */
  private top: StreamId = ZERO;
  /** The epoch and the newest id, rebuilt on append: read on every welcome, written once per message. */
  private current: { id: string; epoch: string };
  lastAppendAt: number;

  constructor(
    readonly epoch: string,
    private readonly capacity: number,
    startedAt: number,
  ) {
    this.beganMs = startedAt - 1;
    this.lastAppendAt = startedAt;
    this.current = { id: '0-0', epoch };
  }

  get size(): number {
    return this.count;
  }

  append(publication: Publication, now: number): void {
    this.top = publication.key!;
    this.current = { id: publication.id!, epoch: this.epoch };
    this.lastAppendAt = now;
    if (this.count < this.capacity) {
      if (this.count === this.items.length) this.grow();
      this.items[(this.head + this.count) % this.items.length] = publication;
      this.count++;
      return;
    }
    this.evicted = this.items[this.head]!.key!;
    this.items[this.head] = publication;
    this.head = (this.head + 1) % this.items.length;
  }

  private grow(): void {
    const size = Math.min(this.capacity, Math.max(8, this.items.length * 2));
    const next: (Publication | undefined)[] = new Array(size);
    for (let i = 0; i < this.count; i++) next[i] = this.at(i);
    this.items = next;
    this.head = 0;
  }

  private at(i: number): Publication {
    return this.items[(this.head + i) % this.items.length]!;
  }

  /** The epoch and the newest id. */
  position(): { readonly id: string; readonly epoch: string } {
    return this.current;
  }

  /** Publications strictly after `since`, oldest first, at most `limit`. */
  since(since: { id: string; epoch?: string } | undefined, limit = Infinity): HistoryPage {
    const top = formatStreamId(this.top);
    if (!since) return { epoch: this.epoch, publications: [], recovered: true, top };
    const key = parseStreamId(since.id) ?? ZERO;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareStreamIds(this.at(mid).key!, key) <= 0) lo = mid + 1;
      else hi = mid;
    }
    const publications: Publication[] = [];
    for (let i = lo; i < this.count && publications.length < limit; i++) publications.push(this.at(i));
    // Same epoch: this very history, so even `0-0` (the position a welcome names on an empty channel) is
    // continuous. Without an epoch, an id from before this history began cannot be vouched for.
    const sameHistory = since.epoch === undefined ? compareStreamIds(key, { ms: this.beganMs, seq: Number.MAX_SAFE_INTEGER }) >= 0 : since.epoch === this.epoch;
    const recovered =
      sameHistory && compareStreamIds(key, this.top) <= 0 && (this.evicted === undefined || compareStreamIds(key, this.evicted) >= 0);
    return { epoch: this.epoch, publications, recovered, top };
  }
}
