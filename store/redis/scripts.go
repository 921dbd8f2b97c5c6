package redis

import goredis "github.com/redis/go-redis/v9"

// txnScript applies one transaction atomically: Redis runs a script to the
// end before serving anything else, and its effects reach the AOF as one
// MULTI/EXEC, so a crash leaves all of it or none.
//
// KEYS[1] revision counter, KEYS[2] event stream, KEYS[3] key index,
// KEYS[3+i] the hash of op i.
// ARGV[1] history (the stream's MAXLEN ~), then four per op: kind ('p',
// 'd', 'c'), expected version, key, value.
//
// It returns {1, revision} on success and {0, op index, version found} on a
// failed check. A transaction that changes nothing takes no revision. Every
// stream entry has the ID revision-seq and carries n, the number of events
// in its revision, so a reader can tell a complete revision from one whose
// head was trimmed away.
var txnScript = goredis.NewScript(`
local nops = #KEYS - 3
local present = {}
local events = 0
for i = 1, nops do
  local a = 1 + (i - 1) * 4
  local kind = ARGV[a + 1]
  local want = tonumber(ARGV[a + 2])
  local have = tonumber(redis.call('HGET', KEYS[3 + i], 'r') or '0')
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
local rev = redis.call('INCR', KEYS[1])
local revs = string.format('%d', rev)
local n = string.format('%d', events)
local seq = 0
for i = 1, nops do
  local a = 1 + (i - 1) * 4
  local kind, key = ARGV[a + 1], ARGV[a + 3]
  local id = revs .. '-' .. string.format('%d', seq)
  if kind == 'p' then
    redis.call('HSET', KEYS[3 + i], 'v', ARGV[a + 4], 'r', revs)
    redis.call('ZADD', KEYS[3], 0, key)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 't', 'p', 'k', key, 'v', ARGV[a + 4], 'n', n)
    seq = seq + 1
  elseif kind == 'd' and present[i] then
    redis.call('DEL', KEYS[3 + i])
    redis.call('ZREM', KEYS[3], key)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 't', 'd', 'k', key, 'n', n)
    seq = seq + 1
  end
end
return {1, rev}
`)

// listScript reads a key range and the revision in one atomic step, so the
// listing is exactly the state at that revision.
//
// KEYS[1] key index, KEYS[2] revision counter. ARGV[1], ARGV[2] the
// ZRANGEBYLEX bounds, ARGV[3] the hash key prefix.
// It returns {revision, key1, value1, version1, key2, ...}.
var listScript = goredis.NewScript(`
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2])
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
for _, k in ipairs(keys) do
  local h = redis.call('HMGET', ARGV[3] .. k, 'v', 'r')
  if h[2] then
    out[#out + 1] = k
    out[#out + 1] = h[1]
    out[#out + 1] = tonumber(h[2])
  end
end
return out
`)
