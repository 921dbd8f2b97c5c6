package liveness_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/liveness"
)

// TestWatcherSeesALapseWithinOnePoll: a node that stops renewing leaves the
// live set on the first poll after its TTL, and subscribers are woken.
func TestWatcherSeesALapseWithinOnePoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		mem := liveness.NewMemory(nil)
		require.NoError(t, mem.RenewNodeLease(ctx, "a", 3*time.Second))
		require.NoError(t, mem.RenewNodeLease(ctx, "b", 3*time.Second))
		w, err := liveness.NewWatcher(mem, liveness.Config{}, nil)
		require.NoError(t, err)
		assert.True(t, w.Live("a"), "before the first poll nothing is dropped")
		changes, stop := w.Subscribe()
		defer stop()
		go w.Run(ctx)
		<-w.Ready()
		<-changes
		assert.True(t, w.Live("a"))
		assert.True(t, w.Live("b"))
		assert.False(t, w.Live("c"))
		assert.True(t, w.Live(""), "a record without a node is not dropped")

		// a keeps renewing every second; b stops.
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second): // the renewal interval
				}
				_ = mem.RenewNodeLease(ctx, "a", 3*time.Second)
			}
		}()
		killed := time.Now()
		<-changes
		assert.LessOrEqual(t, time.Since(killed), 3*time.Second+liveness.DefaultPollInterval, "within the TTL and one poll")
		assert.False(t, w.Live("b"))
		assert.True(t, w.Live("a"))
		assert.Equal(t, 1, w.Set().Len())
	})
}

type failing struct{ err error }

func (f failing) LiveNodes(context.Context, int64, time.Duration) (int64, []string, bool, error) {
	return 0, nil, false, f.err
}

// TestWatcherKeepsTheLastSetWhenTheSourceFails: an outage of the source
// is not the nodes' death.
func TestWatcherKeepsTheLastSetWhenTheSourceFails(t *testing.T) {
	ctx := context.Background()
	mem := liveness.NewMemory(nil)
	require.NoError(t, mem.RenewNodeLease(ctx, "a", time.Minute))
	src := &switchable{Source: mem}
	w, err := liveness.NewWatcher(src, liveness.Config{}, nil)
	require.NoError(t, err)
	require.True(t, w.Poll(ctx))
	require.False(t, w.Poll(ctx), "an unchanged generation is no change")
	src.Source = failing{errors.New("connection refused")}
	assert.False(t, w.Poll(ctx))
	assert.True(t, w.Live("a"))
	assert.False(t, w.Live("b"))
}

type switchable struct{ liveness.Source }

func TestMemoryLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		mem := liveness.NewMemory(nil)
		ok, err := mem.AcquireLease(ctx, "leader", "cp1", 3*time.Second)
		require.NoError(t, err)
		assert.True(t, ok)
		ok, _ = mem.AcquireLease(ctx, "leader", "cp2", 3*time.Second)
		assert.False(t, ok, "held")
		time.Sleep(3 * time.Second) // the TTL in the bubble
		ok, _ = mem.AcquireLease(ctx, "leader", "cp2", 3*time.Second)
		assert.True(t, ok, "lapsed")
		require.NoError(t, mem.ReleaseLease(ctx, "leader", "cp1"))
		ok, _ = mem.AcquireLease(ctx, "leader", "cp1", 3*time.Second)
		assert.False(t, ok, "cp1 cannot release cp2's lease")
		require.NoError(t, mem.ReleaseLease(ctx, "leader", "cp2"))
		ok, _ = mem.AcquireLease(ctx, "leader", "cp1", 3*time.Second)
		assert.True(t, ok)

		require.NoError(t, mem.RenewNodeLease(ctx, "n", time.Second))
		gen, nodes, changed, err := mem.LiveNodes(ctx, -1, 0)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, []string{"n"}, nodes)
		require.NoError(t, mem.ReleaseNodeLease(ctx, "n"))
		_, nodes, changed, _ = mem.LiveNodes(ctx, gen, 0)
		assert.True(t, changed)
		assert.Empty(t, nodes)
	})
}
