import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { InvalidMessages } from '../bus/invalid-messages';
import { preciseNow, prefixed } from '../bus/message-bus';
import { isObject } from '../bus/redis-bus';
import { compareStreamIds, formatStreamId, parseStreamId, type StreamId } from '../bus/stream-id';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { RedisConnections, RedisUnavailableError } from '../redis/redis-connections';
import { AlertInputSchema, encodeAlertFrame, type Alert, type AlertInput } from './alert';
import type { AlertLog, LoggedAlert, Replay } from './alert-log';

/** Entries per XREAD / XRANGE round trip: catching up after an outage goes page by page. */
const PAGE = 500;
/** A blocking read returns empty after this long, so a stuck link is noticed within it. */
const BLOCK_MS = 5000;
const CHANNEL_KIND = 'alerts';

type StreamEntry = [id: string, fields: string[]];

/**
 * Reads one stream entry. The gateway writes `data <json object>` plus optional `roles` / `users` (JSON arrays)
 * and `ts` (precise publish time). Other services may write the same, or put the whole PUBLISH-style object
 * `{"data":{...},"roles":[..],"users":[..]}` into `data`.
 */
export function decodeStreamEntry(fields: string[]): { input: AlertInput; ts?: number } | { error: string } {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
  const raw = map.get('data');
  if (raw === undefined) return { error: 'no "data" field' };
  const parse = (name: string, text: string | undefined): unknown => {
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`"${name}" is not JSON`);
    }
  };
  let candidate: unknown;
  try {
    const data = parse('data', raw);
    const wrapped = isObject(data) && isObject(data.data) && Object.keys(data).every((k) => k === 'data' || k === 'roles' || k === 'users');
    candidate = wrapped ? data : { data, roles: parse('roles', map.get('roles')), users: parse('users', map.get('users')) };
  } catch (error) {
    return { error: (error as Error).message };
  }
  if (isObject(candidate)) for (const key of Object.keys(candidate)) if (candidate[key] === undefined) delete candidate[key];
  const parsed = AlertInputSchema.safeParse(candidate);
  if (!parsed.success) return { error: parsed.error.issues[0].message };
  const ts = Number(map.get('ts'));
  return { input: parsed.data, ts: Number.isFinite(ts) && ts > 0 ? ts : undefined };
}

/**
 * Cluster mode's alert log: the Redis stream `<prefix>:alerts:stream`. POST appends with XADD MAXLEN ~ N (the
 * stream id is the alert id); every node tails it with a blocking XREAD from the last id it delivered, so a
 * node whose link was cut catches up on reconnect, in order and once; `?since=` replays with XRANGE.
 */
@Injectable()
export class RedisAlertLog implements AlertLog, OnApplicationBootstrap, OnModuleDestroy {
  private readonly key: string;
  private readonly handlers: ((entry: LoggedAlert) => void)[] = [];
  private readonly invalid: InvalidMessages;
  private stopped = false;
  private lastErrorLog = 0;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisConnections,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.key = prefixed(config.redisPrefix, 'alerts:stream');
    this.invalid = new InvalidMessages(metrics, log);
  }

  isReady(): boolean {
    return this.redis.isReady();
  }

  async append(input: AlertInput): Promise<Alert> {
    const fields = ['data', JSON.stringify(input.data)];
    if (input.roles) fields.push('roles', JSON.stringify(input.roles));
    if (input.users) fields.push('users', JSON.stringify(input.users));
    fields.push('ts', String(preciseNow()));
    let id: string | null;
    try {
      id = await this.redis.command.xadd(this.key, 'MAXLEN', '~', String(this.config.alertHistorySize), '*', ...fields);
    } catch {
      throw new RedisUnavailableError();
    }
    this.metrics.busPublished.labels(CHANNEL_KIND).inc();
    return { id: id!, ts: parseStreamId(id!)!.ms, ...input };
  }

  async since(since: StreamId): Promise<Replay> {
    const alerts: LoggedAlert[] = [];
    let from = `(${formatStreamId(since)}`;
    try {
      for (;;) {
        const page = (await this.redis.command.xrange(this.key, from, '+', 'COUNT', PAGE)) as StreamEntry[];
        for (const [id, fields] of page) {
          const entry = this.toLogged(id, fields, false);
          if (entry) alerts.push(entry);
        }
        if (page.length < PAGE) break;
        from = `(${page[page.length - 1][0]}`;
      }
      // Checked after the read: if the oldest entry now is newer than `since`, something in between may be gone.
      return { alerts, recovered: await this.covers(since) };
    } catch (error) {
      if (error instanceof Error && /no such key/i.test(error.message)) return { alerts, recovered: true };
      throw new RedisUnavailableError();
    }
  }

  tail(handler: (entry: LoggedAlert) => void): void {
    this.handlers.push(handler);
  }

  onApplicationBootstrap(): void {
    void this.follow();
  }

  onModuleDestroy(): void {
    this.stopped = true;
  }

  /** True when every entry after `since` is still in the stream (or the stream never lost anything). */
  private async covers(since: StreamId): Promise<boolean> {
    const info = (await this.redis.command.call('XINFO', 'STREAM', this.key)) as unknown[];
    const field = (name: string) => {
      const i = info.indexOf(name);
      return i === -1 ? undefined : info[i + 1];
    };
    const length = Number(field('length'));
    const added = Number(field('entries-added')); // Redis >= 7
    const deleted = String(field('max-deleted-entry-id') ?? '0-0');
    if (added === length && deleted === '0-0') return true;
    const first = field('first-entry') as StreamEntry | null | undefined;
    const firstKey = first ? parseStreamId(first[0]) : undefined;
    return firstKey !== undefined && compareStreamIds(since, firstKey) >= 0;
  }

  /** The tail: blocking reads from the last delivered id, forever; after an error it resumes from that id. */
  private async follow(): Promise<void> {
    let last: string | undefined;
    while (!this.stopped) {
      try {
        if (last === undefined) {
          // Start at the current end: older alerts are history (replayed by `since`), not news.
          const newest = (await this.redis.blocking.xrevrange(this.key, '+', '-', 'COUNT', 1)) as StreamEntry[];
          last = newest.length ? newest[0][0] : '0-0';
        }
        const reply = (await this.redis.blocking.xread('COUNT', PAGE, 'BLOCK', BLOCK_MS, 'STREAMS', this.key, last)) as
          | [string, StreamEntry[]][]
          | null;
        if (!reply) continue;
        for (const [id, fields] of reply[0][1]) {
          last = id;
          this.metrics.busReceived.labels(CHANNEL_KIND).inc();
          const entry = this.toLogged(id, fields, true);
          if (entry) for (const handler of this.handlers) handler(entry);
        }
      } catch (error) {
        if (this.stopped) return;
        const now = Date.now();
        if (now - this.lastErrorLog > 5000) {
          this.lastErrorLog = now;
          this.log.warn({ event: 'alert_tail_error', err: (error as Error).message }, 'alert stream read failed; retrying from the last id');
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  private toLogged(id: string, fields: string[], count: boolean): LoggedAlert | undefined {
    const key = parseStreamId(id);
    const decoded = decodeStreamEntry(fields);
    if ('error' in decoded || !key) {
      if (count) this.invalid.drop(CHANNEL_KIND, 'error' in decoded ? decoded.error : `bad id ${id}`);
      return undefined;
    }
    const alert: Alert = { id, ts: key.ms, ...decoded.input };
    return { alert, key, frame: encodeAlertFrame(alert), publishedAt: decoded.ts ?? key.ms };
  }
}
