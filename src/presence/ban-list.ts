import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { LOGGER, type Logger } from '../logging/logger';
import { PRESENCE, type Presence } from './presence';

/**
 * How often each node reads the bans in force from presence storage. A ban reaches every node at once through
 * the disconnect command on the bus; this catches a node that missed it (started after it, or its Redis link
 * was down at that moment) within this long.
 */
export const BAN_REFRESH_MS = 10_000;
/** A failed read (Redis not connected yet, or down) is retried this often: cheap, it fails locally at once. */
const RETRY_MS = 250;

/**
 * Users banned from connecting (`POST /api/disconnect` with `ban_seconds`), until when. Kept in memory on every
 * node so the upgrade path asks a Map, not Redis; bounded by the bans in force.
 */
@Injectable()
export class BanList implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly until = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    @Inject(PRESENCE) private readonly presence: Presence,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  onApplicationBootstrap(): void {
    // After a reconnect Redis may be a new, empty one: the bans this node knows are written back at once.
    this.presence.onResync(() => {
      clearTimeout(this.timer);
      void this.refresh();
    });
    void this.refresh();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Until when `user` is banned (ms since the epoch), or undefined. Synchronous: the upgrade path asks. */
  bannedUntil(user: string, now = Date.now()): number | undefined {
    const until = this.until.get(user);
    if (until === undefined) return undefined;
    if (until > now) return until;
    this.until.delete(user);
    return undefined;
  }

  /** Records a ban on this node (as the disconnect command arrives). */
  remember(user: string, until: number): void {
    if (until > Date.now() && until > (this.until.get(user) ?? 0)) this.until.set(user, until);
  }

  /** Stores a ban cluster-wide and on this node. Rejects while Redis is down. */
  async ban(user: string, until: number): Promise<void> {
    await this.presence.ban(user, until);
    this.remember(user, until);
  }

  private async refresh(): Promise<void> {
    let read = false;
    const now = Date.now();
    for (const [user, until] of this.until) if (until <= now) this.until.delete(user);
    try {
      const stored = await this.presence.bans();
      for (const [user, until] of stored) this.remember(user, until);
      // Bans this node knows that storage lost (Redis restarted empty, a failover lost the write): written back,
      // so replicas started later still refuse those users.
      for (const [user, until] of this.until) if ((stored.get(user) ?? 0) < until && until > now) await this.presence.ban(user, until);
      read = true;
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'bans not read (Redis unreachable); retrying');
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.refresh(), read ? BAN_REFRESH_MS : RETRY_MS);
    this.timer.unref();
  }
}
