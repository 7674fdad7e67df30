import type { ModuleRef } from '@nestjs/core';
import { RedisConnections } from '../redis/redis-connections';
import { Script } from '../redis/script';
import type { ClaimedEvent, QueuedEvent, WebhookQueue } from './webhook-queue';

/**
 * Cluster mode's webhook queue, every key under the `{P}` hash tag (P = REDIS_PREFIX; one slot on Redis
 * Cluster, like presence: the scripts touch all three keys at once):
 *   {P}:webhooks:due       zset  webhook-id -> due time (ms since the epoch)
 *   {P}:webhooks:events    hash  webhook-id -> {"type","body","queuedAt"} (written once)
 *   {P}:webhooks:attempts  hash  webhook-id -> failed attempts (absent: none yet)
 * A claim moves an event's due time forward by a lease (30 s, longer than the 10 s request timeout), so the
 * event belongs to one replica while it is tried; if that replica dies (SIGKILL), the event is due again when
 * the lease ends and another replica takes it. Nothing is lost, and nothing is sent twice unless a replica
 * dies (or stalls past the lease) between the receiver's 2xx and its removal: at least once.
 */

/** KEYS: due, events. ARGV: max, now, then id, json pairs. Returns how many were dropped (queue at max). */
const ADD = new Script(`
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local dropped = 0
for i = 3, #ARGV, 2 do
  if room > 0 then
    if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[i]) == 1 then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
      room = room - 1
    end
  else
    dropped = dropped + 1
  end
end
return dropped
`);

/** KEYS: due, events, attempts. ARGV: now, lease until, count. Returns id, json, attempts triples. */
const CLAIM = new Script(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    table.insert(out, id)
    table.insert(out, json)
    table.insert(out, redis.call('HGET', KEYS[3], id) or '0')
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`);

/** KEYS: due, events, attempts. ARGV: id, lease held, new due, attempts. Applies only while the lease holds. */
const RESCHEDULE = new Script(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
`);

/** KEYS: due, events, attempts. ARGV: id. */
const REMOVE = new Script(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`);

/** Events written per ADD: one script call of a few hundred KB at most, so Redis never stalls on one. */
const ADD_BATCH = 500;

export class RedisWebhookQueue implements WebhookQueue {
  private readonly keys: [due: string, events: string, attempts: string];
  private links: RedisConnections | undefined;

  constructor(
    private readonly resolve: () => RedisConnections,
    prefix: string,
  ) {
    const base = `{${prefix}}:webhooks`;
    this.keys = [`${base}:due`, `${base}:events`, `${base}:attempts`];
  }

  /**
   * The queue of cluster mode, on the node's command link (RedisConnections, provided by ClusterModule). Looked
   * up at first use: EventsModule may be built before ClusterModule's providers, and events/ names no Redis type
   * outside this file.
   */
  static fromModule(moduleRef: ModuleRef, prefix: string): RedisWebhookQueue {
    return new RedisWebhookQueue(() => moduleRef.get(RedisConnections, { strict: false }), prefix);
  }

  private get redis(): RedisConnections {
    return (this.links ??= this.resolve());
  }

  /** Whether the command link is up: writes are not even tried while it is not. */
  ready(): boolean {
    return this.redis.isCommandReady();
  }

  /** Called each time Redis is back after an outage (the caller flushes what it buffered meanwhile). */
  onReady(listener: () => void): () => void {
    return this.redis.onReady(listener);
  }

  async add(events: readonly QueuedEvent[], max: number): Promise<number> {
    let dropped = 0;
    const now = Date.now();
    for (let start = 0; start < events.length; start += ADD_BATCH) {
      const args: (string | number)[] = [max, now];
      for (const event of events.slice(start, start + ADD_BATCH)) {
        args.push(event.id, JSON.stringify({ type: event.type, body: event.body, queuedAt: event.queuedAt }));
      }
      dropped += Number(await ADD.run(this.redis.command, this.keys.slice(0, 2), args));
    }
    return dropped;
  }

  async claim(now: number, count: number, leaseMs: number): Promise<ClaimedEvent[]> {
    const lease = now + leaseMs;
    const reply = (await CLAIM.run(this.redis.command, this.keys, [now, lease, count])) as string[];
    const claimed: ClaimedEvent[] = [];
    for (let i = 0; i < reply.length; i += 3) {
      try {
        const stored = JSON.parse(reply[i + 1]) as Omit<QueuedEvent, 'id'>;
        claimed.push({ id: reply[i], type: stored.type, body: stored.body, queuedAt: stored.queuedAt, attempts: Number(reply[i + 2]), lease });
      } catch {
        // Not written by us (someone edited the hash): it can never be sent; take it out rather than claim it forever.
        await this.remove(reply[i]);
      }
    }
    return claimed;
  }

  async remove(id: string): Promise<void> {
    await REMOVE.run(this.redis.command, this.keys, [id]);
  }

  async reschedule(event: ClaimedEvent, due: number): Promise<void> {
    await RESCHEDULE.run(this.redis.command, this.keys, [event.id, event.lease, due, event.attempts + 1]);
  }

  async size(): Promise<number> {
    return this.redis.command.zcard(this.keys[0]);
  }
}
