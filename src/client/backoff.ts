/** Reconnect delays: exponential backoff with full jitter (AWS architecture blog), so clients spread out. */
export interface BackoffOptions {
  /** First delay ceiling (default 500 ms). */
  baseMs?: number;
  /** Largest delay ceiling (default 30 s). */
  capMs?: number;
}

/** A delay in [0, min(cap, base × 2^attempt)); attempt 0 is the first retry. */
export function backoffDelay(attempt: number, { baseMs = 500, capMs = 30_000 }: BackoffOptions = {}, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** After a drain (1012) or a going-away (1001) the server wants clients back at once, just not all together. */
export const RESTART_JITTER_MS = 250;
