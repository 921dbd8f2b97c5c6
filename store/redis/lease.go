package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Leases live beside the store's keys, outside the store: they change every
// second, carry a deadline instead of a version, and must not flood the
// event stream that every watcher reads. Every deadline is on Redis's
// clock (TIME inside the scripts), so no two processes' clocks need agree.
//
//   - P + "nodeleases"       — a sorted set: node → lease deadline in ms.
//   - P + "nodeleases:gen"   — the live set's generation: it moves when a
//     node joins or a lease lapses, so a poller that has seen it gets a
//     one-integer reply.
//   - P + "nodeleases:swept" — when a poll last looked, about to the second.
//   - P + "lease:" + name    — a named lease (a leader's): SET PX.
//
// The node leases are one sorted set rather than a key each with a TTL so
// that the live set of a thousand nodes is one command, not a SCAN.

// renewNodeScript: KEYS[1] leases, KEYS[2] generation; ARGV[1] node,
// ARGV[2] ttl ms. A node that joins, or renews a lease that had lapsed
// unseen, moves the generation.
var renewNodeScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if (not old) or tonumber(old) < now then
  redis.call('INCR', KEYS[2])
end
return 1
`)

// releaseNodeScript: KEYS[1] leases, KEYS[2] generation; ARGV[1] node.
var releaseNodeScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[2])
end
return 1
`)

// liveNodesScript: KEYS[1] leases, KEYS[2] generation, KEYS[3] swept;
// ARGV[1] the generation the caller has, ARGV[2] grace ms.
//
// It removes the lapsed leases, then returns {generation} if the caller
// already has it and {generation, nodes} otherwise. If nobody has polled
// for longer than the grace, Redis itself was down or unreachable and no
// node could renew: every lease gets the grace before any is called lapsed,
// so a Redis restart does not empty every router's table.
var liveNodesScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[2])
local swept = tonumber(redis.call('GET', KEYS[3]) or '0')
if now - swept >= 1000 then
  redis.call('SET', KEYS[3], now)
end
if swept > 0 and now - swept > grace then
  local short = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + grace)
  for _, node in ipairs(short) do
    redis.call('ZADD', KEYS[1], now + grace, node)
  end
end
if redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) > 0 then
  redis.call('INCR', KEYS[2])
end
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
if gen == tonumber(ARGV[1]) then
  return {gen}
end
return {gen, redis.call('ZRANGE', KEYS[1], 0, -1)}
`)

// acquireScript: KEYS[1] the lease; ARGV[1] holder, ARGV[2] ttl ms. It
// takes a free lease or renews the holder's own.
var acquireScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// releaseScript: KEYS[1] the lease; ARGV[1] holder.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
`)

func (s *Store) nodeLeaseKeys() []string {
	return []string{s.prefix + "nodeleases", s.prefix + "nodeleases:gen", s.prefix + "nodeleases:swept"}
}

// RenewNodeLease extends node's lease to ttl from now.
func (s *Store) RenewNodeLease(ctx context.Context, node string, ttl time.Duration) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := renewNodeScript.Run(ctx, s.client, s.nodeLeaseKeys()[:2], node, ttl.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("renew node lease %s: %w", node, s.mapErr(err))
	}
	return nil
}

// ReleaseNodeLease ends node's lease now, as a node shutting down cleanly
// does: its endpoints leave the routers at once.
func (s *Store) ReleaseNodeLease(ctx context.Context, node string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := releaseNodeScript.Run(ctx, s.client, s.nodeLeaseKeys()[:2], node).Err(); err != nil {
		return fmt.Errorf("release node lease %s: %w", node, s.mapErr(err))
	}
	return nil
}

// LiveNodes returns the generation of the live set and, if it is not
// known, the nodes whose lease holds, in name order; changed says whether
// nodes is the set (false: known is current). grace is how long leases
// last past an outage of Redis (see liveNodesScript); about one lease TTL.
func (s *Store) LiveNodes(ctx context.Context, known int64, grace time.Duration) (gen int64, nodes []string, changed bool, err error) {
	if err := s.usable(ctx); err != nil {
		return 0, nil, false, err
	}
	res, err := liveNodesScript.Run(ctx, s.client, s.nodeLeaseKeys(), known, grace.Milliseconds()).Slice()
	if err != nil {
		return 0, nil, false, fmt.Errorf("live nodes: %w", s.mapErr(err))
	}
	if len(res) == 0 {
		return 0, nil, false, fmt.Errorf("live nodes: empty reply")
	}
	gen, ok := res[0].(int64)
	if !ok {
		return 0, nil, false, fmt.Errorf("live nodes: malformed generation %v", res[0])
	}
	if len(res) == 1 {
		return gen, nil, false, nil
	}
	list, ok := res[1].([]any)
	if !ok {
		return 0, nil, false, fmt.Errorf("live nodes: malformed list %v", res[1])
	}
	nodes = make([]string, 0, len(list))
	for _, n := range list {
		name, ok := n.(string)
		if !ok {
			return 0, nil, false, fmt.Errorf("live nodes: malformed node %v", n)
		}
		nodes = append(nodes, name)
	}
	slices.Sort(nodes) // Redis orders them by deadline
	return gen, nodes, true, nil
}

// AcquireLease takes the lease name for holder for ttl if it is free, or
// renews it if holder has it; it reports whether holder has it now.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := s.usable(ctx); err != nil {
		return false, err
	}
	n, err := acquireScript.Run(ctx, s.client, []string{s.prefix + "lease:" + name}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, s.mapErr(err))
	}
	return n == 1, nil
}

// ReleaseLease gives the lease name up if holder has it, so another may
// take it at once instead of after its TTL.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, s.client, []string{s.prefix + "lease:" + name}, holder).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", name, s.mapErr(err))
	}
	return nil
}
