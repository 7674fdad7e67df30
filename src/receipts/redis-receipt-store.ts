import type { ModuleRef } from '@nestjs/core';
import { BrokerUnavailableError } from '../channels/broker';
import { RedisConnections } from '../redis/redis-connections';
import { Script } from '../redis/script';
import { PROVISIONAL_MS, type AckResult, type AckTarget, type AlertRecord, type AlertRoute, type DueEscalation, type ReceiptStore, type ReceiptView } from './receipt-store';

/**
 * Receipts in Redis (cluster mode), every key under the `{P}` hash tag (P = REDIS_PREFIX; one slot on Redis
 * Cluster, like presence and the webhook queue: a trim or a claim touches several alerts' keys in one script):
 *   {P}:receipt:<alert>             hash  the description (created, exp, ts, users, within_s, route, refs,
 *                                         data, nonce), `ack` ("1" once acknowledgement is asked for), `escalated`
 *   {P}:receipt:<alert>:delivered   hash  user -> first delivery (ms)
 *   {P}:receipt:<alert>:acked       hash  user -> first ack (ms)
 *   {P}:receipt-ref:<user>\0<frame> string  a personal frame's id -> its alert
 *   {P}:receipts                    zset  alerts asking for ack -> publication time (the newest `keep` are kept)
 *   {P}:receipts:due                zset  alert -> escalation due time (a claim moves it to the lease's end)
 * Each alert's keys expire together at its `exp` (the channel's history TTL) when it has one. Deliveries are
 * written in one script call per alert per event-loop turn, whatever the number of sockets.
 */

/** KEYS: meta, delivered. ARGV: ack ("1"/"0"), ts, provisional ms, users... */
const DELIVERED = new Script(`
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'ack', '1') end
for i = 4, #ARGV do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[2]) end
local exp = redis.call('HGET', KEYS[1], 'exp')
if exp then
  if exp ~= '0' then redis.call('PEXPIREAT', KEYS[2], exp) end
else
  if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  if redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return 1
`);

/**
 * KEYS: meta, delivered, acked, index, due. ARGV: prefix, id, exp, keep, due time (0: none), ts, refs (JSON),
 * ack ("1"/"0"), then field/value pairs of the description. Nothing if it was created already.
 */
const CREATE = new Script(`
if redis.call('HEXISTS', KEYS[1], 'created') == 1 then return 0 end
local p, id, exp = ARGV[1], ARGV[2], ARGV[3]
local fields = {'created', '1', 'exp', exp, 'refs', ARGV[7]}
if ARGV[8] == '1' then table.insert(fields, 'ack'); table.insert(fields, '1') end
for i = 9, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[1], unpack(fields))
for i = 1, 3 do
  if exp ~= '0' then redis.call('PEXPIREAT', KEYS[i], exp) else redis.call('PERSIST', KEYS[i]) end
end
for user, frame in pairs(cjson.decode(ARGV[7])) do
  local key = p .. ':receipt-ref:' .. user .. '\\0' .. frame
  if exp ~= '0' then redis.call('SET', key, id, 'PXAT', exp) else redis.call('SET', key, id) end
end
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('ZADD', KEYS[4], ARGV[6], id)
  local over = math.min(redis.call('ZCARD', KEYS[4]) - keep, 100)
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[4], 0, over - 1)) do
      local m = p .. ':receipt:' .. old
      local refs = redis.call('HGET', m, 'refs')
      if refs then
        for user, frame in pairs(cjson.decode(refs)) do redis.call('DEL', p .. ':receipt-ref:' .. user .. '\\0' .. frame) end
      end
      redis.call('DEL', m, m .. ':delivered', m .. ':acked')
      redis.call('ZREM', KEYS[5], old)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, over - 1)
  end
end
if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[5], ARGV[5], id) end
return 1
`);

/**
 * KEYS: index (for the slot). ARGV: prefix, user, frame id, ts, alert known here ("" none), route ("alerts" or "").
 * Returns {0, alert} unknown, {1, alert} recorded, {2, alert} repeated.
 */
const ACK = new Script(`
local p, user, frame = ARGV[1], ARGV[2], ARGV[3]
local a = ARGV[5]
if a == '' then
  a = false
  if ARGV[6] ~= 'alerts' then a = redis.call('GET', p .. ':receipt-ref:' .. user .. '\\0' .. frame) end
  if not a then a = frame end
end
local m = p .. ':receipt:' .. a
if redis.call('HGET', m, 'ack') ~= '1' or redis.call('HEXISTS', m .. ':delivered', user) == 0 then return {0, a} end
local acked = m .. ':acked'
if redis.call('HSETNX', acked, user, ARGV[4]) == 0 then return {2, a} end
local exp = redis.call('HGET', m, 'exp')
if exp then
  if exp ~= '0' then redis.call('PEXPIREAT', acked, exp) end
else
  local ttl = redis.call('PTTL', m)
  if ttl > 0 then redis.call('PEXPIRE', acked, ttl) end
end
return {1, a}
`);

/**
 * KEYS: due. ARGV: prefix, now, lease until, max. Returns, per claimed alert: id, pending (JSON), within_s,
 * route, refs, data, nonce. Alerts gone, escalated already, or with nobody pending leave the zset.
 */
const CLAIM = new Script(`
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local m = ARGV[1] .. ':receipt:' .. id
  local f = redis.call('HMGET', m, 'created', 'escalated', 'users', 'within_s', 'route', 'refs', 'data', 'nonce')
  local pending = {}
  if f[1] and not f[2] then
    for _, user in ipairs(cjson.decode(f[3])) do
      if redis.call('HEXISTS', m .. ':acked', user) == 0 then table.insert(pending, user) end
    end
  end
  if #pending == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
    for _, v in ipairs({id, cjson.encode(pending), f[4], f[5], f[6], f[7], f[8]}) do table.insert(out, v) end
  end
end
return out
`);

/** KEYS: meta, due. ARGV: id, ts. */
const COMPLETE = new Script(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'escalated', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`);

/** A hash reply as pairs, into a Map of numbers. */
function times(flat: string[]): Map<string, number> {
  const map = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i], Number(flat[i + 1]));
  return map;
}

export class RedisReceiptStore implements ReceiptStore {
  private readonly prefix: string;
  private readonly index: string;
  private readonly due: string;
  private links: RedisConnections | undefined;

  constructor(
    private readonly resolve: () => RedisConnections,
    prefix: string,
  ) {
    this.prefix = `{${prefix}}`;
    this.index = `${this.prefix}:receipts`;
    this.due = `${this.prefix}:receipts:due`;
  }

  /**
   * On the node's command link (RedisConnections, provided by ClusterModule), looked up at first use, as the
   * webhook queue does: receipts/ names no Redis type outside this file.
   */
  static fromModule(moduleRef: ModuleRef, prefix: string): RedisReceiptStore {
    return new RedisReceiptStore(() => moduleRef.get(RedisConnections, { strict: false }), prefix);
  }

  private get redis(): RedisConnections {
    return (this.links ??= this.resolve());
  }

  private meta(alert: string): string {
    return `${this.prefix}:receipt:${alert}`;
  }

  async create(record: AlertRecord, keep: number): Promise<void> {
    const meta = this.meta(record.id);
    const due = record.users.length > 0 && record.withinS !== undefined ? record.ts + record.withinS * 1000 : 0;
    const fields: string[] = ['ts', String(record.ts), 'users', JSON.stringify(record.users), 'route', record.route, 'nonce', record.nonce];
    if (record.withinS !== undefined) fields.push('within_s', String(record.withinS));
    if (record.data !== undefined) fields.push('data', JSON.stringify(record.data));
    await this.available(() =>
      CREATE.run(this.redis.command, [meta, `${meta}:delivered`, `${meta}:acked`, this.index, this.due], [
        this.prefix,
        record.id,
        record.expiresAt,
        keep,
        due,
        record.ts,
        // An empty Lua table encodes as {} as well, and cjson decodes {} to one.
        JSON.stringify(record.refs),
        record.ack ? '1' : '0',
        ...fields,
      ]),
    );
  }

  async delivered(alert: string, users: readonly string[], ts: number, ack: boolean): Promise<void> {
    const meta = this.meta(alert);
    await this.available(() => DELIVERED.run(this.redis.command, [meta, `${meta}:delivered`], [ack ? '1' : '0', ts, PROVISIONAL_MS, ...users]));
  }

  async ack(target: AckTarget, ts: number): Promise<AckResult> {
    const [code, alert] = (await this.available(() =>
      ACK.run(this.redis.command, [this.index], [this.prefix, target.user, target.frameId, ts, target.alert ?? '', target.route === 'alerts' ? 'alerts' : '']),
    )) as [number, string];
    if (code === 0) return { result: 'unknown' };
    return { result: code === 1 ? 'recorded' : 'repeated', alert };
  }

  async read(alert: string): Promise<ReceiptView | undefined> {
    const meta = this.meta(alert);
    const replies = await this.available(() => this.redis.command.multi().hmget(meta, 'created', 'ack', 'users').hgetall(`${meta}:delivered`).hgetall(`${meta}:acked`).exec());
    if (!replies) throw new BrokerUnavailableError();
    for (const [error] of replies) if (error) throw new BrokerUnavailableError();
    const [created, ack, users] = replies[0][1] as (string | null)[];
    const delivered = replies[1][1] as Record<string, string>;
    const acked = replies[2][1] as Record<string, string>;
    if (!created && !ack && Object.keys(delivered).length === 0) return undefined;
    return {
      id: alert,
      ack: ack === '1',
      described: created === '1',
      users: users ? (JSON.parse(users) as string[]) : [],
      delivered: times(Object.entries(delivered).flat()),
      acked: times(Object.entries(acked).flat()),
    };
  }

  async claimDue(now: number, leaseUntil: number, max: number): Promise<DueEscalation[]> {
    const reply = (await this.available(() => CLAIM.run(this.redis.command, [this.due], [this.prefix, now, leaseUntil, max]))) as (string | null)[];
    const claimed: DueEscalation[] = [];
    for (let i = 0; i + 6 < reply.length; i += 7) {
      const [id, pending, withinS, route, refs, data, nonce] = reply.slice(i, i + 7);
      claimed.push({
        id: id!,
        pending: JSON.parse(pending!) as string[],
        withinS: Number(withinS),
        route: (route as AlertRoute) ?? 'alerts',
        refs: refs ? (JSON.parse(refs) as Record<string, string>) : {},
        data: data ? (JSON.parse(data) as Record<string, unknown>) : {},
        nonce: nonce ?? id!,
      });
    }
    return claimed;
  }

  async complete(alert: string, ts: number): Promise<void> {
    await this.available(() => COMPLETE.run(this.redis.command, [this.meta(alert), this.due], [alert, ts]));
  }

  /** Redis unreachable (link down, or a command that failed for it): BrokerUnavailableError, as the broker does. */
  private async available<T>(run: () => Promise<T>): Promise<T> {
    if (!this.redis.isCommandReady()) throw new BrokerUnavailableError();
    try {
      return await run();
    } catch {
      throw new BrokerUnavailableError();
    }
  }
}
