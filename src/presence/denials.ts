import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { LOGGER, type Logger } from '../logging/logger';
import { DENIAL_STORE, type Denial, type DenialStore } from './denial-store';
import { PRESENCE, type Presence } from './presence';

/**
 * How often each node asks storage whether the denials changed. A change reaches every node at once on the bus
 * (the disconnect and revoke commands); this catches a node that missed it (started after it, or its Redis link
 * was down at that moment) within this long. While nothing changed it costs one GET.
 */
export const DENIAL_REFRESH_MS = 10_000;
/** A failed read (Redis not connected yet, or down) is retried this often: cheap, it fails locally at once. */
const RETRY_MS = 250;
/**
 * Denials read, written back or swept per step, with the event loop let go between steps. 1,000 entries parse
 * and land in the Maps in about 1 ms; the whole set at once was a 2.2 s stall at 500,000 bans.
 */
export const DENIAL_PAGE = 1000;

const SEP = '\u0000';
const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What a revocation names: every token with this `jti`, or this user's tokens issued before a time. */
export type Revocation = { jti: string } | { user: string; issuedBefore: number };

export function revocationMember(revocation: Revocation): string {
  return 'jti' in revocation ? `j${SEP}${revocation.jti}` : `u${SEP}${revocation.issuedBefore}${SEP}${revocation.user}`;
}

function parseRevocation(member: string): Revocation | undefined {
  if (member.startsWith(`j${SEP}`)) return { jti: member.slice(2) };
  const at = member.indexOf(SEP, 2);
  if (!member.startsWith(`u${SEP}`) || at === -1) return undefined;
  const issuedBefore = Number(member.slice(2, at));
  return Number.isSafeInteger(issuedBefore) ? { user: member.slice(at + 1), issuedBefore } : undefined;
}

/** One denial as a node holds it: when it lapses, and the refresh that last saw it in storage. */
interface Held {
  until: number;
  seen: number;
}

/**
 * The access denials in force, on every node, so the upgrade path asks a Map, not Redis: bans (403 `banned`)
 * and token revocations (401 `token_revoked`). Bounded by the denials in force; each lapses on its own.
 * Kept in sync incrementally: a change arrives on the bus (remember*), the periodic check reads storage only
 * when its change counter moved, and then page by page; what storage lost (Redis restarted empty) is written
 * back in batches of DENIAL_PAGE.
 */
@Injectable()
export class Denials implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly bans = new Map<string, Held>();
  private readonly jtis = new Map<string, Held>();
  /** sub → issued_before (unix s) → held. Almost always one entry per user. */
  private readonly users = new Map<string, Map<number, Held>>();
  private readonly revokedListeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The store's change counter as of the last complete read; undefined: read everything next time. */
  private seenVersion: string | null | undefined;
  /** Numbers the refreshes, to tell which held denials the last read found in storage. */
  private generation = 0;
  private refreshing: Promise<void> | undefined;
  /** Counts the resyncs: one during a read means the version it read may belong to the Redis before a restart. */
  private resyncs = 0;

  constructor(
    @Inject(DENIAL_STORE) private readonly store: DenialStore,
    @Inject(PRESENCE) private readonly presence: Presence,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  onApplicationBootstrap(): void {
    // After a reconnect Redis may be a new, empty one: everything is read again and what it lost written back.
    this.presence.onResync(() => {
      this.resyncs++;
      this.seenVersion = undefined;
      clearTimeout(this.timer);
      // A read in flight finishes first, then reads again at once (below).
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
    if (this.bans.size === 0) return undefined;
    const held = this.bans.get(user);
    if (held === undefined) return undefined;
    if (held.until > now) return held.until;
    this.bans.delete(user);
    return undefined;
  }

  /**
   * Whether the token behind `principal` is revoked: its `jti`, or its user's tokens issued before a time (a
   * token without `iat` counts as issued before any). Synchronous: the upgrade path asks.
   */
  revoked(principal: Pick<Principal, 'sub' | 'iat' | 'jti'>, now = Date.now()): boolean {
    if (this.jtis.size !== 0 && principal.jti !== undefined) {
      const held = this.jtis.get(principal.jti);
      if (held !== undefined && held.until > now) return true;
    }
    if (this.users.size === 0) return false;
    const mine = this.users.get(principal.sub);
    if (mine === undefined) return false;
    for (const [issuedBefore, held] of mine) {
      if (held.until <= now) continue;
      if (principal.iat === undefined || principal.iat < issuedBefore) return true;
    }
    return false;
  }

  /** Told whenever this node learns of a revocation (command or refresh): the caller closes what it matches. */
  onRevoked(listener: () => void): void {
    this.revokedListeners.add(listener);
  }

  /** Records a ban on this node (as the disconnect command arrives). */
  rememberBan(user: string, until: number): void {
    this.hold(this.bans, user, until);
  }

  /** Records a revocation on this node (as the revoke command arrives) and closes what it matches. */
  rememberRevocation(revocation: Revocation, until: number): void {
    if (this.holdRevocation(revocation, until)) this.revokedChanged();
  }

  /** Stores a ban cluster-wide and on this node. Rejects while Redis is down. */
  async ban(user: string, until: number): Promise<void> {
    await this.store.write([{ kind: 'ban', member: user, until }]);
    this.rememberBan(user, until);
  }

  /** Stores a revocation cluster-wide and on this node. Rejects while Redis is down. */
  async revoke(revocation: Revocation, until: number): Promise<void> {
    await this.store.write([{ kind: 'revocation', member: revocationMember(revocation), until }]);
    this.rememberRevocation(revocation, until);
  }

  /** Keeps the later `until`; true when this is news (not held, or held for shorter). */
  private hold<K>(map: Map<K, Held>, key: K, until: number, seen = -1): boolean {
    if (until <= Date.now()) return false;
    const held = map.get(key);
    if (held === undefined) {
      map.set(key, { until, seen });
      return true;
    }
    if (until >= held.until) {
      // Storage holds at least this: seen there (a write-back would not change it).
      if (seen !== -1) held.seen = seen;
      if (until === held.until) return false;
      held.until = until;
      return true;
    }
    return false;
  }

  private holdRevocation(revocation: Revocation, until: number, seen = -1): boolean {
    if ('jti' in revocation) return this.hold(this.jtis, revocation.jti, until, seen);
    let mine = this.users.get(revocation.user);
    if (mine === undefined) this.users.set(revocation.user, (mine = new Map()));
    // One covering it (issued before as late or later, holding as long or longer) makes it redundant; it makes
    // redundant those it covers. So a user logged out everywhere again and again keeps one entry, not one per call
    // (the door loops over a user's entries).
    for (const [issuedBefore, held] of mine) {
      if (issuedBefore === revocation.issuedBefore) continue;
      if (issuedBefore >= revocation.issuedBefore && held.until >= until) return false;
      if (issuedBefore <= revocation.issuedBefore && held.until <= until) mine.delete(issuedBefore);
    }
    const news = this.hold(mine, revocation.issuedBefore, until, seen);
    if (mine.size === 0) this.users.delete(revocation.user);
    return news;
  }

  private revokedChanged(): void {
    for (const listener of this.revokedListeners) {
      try {
        listener();
      } catch (error) {
        this.log.error({ err: error }, 'revocation listener failed');
      }
    }
  }

  private refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    let read = false;
    const resyncs = this.resyncs;
    try {
      await this.sweep();
      const version = await this.store.version();
      if (version === null || version !== this.seenVersion) {
        await this.readAll();
        await this.writeBack();
        // The version read before the pages: a change made meanwhile moved it, so the next check reads again. Not
        // when Redis was replaced meanwhile: its counter restarted and could reach this number again.
        if (this.resyncs === resyncs) this.seenVersion = version;
      }
      read = true;
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'denials not read (Redis unreachable); retrying');
    }
    if (this.stopped) return;
    clearTimeout(this.timer);
    const delay = this.resyncs !== resyncs ? 0 : read ? DENIAL_REFRESH_MS : RETRY_MS;
    this.timer = setTimeout(() => void this.refresh(), delay);
    this.timer.unref();
  }

  /** Every stored denial, page by page, into the Maps; each one found is marked seen by this generation. */
  private async readAll(): Promise<void> {
    const generation = ++this.generation;
    for (const kind of ['ban', 'revocation'] as const) {
      for (let offset = 0; ; offset += DENIAL_PAGE) {
        const page = await this.store.page(kind, offset, DENIAL_PAGE);
        let revoked = false;
        for (const d of page) {
          if (kind === 'ban') this.hold(this.bans, d.member, d.until, generation);
          else {
            const revocation = parseRevocation(d.member);
            if (revocation && this.holdRevocation(revocation, d.until, generation)) revoked = true;
          }
        }
        if (revoked) this.revokedChanged();
        if (page.length < DENIAL_PAGE || this.stopped) break;
        await yieldLoop();
      }
    }
  }

  /**
   * What this node holds that storage did not have (Redis restarted empty, a failover lost the write): written
   * back in batches, so replicas started later still refuse them.
   */
  private async writeBack(): Promise<void> {
    const generation = this.generation;
    let batch: Denial[] = [];
    let steps = 0;
    // Every DENIAL_PAGE denials looked at (or gathered): the batch written, the loop let go.
    const step = async () => {
      if (batch.length) await this.store.write(batch);
      batch = [];
      await yieldLoop();
    };
    const now = Date.now();
    for (const [user, held] of this.bans) {
      if (held.seen !== generation && held.until > now) batch.push({ kind: 'ban', member: user, until: held.until });
      if (++steps % DENIAL_PAGE === 0 || batch.length >= DENIAL_PAGE) await step();
    }
    for (const [jti, held] of this.jtis) {
      if (held.seen !== generation && held.until > now) batch.push({ kind: 'revocation', member: revocationMember({ jti }), until: held.until });
      if (++steps % DENIAL_PAGE === 0 || batch.length >= DENIAL_PAGE) await step();
    }
    for (const [user, mine] of this.users) {
      for (const [issuedBefore, held] of mine) {
        if (held.seen !== generation && held.until > now) batch.push({ kind: 'revocation', member: revocationMember({ user, issuedBefore }), until: held.until });
      }
      if (++steps % DENIAL_PAGE === 0 || batch.length >= DENIAL_PAGE) await step();
    }
    if (batch.length) await this.store.write(batch);
  }

  /** Drops lapsed denials, DENIAL_PAGE at a time. */
  private async sweep(): Promise<void> {
    const now = Date.now();
    let steps = 0;
    for (const [user, held] of this.bans) {
      if (held.until <= now) this.bans.delete(user);
      if (++steps % DENIAL_PAGE === 0) await yieldLoop();
    }
    for (const [jti, held] of this.jtis) {
      if (held.until <= now) this.jtis.delete(jti);
      if (++steps % DENIAL_PAGE === 0) await yieldLoop();
    }
    for (const [user, mine] of this.users) {
      for (const [issuedBefore, held] of mine) if (held.until <= now) mine.delete(issuedBefore);
      if (mine.size === 0) this.users.delete(user);
      if (++steps % DENIAL_PAGE === 0) await yieldLoop();
    }
  }
}
