/**
 * Embedded mode's Idempotency-Key memory: first answers kept for `ttlMs`, in insertion order so expiry is a
 * walk from the front. Bounded by the publish rate times the TTL, and at most `maxEntries` (the oldest go
 * first: a retry that late publishes again).
 */
export class IdempotencyCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 100_000,
  ) {}

  get(key: string, now = Date.now()): T | undefined {
    this.expire(now);
    return this.entries.get(key)?.value;
  }

  set(key: string, value: T, now = Date.now()): void {
    this.entries.set(key, { value, expires: now + this.ttlMs });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expires > now) return;
      this.entries.delete(key);
    }
  }
}
