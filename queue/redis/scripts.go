package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts take the key prefix as ARGV[1] and build the keys they touch
// from it (see doc.go for the layout): which function's keys a claim
// touches is known only once it has picked an invocation. Each checks
// everything before its first write, because Redis does not undo a script
// that fails halfway.

// luaDrop deletes one invocation, its index entries and its idempotency
// key (if that still names it).
const luaDrop = `
local function drop(p, id)
  local k = p .. 'i:' .. id
  local h = redis.call('HMGET', k, 'fn', 'idem')
  if h[1] then
    redis.call('ZREM', p .. 'due', id)
    redis.call('ZREM', p .. 'due:' .. h[1], id)
    redis.call('ZREM', p .. 'fn:' .. h[1], id)
    if h[2] and h[2] ~= '' and redis.call('GET', h[2]) == id then
      redis.call('DEL', h[2])
    end
  end
  redis.call('ZREM', p .. 'done', id)
  redis.call('DEL', k)
end
`

// enqueueScript: ARGV p, id, function, idempotency key name (or ""),
// retention ms, record JSON, updatedAt, due score, created score.
// Returns {0} stored, {1, hash} a dup, {2, function} the ID is another
// function's.
var enqueueScript = goredis.NewScript(`
local p, id, fn, ik = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if ik ~= '' then
  local old = redis.call('GET', ik)
  if old then
    local h = redis.call('HGETALL', p .. 'i:' .. old)
    if #h > 0 then return {1, h} end
  end
end
local k = p .. 'i:' .. id
local h = redis.call('HGETALL', k)
if #h > 0 then
  local owner = redis.call('HGET', k, 'fn')
  if owner ~= fn then return {2, owner} end
  return {1, h}
end
redis.call('HSET', k, 'rec', ARGV[6], 'fn', fn, 'status', 'Queued', 'attempts', '0',
  'by', '', 'until', '', 'updated', ARGV[7], 'idem', ik)
redis.call('ZADD', p .. 'due', ARGV[8], id)
redis.call('ZADD', p .. 'due:' .. fn, ARGV[8], id)
redis.call('ZADD', p .. 'fn:' .. fn, ARGV[9], id)
if ik ~= '' then
  redis.call('SET', ik, id, 'PX', ARGV[5])
end
return {0}
`)

// claimScript: ARGV p, now score, worker, claimedUntil, the claim's due
// score, updatedAt, then the functions to claim from (none: any). Returns
// the claimed invocation's hash, or nil when nothing is due.
var claimScript = goredis.NewScript(`
local p, now = ARGV[1], ARGV[2]
local bestId, bestScore
local function consider(key)
  local r = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #r > 0 then
    local s = tonumber(r[2])
    if bestId == nil or s < bestScore or (s == bestScore and r[1] < bestId) then
      bestId, bestScore = r[1], s
    end
  end
end
if #ARGV == 6 then
  consider(p .. 'due')
else
  for i = 7, #ARGV do consider(p .. 'due:' .. ARGV[i]) end
end
if bestId == nil then return false end
local k = p .. 'i:' .. bestId
local fn = redis.call('HGET', k, 'fn')
if not fn then
  return redis.error_reply('index names missing invocation ' .. bestId)
end
redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'status', 'Running', 'by', ARGV[3], 'until', ARGV[4], 'updated', ARGV[6])
redis.call('ZADD', p .. 'due', ARGV[5], bestId)
redis.call('ZADD', p .. 'due:' .. fn, ARGV[5], bestId)
return redis.call('HGETALL', k)
`)

// finishScript: ARGV p, id, function, worker, attempts, new status, record
// JSON, updatedAt, due score (a retry) or "", completed score (final) or
// "", retention ms. Returns 1, or 0 when the claim is lost.
var finishScript = goredis.NewScript(`
local p, id, fn = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'i:' .. id
local h = redis.call('HMGET', k, 'fn', 'status', 'by', 'attempts', 'idem')
if h[1] ~= fn or h[2] ~= 'Running' or h[3] ~= ARGV[4] or h[4] ~= ARGV[5] then
  return 0
end
redis.call('HSET', k, 'rec', ARGV[7], 'status', ARGV[6], 'by', '', 'until', '', 'updated', ARGV[8])
if ARGV[9] ~= '' then
  redis.call('ZADD', p .. 'due', ARGV[9], id)
  redis.call('ZADD', p .. 'due:' .. fn, ARGV[9], id)
else
  redis.call('ZREM', p .. 'due', id)
  redis.call('ZREM', p .. 'due:' .. fn, id)
  redis.call('ZADD', p .. 'done', ARGV[10], id)
end
if h[5] and h[5] ~= '' and redis.call('GET', h[5]) == id then
  redis.call('PEXPIRE', h[5], ARGV[11])
end
return 1
`)

// updateScript: ARGV p, id, function, record JSON, updatedAt. Returns 1,
// 0 when there is no such invocation, 2 when it is not final.
var updateScript = goredis.NewScript(`
local p, id, fn = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'i:' .. id
local h = redis.call('HMGET', k, 'fn', 'status')
if h[1] ~= fn then return 0 end
if h[2] ~= 'Succeeded' and h[2] ~= 'Failed' and h[2] ~= 'DeadLetter' then return 2 end
redis.call('HSET', k, 'rec', ARGV[4], 'updated', ARGV[5])
return 1
`)

// expireScript: ARGV p, before score (exclusive), batch. Returns how many
// went.
var expireScript = goredis.NewScript(luaDrop + `
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'done', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do drop(p, id) end
return #ids
`)

// deleteFunctionScript: ARGV p, function, batch. Returns how many went.
var deleteFunctionScript = goredis.NewScript(luaDrop + `
local p, fn = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGE', p .. 'fn:' .. fn, 0, tonumber(ARGV[3]) - 1)
for _, id in ipairs(ids) do drop(p, id) end
return #ids
`)
