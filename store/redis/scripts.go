package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts take their keys in this order, so KEYS[i] means the same
// thing in each.
//
//	KEYS[1] revision counter   KEYS[2] event stream   KEYS[3] key index
//	KEYS[4] values hash        KEYS[5] versions hash
//	KEYS[6] node streams' name prefix (shard.go)   KEYS[7] each node stream's last ID

// txnScript applies one transaction atomically: Redis runs a script to the
// end before serving anything else, and its effects reach the AOF as one
// MULTI/EXEC, so a crash leaves all of it or none.
//
// ARGV[1] history (the stream's MAXLEN ~), then five per op: kind ('p',
// 'd', 'c'), expected version, key, value, and the key's node stream
// (shard.go; empty for most keys), which gets a copy of its event.
//
// It returns {1, revision} on success and {0, op index, version found} on a
// failed check. A transaction that changes nothing takes no revision. Every
// stream entry has the ID revision-seq and carries n, the number of events
// in its revision, so a reader can tell a complete revision from one whose
// head was trimmed away.
var txnScript = goredis.NewScript(`
local nops = (#ARGV - 1) / 5
local present = {}
local events = 0
for i = 1, nops do
  local a = 1 + (i - 1) * 5
  local kind, want, key = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local have = tonumber(redis.call('HGET', KEYS[5], key) or '0')
  if want ~= -1 and want ~= have then
    return {0, i, have}
  end
  present[i] = have ~= 0
  if kind == 'p' or (kind == 'd' and present[i]) then
    events = events + 1
  end
end
if events == 0 then
  return {1, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
-- Nothing is written before the first XADD, the one command that can fail
-- on a sound store (its ID must exceed the stream's last), because Redis
-- does not roll a script back: a failure there leaves no trace.
local rev = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local revs = string.format('%d', rev)
local n = string.format('%d', events)
local seq = 0
-- A node stream's entry follows its cluster one, so the cluster XADD,
-- which would fail on a bad ID first, stays the first write.
local function shard(s, id, ...)
  if s == '' then return end
  local before = redis.call('HGET', KEYS[7], s) or '0-0'
  redis.call('XADD', KEYS[6] .. s, 'MAXLEN', '~', ARGV[1], id, 'b', before, ...)
  redis.call('HSET', KEYS[7], s, id)
end
for i = 1, nops do
  local a = 1 + (i - 1) * 5
  local kind, key, value, sh = ARGV[a + 1], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local id = revs .. '-' .. string.format('%d', seq)
  if kind == 'p' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 't', 'p', 'k', key, 'v', value, 'n', n)
    shard(sh, id, 't', 'p', 'k', key, 'v', value)
    redis.call('HSET', KEYS[4], key, value)
    redis.call('HSET', KEYS[5], key, revs)
    redis.call('ZADD', KEYS[3], 0, key)
    seq = seq + 1
  elseif kind == 'd' and present[i] then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 't', 'd', 'k', key, 'n', n)
    shard(sh, id, 't', 'd', 'k', key)
    redis.call('HDEL', KEYS[4], key)
    redis.call('HDEL', KEYS[5], key)
    redis.call('ZREM', KEYS[3], key)
    seq = seq + 1
  end
end
redis.call('SET', KEYS[1], revs)
return {1, rev}
`)

// listScript reads a key range and the revision in one atomic step, so the
// listing is exactly the state at that revision. It reads the hashes with
// one HMGET per thousand keys: a command per key would hold Redis (which
// serves no one else meanwhile) several times longer.
//
// ARGV[1], ARGV[2] are the ZRANGEBYLEX bounds. It returns
// {revision, keys, values, versions}.
var listScript = goredis.NewScript(`
local keys = redis.call('ZRANGEBYLEX', KEYS[3], ARGV[1], ARGV[2])
local rev = tonumber(redis.call('GET', KEYS[1]) or '0')
local values, versions = {}, {}
for i = 1, #keys, 1000 do
  local last = math.min(i + 999, #keys)
  local vals = redis.call('HMGET', KEYS[4], unpack(keys, i, last))
  local vers = redis.call('HMGET', KEYS[5], unpack(keys, i, last))
  for j = 1, #vals do
    values[i + j - 1] = vals[j]
    versions[i + j - 1] = tonumber(vers[j]) or 0
  end
end
return {rev, keys, values, versions}
`)

// getScript reads a key's value and version together.
//
// ARGV[1] is the key. It returns {value, version}, both nil if absent.
var getScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[4], ARGV[1])
if not v then return {} end
return {v, tonumber(redis.call('HGET', KEYS[5], ARGV[1]))}
`)
