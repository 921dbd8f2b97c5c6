package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store/redis"
)

func TestNodeLeases(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, srv.URL(), redis.Options{Prefix: "leases:"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	const grace = 3 * time.Second

	gen, nodes, changed, err := s.LiveNodes(ctx, -1, grace)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Empty(t, nodes)

	require.NoError(t, s.RenewNodeLease(ctx, "b", time.Minute))
	require.NoError(t, s.RenewNodeLease(ctx, "a", time.Minute))
	gen2, nodes, changed, err := s.LiveNodes(ctx, gen, grace)
	require.NoError(t, err)
	assert.True(t, changed, "joins move the generation")
	assert.Equal(t, []string{"a", "b"}, nodes)

	require.NoError(t, s.RenewNodeLease(ctx, "a", time.Minute))
	gen3, nodes, changed, err := s.LiveNodes(ctx, gen2, grace)
	require.NoError(t, err)
	assert.False(t, changed, "a renewal is not a change: the poll's reply is one integer")
	assert.Nil(t, nodes)
	assert.Equal(t, gen2, gen3)

	require.NoError(t, s.ReleaseNodeLease(ctx, "b"))
	_, nodes, changed, err = s.LiveNodes(ctx, gen3, grace)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, []string{"a"}, nodes, "a released lease ends at once")

	// A lapsed lease leaves the set on the first poll after its deadline.
	require.NoError(t, s.RenewNodeLease(ctx, "c", 50*time.Millisecond))
	require.Eventually(t, func() bool {
		_, nodes, _, err := s.LiveNodes(ctx, -1, grace)
		return err == nil && len(nodes) == 1 && nodes[0] == "a"
	}, 5*time.Second, 10*time.Millisecond, "c's lease lapses")
}

// TestNodeLeasesSurviveRedisOutage: when nobody could poll for longer than
// the grace (Redis was down), every lease gets the grace before any lapses.
func TestNodeLeasesSurviveRedisOutage(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, srv.URL(), redis.Options{Prefix: "outage:"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { raw.Close() })

	require.NoError(t, s.RenewNodeLease(ctx, "a", time.Minute))
	_, nodes, _, err := s.LiveNodes(ctx, -1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, nodes)
	// As if Redis had been down for ten minutes: the lease lapsed and the
	// last poll is as old.
	past := time.Now().Add(-10 * time.Minute).UnixMilli()
	require.NoError(t, raw.ZAdd(ctx, "outage:nodeleases", goredis.Z{Score: float64(past), Member: "a"}).Err())
	require.NoError(t, raw.Set(ctx, "outage:nodeleases:swept", past, 0).Err())

	_, nodes, _, err = s.LiveNodes(ctx, -1, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, nodes, "the outage is not the node's fault")
	score, err := raw.ZScore(ctx, "outage:nodeleases", "a").Result()
	require.NoError(t, err)
	assert.Greater(t, score, float64(time.Now().Add(50*time.Second).UnixMilli()), "a has the grace to renew")
}

func TestLeaderLease(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, srv.URL(), redis.Options{Prefix: "leader:"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	ok, err := s.AcquireLease(ctx, "controlplane", "cp1", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "a free lease is taken")
	ok, err = s.AcquireLease(ctx, "controlplane", "cp2", time.Minute)
	require.NoError(t, err)
	assert.False(t, ok, "a held lease is not")
	ok, err = s.AcquireLease(ctx, "controlplane", "cp1", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "the holder renews")
	require.NoError(t, s.ReleaseLease(ctx, "controlplane", "cp2"), "releasing another's lease is a no-op")
	ok, err = s.AcquireLease(ctx, "controlplane", "cp2", time.Minute)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, s.ReleaseLease(ctx, "controlplane", "cp1"))
	ok, err = s.AcquireLease(ctx, "controlplane", "cp2", 50*time.Millisecond)
	require.NoError(t, err)
	assert.True(t, ok, "a released lease is free at once")
	require.Eventually(t, func() bool {
		ok, err := s.AcquireLease(ctx, "controlplane", "cp1", time.Minute)
		return err == nil && ok
	}, 5*time.Second, 10*time.Millisecond, "a lapsed lease is free")
}
