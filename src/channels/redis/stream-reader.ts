import type { Logger } from '../../logging/logger';
import type { RedisConnections } from '../../redis/redis-connections';
import { newEpoch } from '../memory-broker';
import { compareStreamIds, parseStreamId, type StreamId } from '../stream-id';
import { POSITION } from './broker-scripts';
import type { ChannelKeys } from './channel-keys';
import type { StreamEntry } from './entry-decoder';

/** Entries per XRANGE / XREAD round trip: catching up after an outage goes page by page. */
export const PAGE = 500;
/** Follow-up reads in a row that find nothing before the tail stops making them (single publications). */
const EMPTY_FOLLOW_UPS = 8;
/** Pause before a failed stream read is tried again. */
export const RETRY_MS = 250;

/** What POSITION says about a channel's stream. */
export interface Position {
  epoch: string;
  /** The newest id ever added (`0-0` for none). */
  top: StreamId;
  /** The oldest id still present. */
  first?: StreamId;
  /** Whether any entry was ever trimmed or deleted. */
  removed: boolean;
  maxDeleted: StreamId;
}

/**
 * Whether every entry after `after` is still in the stream. Conservative: once anything was trimmed, only an
 * `after` at or past the oldest entry left is proven (the trimmed one just before it cannot be named).
 */
export function complete(position: Position, after: StreamId): boolean {
  if (compareStreamIds(position.maxDeleted, after) > 0) return false;
  if (!position.removed) return true;
  return position.first === undefined ? compareStreamIds(after, position.top) >= 0 : compareStreamIds(after, position.first) >= 0;
}

/** A stream the blocking read follows: a subscribed channel other services XADD to directly. */
export interface TailedStream {
  readonly stream: string;
  /** The id to read after (the last one delivered on this node), or undefined while there is none to follow. */
  tailFrom(): string | undefined;
  /** Entries read after that id: they directly follow it, unless the channel moved on meanwhile. */
  tailed(entries: StreamEntry[]): void;
}

/**
 * Reads channels' streams on this node: where a stream stands (POSITION, which also keeps the epoch), ranges
 * of entries page by page on the command link, and one blocking XREAD on its own link over every stream other
 * services append to. It reads; what is delivered, and in which order, is the caller's.
 */
export class StreamReader {
  private tailing = false;
  /** Whether publications come in bursts (a wake is followed by a read for the rest): see tail(). */
  private bursts = true;
  /** Follow-up reads in a row that found nothing. */
  private emptyFollowUps = 0;
  private lastTailErrorLog = 0;

  constructor(
    private readonly redis: RedisConnections,
    private readonly log: Logger,
  ) {}

  /** The epoch (made if the channel has none, or renewed if its history is gone) and the ids of the stream. */
  async position(keys: Pick<ChannelKeys, 'stream' | 'meta'>, historyTtlMs: number): Promise<Position> {
    const { stream, meta } = keys;
    const [epoch, top, first, removed, maxDeleted] = (await POSITION.run(this.redis.command, [stream, meta], [newEpoch(), historyTtlMs])) as [
      string,
      string,
      string,
      number,
      string,
    ];
    return { epoch, top: parseStreamId(top)!, first: first ? parseStreamId(first) : undefined, removed: removed === 1, maxDeleted: parseStreamId(maxDeleted)! };
  }

  /**
   * Everything after `after` to the end of the stream, a page at a time, each handed to `take` (which says
   * whether to go on). Each page starts after the id `after()` names then: the caller's last delivered one, which
   * an entry it skipped does not move.
   */
  async readToEnd(stream: string, after: () => StreamId, take: (page: StreamEntry[]) => boolean): Promise<void> {
    for (;;) {
      const from = after();
      const page = (await this.redis.command.xrange(stream, `(${from.ms}-${from.seq}`, '+', 'COUNT', PAGE)) as StreamEntry[];
      if (!take(page) || page.length < PAGE) break;
    }
  }

  /**
   * At most `limit` entries after the id `after`, decoded by `decode` (which skips an invalid one: it does not
   * count), a page at a time.
   */
  async readRange<T>(stream: string, after: string, limit: number, decode: (id: string, fields: string[]) => T | undefined): Promise<T[]> {
    const decoded: T[] = [];
    let from = `(${after}`;
    while (decoded.length < limit) {
      const page = (await this.redis.command.xrange(stream, from, '+', 'COUNT', Math.min(PAGE, limit - decoded.length))) as StreamEntry[];
      for (const [id, fields] of page) {
        const value = decode(id, fields);
        if (value) decoded.push(value);
      }
      if (page.length < PAGE) break;
      from = `(${page[page.length - 1][0]}`;
    }
    return decoded;
  }

  /** Whether the stream still holds the entry `id`. */
  async holds(stream: string, id: string): Promise<boolean> {
    const found = (await this.redis.command.xrange(stream, id, id, 'COUNT', 1)) as StreamEntry[];
    return found.length > 0;
  }

  /**
   * Channels other services XADD to directly: one blocking XREAD over them from this node's last ids, on its
   * own connection. It stops when the node stops; a failed or timed-out read is retried from the same ids.
   */
  async tail(streams: () => Iterable<TailedStream>, stopped: () => boolean): Promise<void> {
    if (this.tailing) return;
    this.tailing = true;
    while (!stopped()) {
      const tailed: TailedStream[] = [];
      const keys: string[] = [];
      const ids: string[] = [];
      for (const candidate of streams()) {
        const from = candidate.tailFrom();
        if (from === undefined) continue;
        tailed.push(candidate);
        keys.push(candidate.stream);
        ids.push(from);
      }
      if (tailed.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      try {
        const reply = (await this.redis.blocking.xread('COUNT', PAGE, 'BLOCK', this.redis.blockMs, 'STREAMS', ...keys, ...ids)) as
          | [string, StreamEntry[]][]
          | null;
        if (!reply) continue;
        let failed: unknown;
        if (this.bursts) {
          // A blocking read wakes on the first entry of a burst, and the rest lands a moment later: read what is
          // already there, without blocking, and deliver both together, so the burst reaches each socket in one
          // write (bursts of 8 from one publisher, cluster mode: 0.63x -> 0.92x embedded, docs/benchmarks.md).
          const after = ids.slice();
          for (const [key, entries] of reply) if (entries.length) after[keys.indexOf(key)] = entries[entries.length - 1][0];
          try {
            const more = (await this.redis.blocking.xread('COUNT', PAGE, 'STREAMS', ...keys, ...after)) as [string, StreamEntry[]][] | null;
            // That read costs a round trip before every delivery and a command on every replica: only while it
            // finds something. Single publications (1,000/s: it found nothing every time) are delivered at once
            // (issue 26: 0.13-0.22 ms of the p50 at 1,000/s, docs/benchmarks.md).
            // Off after a run of empty ones, not one: a burst's rest that lands after the read is no sign that
            // bursts stopped, and switching off on it split every other burst (quick bench, bursts of 8 through
            // standalone Redis: 0.99 -> 0.59x embedded).
            if (more?.some(([, entries]) => entries.length > 0)) this.emptyFollowUps = 0;
            else if (++this.emptyFollowUps >= EMPTY_FOLLOW_UPS) this.bursts = false;
            for (const [key, entries] of more ?? []) {
              const got = reply.find(([k]) => k === key);
              if (got) got[1].push(...entries);
              else reply.push([key, entries]);
            }
          } catch (error) {
            // What the blocking read returned is delivered all the same; the link's trouble is handled below.
            failed = error;
          }
        } else if (reply.some(([, entries]) => entries.length > 1)) {
          // Entries piled up on a stream between two reads: publications come in bursts again; read on after the
          // next wake.
          this.bursts = true;
          this.emptyFollowUps = 0;
        }
        for (const [key, entries] of reply) tailed[keys.indexOf(key)]?.tailed(entries);
        if (failed !== undefined) throw failed;
      } catch (error) {
        if (stopped()) return;
        this.redis.silentBlocking(error as Error);
        const now = Date.now();
        if (now - this.lastTailErrorLog > 5000) {
          this.lastTailErrorLog = now;
          this.log.warn({ event: 'stream_tail_error', err: (error as Error).message }, 'stream read failed; retrying from the last id');
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }
}
