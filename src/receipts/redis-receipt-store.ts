import type { ModuleRef } from '@nestjs/core';
import { BrokerUnavailableError } from '../channels/broker';
import { RedisConnections } from '../redis/redis-connections';
import { Script } from '../redis/script';
import { dueMember, PROVISIONAL_MS, type AckResult, type AckTarget, type AlertRoute, type Delivery, type DueEscalation, type DueKind, type NewRecord, type Progress, type ReceiptStore, type ReceiptView } from './receipt-store';

/** Alerts per script call, so that one call stays small whatever a turn brought. */
const BATCH = 50;

/**
 * Receipts in Redis (cluster mode), every key under the `{P}` hash tag (P = REDIS_PREFIX; one slot on Redis
 * Cluster, like presence and the webhook queue: a trim or a claim touches several alerts' keys in one script):
 *   {P}:receipt:<alert>             hash  the description (created, exp, ts, users (one per line), within_s, route, refs,
 *                                         data, nonce, answer), `ack` ("1" once acknowledgement is asked for), `escalated`,
 *                                         and the steps of its due tasks done so far: `s:r` redelivered, `s:p` pushed by
 *                                         the escalation, `s:o` pushed at once ("\n" then one user per line each),
 *                                         `s:n` ("1": alert.unacknowledged queued)
 *   {P}:receipt:<alert>:delivered   string  deliveries as appended: per replica and turn "\x01<ms>\n" then one
 *                                         user per line; a user's first line is its first delivery
 *   {P}:receipt:<alert>:acked       string  "\n" then one "<user>\t<ms>\n" per user who acked (once each)
 * Strings, not hashes: a turn's deliveries are one write (a hash was a thousand HSETNX in Redis per alert and
 * 56 bytes per field), and a user is found with one plain string.find (a sub never holds a control character).
 * Written whole (SET ... KEEPTTL), not APPENDed: APPEND keeps as much again allocated for growth.
 *   {P}:receipt-ref:<user>\0<frame> string  a personal frame's id -> its alert
 *   {P}:receipts                    zset  alerts asking for ack -> publication time (the newest `keep` are kept)
 *   {P}:receipts:due                zset  due tasks -> due time (a claim moves it to the lease's end): `<alert>` its
 *                                         escalation, `<alert>:push` its push-at-once
 * Each alert's keys expire together at its `exp` (the channel's history TTL) when it has one. Deliveries are
 * written in one script call per event-loop turn (every alert of the turn), whatever the number of sockets, and
 * descriptions likewise.
 */

/**
 * Deliveries of several alerts (one turn of one replica) in one call. KEYS: meta, delivered of each alert. ARGV:
 * ts, provisional ms, then per alert: ack ("1"/"0") and its users joined by newlines (one argument, not one per
 * user: encoding a thousand arguments cost the gateway more than the rest of the receipt; a sub never holds a
 * control character, the door refuses those).
 */
const DELIVERED = new Script(`
for k = 1, #KEYS, 2 do
  local meta, delivered = KEYS[k], KEYS[k + 1]
  local a = 3 + (k - 1)
  if ARGV[a] == '1' then redis.call('HSET', meta, 'ack', '1') end
  -- SET of the whole, not APPEND: APPEND leaves up to as much again allocated for growth that may never come.
  redis.call('SET', delivered, (redis.call('GET', delivered) or '') .. '\\1' .. ARGV[1] .. '\\n' .. ARGV[a + 1] .. '\\n', 'KEEPTTL')
  local exp = redis.call('HGET', meta, 'exp')
  if exp then
    if exp ~= '0' then redis.call('PEXPIREAT', delivered, exp) end
  else
    if redis.call('PTTL', meta) == -1 then redis.call('PEXPIRE', meta, ARGV[2]) end
    if redis.call('PTTL', delivered) == -1 then redis.call('PEXPIRE', delivered, ARGV[2]) end
  end
end
return 1
`);

/**
 * Descriptions of several alerts in one call. KEYS: index, due, then meta, delivered, acked of each alert. ARGV:
 * prefix, then per alert one JSON object {id, exp, keep, due, ts, refs, ack, fields}. An alert created already is
 * left as it is (a retried publish).
 */
const CREATE = new Script(`
local p = ARGV[1]
for r = 2, #ARGV do
  local rec = cjson.decode(ARGV[r])
  local k = 3 + (r - 2) * 3
  local meta = KEYS[k]
  if redis.call('HEXISTS', meta, 'created') == 0 then
    local id, exp = rec.id, rec.exp
    local fields = {'created', '1', 'exp', exp, 'refs', cjson.encode(rec.refs)}
    if rec.ack then table.insert(fields, 'ack'); table.insert(fields, '1') end
    for name, value in pairs(rec.fields) do table.insert(fields, name); table.insert(fields, value) end
    redis.call('HSET', meta, unpack(fields))
    for i = k, k + 2 do
      if exp ~= '0' then redis.call('PEXPIREAT', KEYS[i], exp) else redis.call('PERSIST', KEYS[i]) end
    end
    for user, frame in pairs(rec.refs) do
      local key = p .. ':receipt-ref:' .. user .. '\\0' .. frame
      if exp ~= '0' then redis.call('SET', key, id, 'PXAT', exp) else redis.call('SET', key, id) end
    end
    if rec.keep > 0 then
      redis.call('ZADD', KEYS[1], rec.ts, id)
      local over = math.min(redis.call('ZCARD', KEYS[1]) - rec.keep, 100)
      if over > 0 then
        for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, over - 1)) do
          local m = p .. ':receipt:' .. old
          local refs = redis.call('HGET', m, 'refs')
          if refs then
            for user, frame in pairs(cjson.decode(refs)) do redis.call('DEL', p .. ':receipt-ref:' .. user .. '\\0' .. frame) end
          end
          redis.call('DEL', m, m .. ':delivered', m .. ':acked')
          redis.call('ZREM', KEYS[2], old, old .. ':push')
        end
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
      end
    end
    if rec.due ~= '0' then redis.call('ZADD', KEYS[2], rec.due, id) end
    if rec.push ~= '0' then redis.call('ZADD', KEYS[2], rec.push, id .. ':push') end
  end
end
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
if redis.call('HGET', m, 'ack') ~= '1' then return {0, a} end
local delivered = redis.call('GET', m .. ':delivered')
if not delivered or not string.find(delivered, '\\n' .. user .. '\\n', 1, true) then return {0, a} end
local acked = m .. ':acked'
local prior = redis.call('GET', acked) or '\\n'
if string.find(prior, '\\n' .. user .. '\\t', 1, true) then return {2, a} end
redis.call('SET', acked, prior .. user .. '\\t' .. ARGV[4] .. '\\n', 'KEEPTTL')
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
 * KEYS: due. ARGV: prefix, now, lease until, max. Returns, per claimed task: kind ("e" escalation, "p" push), id,
 * pending, redeliver, push (JSON lists), notified ("1"/"0"), within_s, route, refs, data, nonce, answer. The
 * steps done already (s:r, s:p, s:o, s:n: a claimer died mid-way) are left out. Tasks of alerts gone, escalated
 * already, or with nobody to do leave the zset.
 */
const CLAIM = new Script(`
local out = {}
local function has(list, user) return list and string.find(list, '\\n' .. user .. '\\n', 1, true) ~= nil end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local id, kind = member, 'e'
  if string.sub(member, -5) == ':push' then id, kind = string.sub(member, 1, -6), 'p' end
  local m = ARGV[1] .. ':receipt:' .. id
  local f = redis.call('HMGET', m, 'created', 'escalated', 'users', 'within_s', 'route', 'refs', 'data', 'nonce', 'answer', 's:r', 's:p', 's:o', 's:n')
  local pending, redeliver, push = {}, {}, {}
  local work = false
  if f[1] and kind == 'e' and not f[2] then
    local acked = {}
    for user in string.gmatch(redis.call('GET', m .. ':acked') or '', '([^\\n\\t]+)\\t') do acked[user] = true end
    for user in string.gmatch(f[3], '[^\\n]+') do
      if not acked[user] then
        table.insert(pending, user)
        if not has(f[10], user) then table.insert(redeliver, user) end
        if not has(f[11], user) then table.insert(push, user) end
      end
    end
    work = #pending > 0
  elseif f[1] and kind == 'p' then
    local delivered = redis.call('GET', m .. ':delivered') or ''
    for user in string.gmatch(f[3], '[^\\n]+') do
      if not has(delivered, user) and not has(f[12], user) then table.insert(push, user) end
    end
    work = #push > 0
  end
  if not work then
    redis.call('ZREM', KEYS[1], member)
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
    -- cjson encodes an empty table as {}: lists are sent joined by newlines instead.
    local row = {kind, id, table.concat(pending, '\\n'), table.concat(redeliver, '\\n'), table.concat(push, '\\n'), f[13] or '0', f[4] or '0', f[5], f[6], f[7], f[8], f[9]}
    -- A numeric loop: ipairs would stop at the first absent field (nil), and false is Redis's nil reply.
    for j = 1, 12 do table.insert(out, row[j] or false) end
  end
end
return out
`);

/** KEYS: due. ARGV: lease until, then members: each still held (in the zset) is kept until the lease's end. */
const RENEW = new Script(`
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
end
return 1
`);

/**
 * KEYS: meta. ARGV: field of users ("s:r", "s:p", "s:o"), users joined by newlines ("" none), notified ("1"/"0").
 * Nothing for an alert whose record is gone (no key is made without its expiry).
 */
const PROGRESS = new Script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], (redis.call('HGET', KEYS[1], ARGV[1]) or '\\n') .. ARGV[2] .. '\\n')
end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 's:n', '1') end
return 1
`);

/** KEYS: meta, due. ARGV: member, ts, kind ("e": the escalation, marked done; "p"). */
const COMPLETE = new Script(`
if ARGV[3] == 'e' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'escalated', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`);

const lines = (text: string | null | false): string[] => (text ? text.split('\n') : []);

/** The `delivered` string: each user's first line, under the time of the turn it was written in. */
function deliveries(text: string | null): Map<string, number> {
  const first = new Map<string, number>();
  let ts = 0;
  for (const line of (text ?? '').split('\n')) {
    if (line === '') continue;
    if (line.charCodeAt(0) === 1) ts = Number(line.slice(1));
    else if (!first.has(line)) first.set(line, ts);
  }
  return first;
}

/** The `acked` string: `<user>\t<ms>` lines. */
function acks(text: string | null): Map<string, number> {
  const acked = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const tab = line.lastIndexOf('\t');
    if (tab > 0 && !acked.has(line.slice(0, tab))) acked.set(line.slice(0, tab), Number(line.slice(tab + 1)));
  }
  return acked;
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

  async create(records: readonly NewRecord[]): Promise<void> {
    for (let start = 0; start < records.length; start += BATCH) {
      const keys = [this.index, this.due];
      const args: string[] = [this.prefix];
      for (const { record, keep } of records.slice(start, start + BATCH)) {
        const meta = this.meta(record.id);
        keys.push(meta, `${meta}:delivered`, `${meta}:acked`);
        // Users joined by newlines, as deliveries are (a sub holds no control character): the shortest form to send.
        const fields: Record<string, string> = { ts: String(record.ts), users: record.users.join('\n'), route: record.route, nonce: record.nonce };
        if (record.withinS !== undefined) fields.within_s = String(record.withinS);
        if (record.data !== undefined) fields.data = JSON.stringify(record.data);
        if (record.answerId !== undefined && record.answerId !== record.id) fields.answer = record.answerId;
        const due = record.users.length > 0 && record.withinS !== undefined ? record.ts + record.withinS * 1000 : 0;
        // Times as strings: Lua would print a number of ms as 1.7e+12.
        const push = record.users.length > 0 && record.pushAt !== undefined ? record.pushAt : 0;
        args.push(JSON.stringify({ id: record.id, exp: String(record.expiresAt), keep, due: String(due), push: String(push), ts: String(record.ts), refs: record.refs, ack: record.ack, fields }));
      }
      await this.available(() => CREATE.run(this.redis.command, keys, args));
    }
  }

  async delivered(deliveries: readonly Delivery[], ts: number): Promise<void> {
    for (let start = 0; start < deliveries.length; start += BATCH) {
      const keys: string[] = [];
      const args: (string | number)[] = [ts, PROVISIONAL_MS];
      for (const { alert, users, ack } of deliveries.slice(start, start + BATCH)) {
        const meta = this.meta(alert);
        keys.push(meta, `${meta}:delivered`);
        args.push(ack ? '1' : '0', users.join('\n'));
      }
      await this.available(() => DELIVERED.run(this.redis.command, keys, args));
    }
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
    const replies = await this.available(() => this.redis.command.multi().hmget(meta, 'created', 'ack', 'users').get(`${meta}:delivered`).get(`${meta}:acked`).exec());
    if (!replies) throw new BrokerUnavailableError();
    for (const [error] of replies) if (error) throw new BrokerUnavailableError();
    const [created, ack, users] = replies[0][1] as (string | null)[];
    const delivered = replies[1][1] as string | null;
    const acked = replies[2][1] as string | null;
    if (!created && !ack && !delivered) return undefined;
    return { id: alert, ack: ack === '1', described: created === '1', users: users ? users.split('\n') : [], delivered: deliveries(delivered), acked: acks(acked) };
  }

  async claimDue(now: number, leaseUntil: number, max: number): Promise<DueEscalation[]> {
    const reply = (await this.available(() => CLAIM.run(this.redis.command, [this.due], [this.prefix, now, leaseUntil, max]))) as (string | null)[];
    const claimed: DueEscalation[] = [];
    for (let i = 0; i + 11 < reply.length; i += 12) {
      const [kind, id, pending, redeliver, push, notified, withinS, route, refs, data, nonce, answer] = reply.slice(i, i + 12);
      claimed.push({
        kind: kind === 'p' ? 'push' : 'escalation',
        id: id!,
        answerId: answer || id!,
        pending: lines(pending),
        redeliver: lines(redeliver),
        push: lines(push),
        notified: notified === '1',
        withinS: Number(withinS),
        route: (route as AlertRoute) || 'alerts',
        refs: refs ? (JSON.parse(refs) as Record<string, string>) : {},
        data: data ? (JSON.parse(data) as Record<string, unknown>) : {},
        nonce: nonce || id!,
      });
    }
    return claimed;
  }

  async renew(tasks: readonly { id: string; kind: DueKind }[], leaseUntil: number): Promise<void> {
    if (tasks.length === 0) return;
    await this.available(() => RENEW.run(this.redis.command, [this.due], [leaseUntil, ...tasks.map((t) => dueMember(t.id, t.kind))]));
  }

  async progress(alert: string, kind: DueKind, done: Progress): Promise<void> {
    const users = done.redelivered ?? done.pushed ?? [];
    const field = done.redelivered ? 's:r' : kind === 'escalation' ? 's:p' : 's:o';
    await this.available(() => PROGRESS.run(this.redis.command, [this.meta(alert)], [field, users.join('\n'), done.notified ? '1' : '0']));
  }

  async complete(alert: string, kind: DueKind, ts: number): Promise<void> {
    await this.available(() => COMPLETE.run(this.redis.command, [this.meta(alert), this.due], [dueMember(alert, kind), ts, kind === 'escalation' ? 'e' : 'p']));
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
