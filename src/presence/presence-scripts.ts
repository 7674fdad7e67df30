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
 * node's own start, to clear what its previous incarnation left). Removes what the dead node held and returns
 * {1, group, member, owner, ...}; {0} when it is alive again or another node reaped it first.
 */
export const REAP = new Script(`${IS_LIVE}
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
