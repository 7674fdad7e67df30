import { Script } from '../redis/script';

/**
 * Presence is kept consistent by Lua scripts, each atomic on the Redis server. Keys under `{P}` (P, the prefix,
 * as a hash tag: one slot on Redis Cluster):
 *   P:node:<id>          liveness key, PX = PRESENCE_TTL_MS, refreshed every TTL/3
 *   P:nodes              set of node ids that may still hold registrations
 *   P:node:<id>:holds    set of what that node registered: "c\0<group>\0<member>" or "u\0<user>"
 *   P:claims:<group>     hash member -> "<node>|<connection>"
 *   P:conns:<user>       hash node -> open connections of that user on that node
 *   P:shared:<group>\0<user>  set of that user's shared member keys in the group (`<user>\x1f<connection>`):
 *                        the first SADD and the last SREM decide join and leave; deleted by Redis when empty
 *   P:hold:<channel>\0<user>  set of the user's holds on the channel's presence, one per connection
 *                        (`<node>|<connection>`); its first SADD and last SREM decide presence.joined / left
 *   P:users:<channel>    set of the users holding the channel or within PRESENCE_GRACE_MS of leaving it: its
 *                        first SADD is channel.occupied, the SREM that empties it channel.vacated
 *   P:leaving            sorted set "<channel>\0<user>" -> when the leave is due (ms, Redis clock): a hold taken
 *                        again before then removes the entry (a return, not a join); SWEEP pops the due ones
 *   P:node:<id>:holds also lists "h\0<channel>\0<user>\0<token>" for each presence hold of that node
 * Scripts read other nodes' liveness keys by name: allowed on Redis Cluster because they share the slot.
 */

const IS_LIVE = `
local function live(prefix, node)
  return redis.call('EXISTS', prefix .. ':node:' .. node) == 1
end
local function node_of(owner)
  return string.match(owner, '^(.*)|[^|]*$')
end
`;

/**
 * Presence holds (see the layout above). hold(): 0 nothing new (another hold of the user, or a return within
 * the grace), 1 joined, 2 joined an empty channel (occupied). unhold(): 0 still held elsewhere (or not ours),
 * else the ms until the leave is due, the grace (at least 1, so 0 means "no leave").
 */
const HOLDS = `
local function hold(prefix, channel, user, token)
  local key = prefix .. ':hold:' .. channel .. '\\0' .. user
  if redis.call('SADD', key, token) == 0 or redis.call('SCARD', key) > 1 then return 0 end
  if redis.call('ZREM', prefix .. ':leaving', channel .. '\\0' .. user) == 1 then return 0 end
  local users = prefix .. ':users:' .. channel
  if redis.call('SADD', users, user) == 0 then return 0 end
  if redis.call('SCARD', users) == 1 then return 2 end
  return 1
end
local function unhold(prefix, channel, user, token, grace)
  local key = prefix .. ':hold:' .. channel .. '\\0' .. user
  if redis.call('SREM', key, token) == 0 or redis.call('SCARD', key) > 0 then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', prefix .. ':leaving', now + grace, channel .. '\\0' .. user)
  return math.max(grace, 1)
end
`;

/** KEYS: my liveness key, nodes set. ARGV: ttl ms, my id, prefix. Returns the ids of nodes that are not live. */
export const HEARTBEAT = new Script(`${IS_LIVE}
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not live(ARGV[3], node) then table.insert(dead, node) end
end
return dead
`);

/**
 * KEYS: dead node's holds set, nodes set, dead node's liveness key. ARGV: dead id, prefix, force ("1" at a
 * node's own start, to clear what its previous incarnation left), grace ms. Removes what the dead node held and
 * returns {1, group, member, owner, ...}; {0} when it is alive again or another node reaped it first. Its
 * presence holds end as any other (their leaves are due after the grace, popped by SWEEP).
 */
export const REAP = new Script(`${IS_LIVE}${HOLDS}
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return {0} end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 and ARGV[3] ~= '1' then return {0} end
local gone = {1}
local mine = ARGV[1] .. '|'
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local kind = string.sub(entry, 1, 1)
  local rest = string.sub(entry, 3)
  if kind == 'c' then
    local sep = string.find(rest, '\\0', 1, true)
    local group, member = string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1)
    local key = ARGV[2] .. ':claims:' .. group
    local owner = redis.call('HGET', key, member)
    if owner and string.sub(owner, 1, #mine) == mine then
      redis.call('HDEL', key, member)
      local user = string.match(member, '^(.*)\\31[^\\31]*$')
      if user then redis.call('SREM', ARGV[2] .. ':shared:' .. group .. '\\0' .. user, member) end
      table.insert(gone, group)
      table.insert(gone, member)
      table.insert(gone, owner)
    end
  elseif kind == 'u' then
    redis.call('HDEL', ARGV[2] .. ':conns:' .. rest, ARGV[1])
  elseif kind == 'h' then
    local a = string.find(rest, '\\0', 1, true)
    local b = string.find(rest, '\\0', a + 1, true)
    unhold(ARGV[2], string.sub(rest, 1, a - 1), string.sub(rest, a + 1, b - 1), string.sub(rest, b + 1), tonumber(ARGV[4]))
  end
end
redis.call('DEL', KEYS[1])
return gone
`);

/** KEYS: claims hash, my holds set. ARGV: member, owner, prefix, holds entry. Returns nil or the live holder. */
export const CLAIM = new Script(`${IS_LIVE}
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= ARGV[2] then
  local node = node_of(current)
  if node and live(ARGV[3], node) then return current end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return false
`);

/** KEYS: claims hash, my holds set. ARGV: member, owner, holds entry. Deletes only if still ours. */
export const RELEASE = new Script(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
`);

/**
 * KEYS: claims hash, my holds set, the user's shared set. ARGV: member, owner, holds entry, user. A shared
 * membership: returns 1 when no other connection of the user (nor its exclusive claim) holds the group.
 */
export const SHARE = new Script(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[3]) == 1 and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then return 1 end
return 0
`);

/** KEYS, ARGV: as SHARE. Ends it (if still ours); returns 1 when it was the user's last hold on the group. */
export const UNSHARE = new Script(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[3]) == 0 and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then return 1 end
return 0
`);

/** KEYS: claims hash. ARGV: prefix. Members whose holder's node is live: {member, owner, ...}. */
export const MEMBERS = new Script(`${IS_LIVE}
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local node = node_of(all[i + 1])
  if node and live(ARGV[1], node) then
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
return out
`);

/**
 * KEYS: user's conns hash, my holds set. ARGV: my id, limit, prefix, holds entry. Counts the user's open
 * connections on live nodes (dropping dead nodes' counts); below the limit adds one here.
 * Returns {1, open after} or {0, open}.
 */
export const ACQUIRE_SLOT = new Script(`${IS_LIVE}
local all = redis.call('HGETALL', KEYS[1])
local open = 0
for i = 1, #all, 2 do
  if all[i] == ARGV[1] or live(ARGV[3], all[i]) then
    open = open + tonumber(all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if open >= tonumber(ARGV[2]) then return {0, open} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[4])
return {1, open + 1}
`);

/** KEYS: user's conns hash, my holds set. ARGV: my id, count on this node, holds entry. Sets it (0: removes). */
export const SET_SLOTS = new Script(`
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[3])
end
return 1
`);

/** KEYS: user's conns hash, my holds set. ARGV: my id, holds entry. One connection fewer here. */
export const RELEASE_SLOT = new Script(`
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return left
`);

/** KEYS: my holds set. ARGV: prefix, channel, user, token, holds entry. See hold() above. */
export const HOLD = new Script(`${HOLDS}
redis.call('SADD', KEYS[1], ARGV[5])
return hold(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`);

/** KEYS: my holds set. ARGV: prefix, channel, user, token, holds entry, grace ms. See unhold() above. */
export const UNHOLD = new Script(`${HOLDS}
redis.call('SREM', KEYS[1], ARGV[5])
return unhold(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[6]))
`);

/**
 * KEYS: leaving sorted set. ARGV: prefix, max. Pops the leaves that are due (Redis clock) and ends each user's
 * place in its channel: {channel, user, vacated (1: the channel's last), ...}. Atomic, so each leave is popped by
 * exactly one replica however many sweep at once.
 */
export const SWEEP = new Script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[1], entry)
  local sep = string.find(entry, '\\0', 1, true)
  local channel, user = string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1)
  local users = ARGV[1] .. ':users:' .. channel
  redis.call('SREM', users, user)
  table.insert(out, channel)
  table.insert(out, user)
  table.insert(out, redis.call('EXISTS', users) == 0 and 1 or 0)
end
return out
`);
