import { Script } from '../../redis/script';

/**
 * A history channel in Redis (names: channel-keys.ts, one hash slot per channel):
 *   live      pub/sub channel: every publication, as `{"v":1,"id","prev","epoch","ts","o","data"}`
 *   stream    the last HISTORY_SIZE publications, entry fields `p <payload json> ts <ms> o <node>`
 *             (other services may write `data <json>` [+ `roles`, `users`], see docs/cluster.md)
 *   meta      hash: `epoch` (changes when the history is lost) and `last` (the newest id seen)
 *   idem      string, PX 5 min: `<id> <epoch> <ts>` of the first publish with that Idempotency-Key
 *
 * `prev` lets every node prove it missed nothing: a publication whose `prev` is not the last id that node
 * delivered on C means something came in between (a cut link, another service's XADD), and the node reads the
 * stream from its last id before delivering it.
 */

/**
 * Reads or renews the epoch. A meta hash that remembers a stream which is gone means the history was lost. A
 * new epoch record of a channel with a TTL gets it at once: a subscriber that never publishes must not leave a
 * meta key that lives forever (docs/namespaces.md: no key of a namespace with a TTL does).
 */
const EPOCH = `
local function epoch_of(stream, meta, candidate, ttl)
  local exists = redis.call('EXISTS', stream)
  local got = redis.call('HMGET', meta, 'epoch', 'last')
  local epoch, last = got[1], got[2]
  if (not epoch) or (exists == 0 and last) then
    epoch = candidate
    redis.call('HSET', meta, 'epoch', epoch)
    redis.call('HDEL', meta, 'last')
    if ttl > 0 then redis.call('PEXPIRE', meta, ttl) end
    last = false
  end
  return epoch, exists, last
end
`;

/**
 * KEYS: stream, meta[, idempotency key]. ARGV: maxlen, epoch candidate, ttl ms (0: none), pub/sub channel
 * ('' : none), payload json, ts, origin, idempotency ttl ms, publish command (PUBLISH, or SPUBLISH for a shard
 * channel on Redis Cluster: it is in the keys' slot).
 * Returns {id, epoch, ts, duplicate(0|1)}.
 */
export const PUBLISH_HISTORY = new Script(`${EPOCH}
if KEYS[3] then
  local done = redis.call('GET', KEYS[3])
  if done then
    local id, epoch, ts = string.match(done, '^(%S+) (%S+) (%S+)$')
    return {id, epoch, ts, 1}
  end
end
local epoch, exists, last = epoch_of(KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[3]))
local prev = last or '0-0'
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'p', ARGV[5], 'ts', ARGV[6], 'o', ARGV[7])
redis.call('HSET', KEYS[2], 'last', id)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if ARGV[4] ~= '' then
  redis.call(ARGV[9], ARGV[4], '{"v":1,"id":"' .. id .. '","prev":"' .. prev .. '","epoch":"' .. epoch ..
    '","ts":' .. ARGV[6] .. ',"o":"' .. ARGV[7] .. '","data":' .. ARGV[5] .. '}')
end
if KEYS[3] then redis.call('SET', KEYS[3], id .. ' ' .. epoch .. ' ' .. ARGV[6], 'PX', ARGV[8]) end
return {id, epoch, ARGV[6], 0}
`);

/**
 * KEYS: the channel's meta key (it only names the slot, so Redis Cluster runs this where the channel lives)
 * [, idempotency key]. ARGV: pub/sub channel, envelope, idempotency ttl ms, ts, publish command.
 * Returns {ts, duplicate(0|1)}.
 */
export const PUBLISH_LIVE = new Script(`
if KEYS[2] then
  local done = redis.call('GET', KEYS[2])
  if done then return {done, 1} end
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
end
redis.call(ARGV[5], ARGV[1], ARGV[2])
return {ARGV[4], 0}
`);

/**
 * KEYS: stream, meta. ARGV: epoch candidate, the channel's history TTL in ms (0: none).
 * Returns {epoch, newest id ever added, oldest id still present ('' when empty), whether anything was ever
 * removed (1|0), max id removed by XDEL}. Redis 7.0 does not count trims in max-deleted-entry-id, so a trim is
 * seen as entries-added exceeding the length.
 */
export const POSITION = new Script(`${EPOCH}
local epoch, exists = epoch_of(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
local top, first, maxdel, removed = '0-0', '', '0-0', 0
if exists == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local length, added = 0, 0
  for i = 1, #info, 2 do
    local k = info[i]
    if k == 'last-generated-id' then top = info[i + 1]
    elseif k == 'max-deleted-entry-id' then maxdel = info[i + 1]
    elseif k == 'length' then length = info[i + 1]
    elseif k == 'entries-added' then added = info[i + 1]
    elseif k == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
  end
  if added > length then removed = 1 end
  redis.call('HSET', KEYS[2], 'last', top)
  -- A stream another service appended to without a TTL expires all the same (no key of a namespace with a TTL
  -- lives forever), and its meta with it; the TTL counts from when a gateway first looked at it.
  local ttl = tonumber(ARGV[2])
  if ttl > 0 then
    if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ttl) end
    if redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ttl) end
  end
end
return {epoch, top, first, removed, maxdel}
`);

/**
 * KEYS: meta. ARGV: the epoch the caller knows, a new epoch.
 * The history was rewound (a failover promoted a replica that had not received the newest entries): renews the
 * epoch unless another node already did. Returns the epoch now in force.
 */
export const RENEW_EPOCH = new Script(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch == ARGV[1] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
  return ARGV[2]
end
return epoch or ARGV[2]
`);
