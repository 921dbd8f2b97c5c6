package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
)

// TestSentinelFailover runs the store through Redis Sentinel with
// wait_replicas=1, kills the primary mid-stream of writes, and checks what
// the package promises: the store follows the promoted replica on its own,
// every write it acknowledged is there, and a watch opened before the
// failover goes on delivering, in order, from where it was.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	set := testenv.RedisSentinel(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, set.URL()+"?wait_replicas=1&wait_timeout=500ms", redis.Options{Prefix: "sentinel:"})
	require.NoError(t, err)
	defer s.Close()

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events, err := s.Watch(wctx, "k/", 0)
	require.NoError(t, err)

	acked := map[string]int64{} // key → revision its write was acknowledged at
	write := func(i int) error {
		key := fmt.Sprintf("k/%04d", i)
		// AnyVersion: a write refused for want of a replica may still have
		// landed on the primary, and is written again.
		rev, err := s.Txn(ctx, store.Put(key, []byte(key), store.AnyVersion))
		if err == nil {
			acked[key] = rev
		}
		return err
	}
	for i := range 100 {
		require.NoError(t, write(i))
	}

	old := set.PrimaryAddr(t)
	failedAt := time.Now()
	set.KillPrimary(t)
	require.NotEqual(t, old, set.PrimaryAddr(t))

	// Writes fail while there is no primary (retries are off, by design),
	// and then while the new primary has no replica to confirm them: WAIT
	// makes the store refuse to acknowledge what a second failover could
	// lose. The old primary comes back, Sentinel makes it a replica, and
	// writes are acknowledged again.
	set.Primary.Restart(t)
	failed := 0
	var lastErr error
	for i := 100; i < 200; i++ {
		for {
			if lastErr = write(i); lastErr == nil {
				break
			}
			failed++
			require.Less(t, time.Since(failedAt), 30*time.Second, "the store never wrote through the new primary: %v", lastErr)
			time.Sleep(20 * time.Millisecond) // polling a real failover, not timing a test
		}
	}
	t.Logf("failover: %d writes refused, writing again %s after the kill", failed, time.Since(failedAt).Round(time.Millisecond))

	kvs, _, err := s.List(ctx, "k/")
	require.NoError(t, err)
	require.Len(t, kvs, len(acked), "every acknowledged write survives the failover")
	for _, kv := range kvs {
		require.Equal(t, acked[kv.Key], kv.Version, "key %s", kv.Key)
	}

	// The watch may also deliver the writes that landed unacknowledged;
	// it must reach every acknowledged one, in revision order.
	reached := 0
	last := int64(0)
	deadline := time.After(30 * time.Second)
	for reached < len(acked) {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "watch closed")
			require.NoError(t, ev.Err)
			require.Greater(t, ev.KV.Version, last, "watch events in revision order")
			last = ev.KV.Version
			if acked[ev.KV.Key] == ev.KV.Version {
				reached++
			}
		case <-deadline:
			t.Fatalf("watch delivered %d of %d acknowledged writes across the failover", reached, len(acked))
		}
	}
}

// TestSentinelReconnect is the default, asynchronous mode: after the
// primary dies the store writes through the promoted replica as soon as
// Sentinel names it, without the old primary coming back. Writes
// acknowledged in the moments before the kill may not have reached the
// replica; the test reports how many did not, which is what
// wait_replicas=1 closes.
func TestSentinelReconnect(t *testing.T) {
	t.Parallel()
	set := testenv.RedisSentinel(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, set.URL(), redis.Options{Prefix: "sentinel:"})
	require.NoError(t, err)
	defer s.Close()

	for i := range 100 {
		_, err := s.Txn(ctx, store.Put(fmt.Sprintf("k/%04d", i), []byte("v"), store.MustNotExist))
		require.NoError(t, err)
	}
	killed := time.Now()
	set.KillPrimary(t)
	for {
		if _, err := s.Txn(ctx, store.Put("k/after", []byte("v"), store.AnyVersion)); err == nil {
			break
		}
		require.Less(t, time.Since(killed), 30*time.Second, "the store never reached the promoted replica")
		time.Sleep(20 * time.Millisecond) // polling a real failover, not timing a test
	}
	kvs, _, err := s.List(ctx, "k/")
	require.NoError(t, err)
	t.Logf("writing again %s after the kill; %d of 100 acknowledged writes lost", time.Since(killed).Round(time.Millisecond), 101-len(kvs))
}
