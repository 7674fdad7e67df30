/**
 * Per-connection token bucket: `ratePerSec` tokens refill continuously up to `burst`. Two numbers and a
 * timestamp per socket, no timer.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Frames refused since the bucket was last full; reset once the client has calmed down. */
  dropped = 0;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    now: number,
    /** Tokens on top of the burst at the start, never refilled (a reconnect's re-subscribes). */
    credit = 0,
  ) {
    this.tokens = burst + credit;
    this.last = now;
  }

  /** Takes one token; false when the frame must be refused. */
  take(now: number): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      // Above the burst only while a start credit lasts: it is spent, never refilled.
      if (this.tokens < this.burst) this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
      this.last = now;
      if (this.tokens >= this.burst) this.dropped = 0;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.dropped += 1;
    return false;
  }
}
