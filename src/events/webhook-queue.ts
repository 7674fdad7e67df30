import type { EventType } from './events-out';

/** One event as queued: what every attempt sends, and when it was queued (the retry window starts there). */
export interface QueuedEvent {
  /** The `webhook-id`: `msg_<32 hex>`, the same on every attempt. */
  id: string;
  type: EventType;
  /** The JSON body, `{type, timestamp, data}`, serialised once at emit so every attempt signs the same bytes. */
  body: string;
  /** ms since the epoch. */
  queuedAt: number;
}

/** A claimed event: this replica holds it until `lease` (ms since the epoch), then any replica may take it. */
export interface ClaimedEvent extends QueuedEvent {
  /** Failed attempts so far (0 on the first try). */
  attempts: number;
  /** The due time the claim set; a reschedule only applies while it still holds (no other replica claimed it). */
  lease: number;
}

/**
 * Where events wait: memory in embedded mode, Redis in cluster mode (redis-webhook-queue.ts). Every method of
 * the Redis queue may reject while Redis is unreachable; the caller keeps what it could not write.
 */
export interface WebhookQueue {
  /** Queues events, due now. Resolves with how many were dropped because the queue held `max` already. */
  add(events: readonly QueuedEvent[], max: number): Promise<number>;
  /** Takes up to `count` due events, each held by this replica until `now + leaseMs`. */
  claim(now: number, count: number, leaseMs: number): Promise<ClaimedEvent[]>;
  /** Delivered, given up or dropped: gone from the queue. */
  remove(id: string): Promise<void>;
  /** Tried again at `due`; ignored when the claim expired and another replica holds the event. */
  reschedule(event: ClaimedEvent, due: number): Promise<void>;
  /** Events waiting (cluster mode: the cluster's queue). */
  size(): Promise<number>;
}

interface Waiting {
  event: QueuedEvent;
  attempts: number;
  due: number;
}

/**
 * Embedded mode's queue: in this process's memory (lost with it, as docs/events.md says). New events wait in
 * arrival order (a claim takes the oldest in O(1)); retries in a binary heap by due time (O(log n) each, even
 * with 100,000 of them waiting for a dead receiver).
 */
export class MemoryWebhookQueue implements WebhookQueue {
  private readonly events = new Map<string, Waiting>();
  private fresh: Waiting[] = [];
  private head = 0;
  private readonly heap: Waiting[] = [];

  add(events: readonly QueuedEvent[], max: number): Promise<number> {
    let dropped = 0;
    for (const event of events) {
      // One event per id, as in Redis (ZADD NX): an event emitted again under its id is not queued twice.
      if (this.events.has(event.id)) continue;
      if (this.events.size >= max) {
        dropped++;
        continue;
      }
      const waiting = { event, attempts: 0, due: 0 };
      this.events.set(event.id, waiting);
      this.fresh.push(waiting);
    }
    return Promise.resolve(dropped);
  }

  claim(now: number, count: number, leaseMs: number): Promise<ClaimedEvent[]> {
    const claimed: ClaimedEvent[] = [];
    // Retries that are due first (they are older), then new events in arrival order.
    while (claimed.length < count) {
      let waiting: Waiting;
      if (this.heap.length > 0 && this.heap[0].due <= now) waiting = this.pop();
      else if (this.head < this.fresh.length) waiting = this.fresh[this.head++];
      else break;
      // Off both lists while in flight; the lease only matters between replicas, and there is one here.
      waiting.due = now + leaseMs;
      claimed.push({ ...waiting.event, attempts: waiting.attempts, lease: waiting.due });
    }
    if (this.head > 1024 && this.head * 2 > this.fresh.length) {
      this.fresh = this.fresh.slice(this.head);
      this.head = 0;
    }
    return Promise.resolve(claimed);
  }

  remove(id: string): Promise<void> {
    this.events.delete(id);
    return Promise.resolve();
  }

  reschedule(event: ClaimedEvent, due: number): Promise<void> {
    const waiting = this.events.get(event.id);
    if (waiting) {
      waiting.attempts = event.attempts + 1;
      waiting.due = due;
      this.push(waiting);
    }
    return Promise.resolve();
  }

  size(): Promise<number> {
    return Promise.resolve(this.events.size);
  }

  private push(item: Waiting): void {
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].due <= heap[i].due) break;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  }

  private pop(): Waiting {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let least = i;
        if (left < heap.length && heap[left].due < heap[least].due) least = left;
        if (right < heap.length && heap[right].due < heap[least].due) least = right;
        if (least === i) break;
        [heap[least], heap[i]] = [heap[i], heap[least]];
        i = least;
      }
    }
    return top;
  }
}
