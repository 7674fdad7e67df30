/**
 * Embedded mode's Idempotency-Key memory: first answers kept for `ttlMs`, in insertion order so expiry is a
 * walk from the front. Bounded by the publish rate times the TTL.
 */
export class IdempotencyCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();

  constructor(private readonly ttlMs: number) {}

  get(key: string, now = Date.now()): T | undefined {
    this.expire(now);
    return this.entries.get(key)?.value;
  }

  set(key: string, value: T, now = Date.now()): void {
    this.entries.set(key, { value, expires: now + this.ttlMs });
  }

  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expires > now) return;
      this.entries.delete(key);
    }
  }
}
