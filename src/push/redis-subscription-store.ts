import type { ModuleRef } from '@nestjs/core';
import { BrokerUnavailableError } from '../channels/broker';
import { RedisConnections } from '../redis/redis-connections';
import { Script } from '../redis/script';
import type { StoredSubscription } from './subscription';
import type { AddResult, PushSubscriptionStore } from './subscription-store';

/**
 * Cluster mode's push subscriptions, every key under the `{P}` hash tag (P = REDIS_PREFIX; one slot on Redis
 * Cluster, like presence and the webhook queue: a script moves an endpoint between two users' sets at once):
 *   {P}:push:subs         hash  endpoint -> {"u":user,"k":p256dh,"a":auth,"x":expirationTime|null}
 *   {P}:push:user:<sub>   zset  endpoint -> when it was registered (µs, Redis's clock: one order for every replica)
 * About 450 bytes per subscription (the endpoint twice, the keys once); a user has at most the cap.
 */

/** KEYS: subs. ARGV: prefix, endpoint, json, user, max. Returns {created, count, evicted}. */
const ADD = new Script(`
local base = ARGV[1] .. ':push:user:'
local mine = base .. ARGV[4]
local old = redis.call('HGET', KEYS[1], ARGV[2])
local created = 1
if old then
  created = 0
  local ok, previous = pcall(cjson.decode, old)
  if ok and type(previous) == 'table' and type(previous.u) == 'string' and previous.u ~= ARGV[4] then
    redis.call('ZREM', base .. previous.u, ARGV[2])
  end
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', mine, tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[2])
local count = redis.call('ZCARD', mine)
local evicted = 0
while count > tonumber(ARGV[5]) do
  local oldest = redis.call('ZRANGE', mine, 0, 0)[1]
  redis.call('ZREM', mine, oldest)
  redis.call('HDEL', KEYS[1], oldest)
  count = count - 1
  evicted = evicted + 1
end
return {created, count, evicted}
`);

/** KEYS: subs. ARGV: prefix, endpoint, user. Returns 1 when removed. */
const REMOVE = new Script(`
local json = redis.call('HGET', KEYS[1], ARGV[2])
if not json then return 0 end
local ok, current = pcall(cjson.decode, json)
if not ok or type(current) ~= 'table' or current.u ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':push:user:' .. ARGV[3], ARGV[2])
return 1
`);

/** KEYS: subs. ARGV: prefix, endpoint, p256dh. Removes it unless it was registered again with other keys. */
const DISCARD = new Script(`
local json = redis.call('HGET', KEYS[1], ARGV[2])
if not json then return 0 end
local ok, current = pcall(cjson.decode, json)
if ok and type(current) == 'table' and current.k ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
if ok and type(current) == 'table' and type(current.u) == 'string' then redis.call('ZREM', ARGV[1] .. ':push:user:' .. current.u, ARGV[2]) end
return 1
`);

/** KEYS: subs. ARGV: prefix, then users. Returns endpoint, json pairs (one round trip for any number of users). */
const FOR_USERS = new Script(`
local out = {}
for i = 2, #ARGV do
  for _, endpoint in ipairs(redis.call('ZRANGE', ARGV[1] .. ':push:user:' .. ARGV[i], 0, -1)) do
    local json = redis.call('HGET', KEYS[1], endpoint)
    if json then
      table.insert(out, endpoint)
      table.insert(out, json)
    end
  end
end
return out
`);

/** Users looked up per script call: a 1,000-user alert is a few calls of bounded size. */
const USERS_PER_CALL = 200;

interface Stored {
  u: string;
  k: string;
  a: string;
  x: number | null;
}

export class RedisSubscriptionStore implements PushSubscriptionStore {
  private readonly prefix: string;
  private readonly subs: string;
  private links: RedisConnections | undefined;

  constructor(
    private readonly resolve: () => RedisConnections,
    prefix: string,
  ) {
    this.prefix = `{${prefix}}`;
    this.subs = `${this.prefix}:push:subs`;
  }

  /** On the node's command link (RedisConnections, provided by ClusterModule), looked up at first use. */
  static fromModule(moduleRef: ModuleRef, prefix: string): RedisSubscriptionStore {
    return new RedisSubscriptionStore(() => moduleRef.get(RedisConnections, { strict: false }), prefix);
  }

  private get redis(): RedisConnections {
    return (this.links ??= this.resolve());
  }

  async add(subscription: StoredSubscription, max: number): Promise<AddResult> {
    const json = JSON.stringify({ u: subscription.user, k: subscription.p256dh, a: subscription.auth, x: subscription.expirationTime } satisfies Stored);
    const [created, count, evicted] = (await this.run(ADD, [this.prefix, subscription.endpoint, json, subscription.user, max])) as number[];
    return { created: created === 1, count, evicted };
  }

  async remove(user: string, endpoint: string): Promise<boolean> {
    return (await this.run(REMOVE, [this.prefix, endpoint, user])) === 1;
  }

  async discard(endpoint: string, p256dh: string): Promise<void> {
    await this.run(DISCARD, [this.prefix, endpoint, p256dh]);
  }

  async forUsers(users: readonly string[]): Promise<StoredSubscription[]> {
    const unique = [...new Set(users)];
    const found: StoredSubscription[] = [];
    for (let start = 0; start < unique.length; start += USERS_PER_CALL) {
      const reply = (await this.run(FOR_USERS, [this.prefix, ...unique.slice(start, start + USERS_PER_CALL)])) as string[];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        try {
          const stored = JSON.parse(reply[i + 1]) as Stored;
          found.push({ endpoint: reply[i], user: stored.u, p256dh: stored.k, auth: stored.a, expirationTime: stored.x ?? null });
        } catch {
          // Not written by us (someone edited the hash): it cannot be pushed to; the next 404/410 or DELETE clears it.
        }
      }
    }
    return found;
  }

  /** One script, or BrokerUnavailableError (503 at the door, a retried lookup for a push) while Redis is down. */
  private async run(script: Script, args: (string | number)[]): Promise<unknown> {
    if (!this.redis.isCommandReady()) throw new BrokerUnavailableError();
    try {
      return await script.run(this.redis.command, [this.subs], args);
    } catch {
      throw new BrokerUnavailableError();
    }
  }
}
