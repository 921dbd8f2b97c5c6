package autoscaler

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
)

// assignedNode is the one node holding rev's replica.
func assignedNode(t *testing.T, s store.Store, rev string, nodes ...string) string {
	t.Helper()
	var on []string
	for _, n := range nodes {
		if a, ok := getAssignment(t, s, n, rev); ok && a.Replicas > 0 {
			on = append(on, n)
		}
	}
	require.Len(t, on, 1, "one node holds the replica")
	return on[0]
}

// TestRunnerMovesReplicasOffALapsedLeaseAtOnce: placement believes the
// node leases, not the records' heartbeats, and a lapse wakes the runner:
// the dead node's replica is on a live node within one poll, with the
// runner's own tick an hour away.
func TestRunnerMovesReplicasOffALapsedLeaseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := openStore(t)
		rev := putRevision(t, s, "hello", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		putNode(t, s, "n1")
		putNode(t, s, "n2")
		leases := liveness.NewMemory(nil)
		for _, n := range []string{"n1", "n2"} {
			require.NoError(t, leases.RenewNodeLease(ctx, n, 3*time.Second))
		}
		w, err := liveness.NewWatcher(leases, liveness.Config{}, nil)
		require.NoError(t, err)
		go w.Run(ctx)
		r, err := NewRunner(RunnerConfig{Tick: time.Hour}, RunnerDeps{Store: s, Liveness: w})
		require.NoError(t, err)
		runRunner(t, r)
		synctest.Wait()

		require.NoError(t, r.Activate(ctx, rev))
		dead := assignedNode(t, s, rev, "n1", "n2")
		alive := map[string]string{"n1": "n2", "n2": "n1"}[dead]
		go func() { // the survivor renews; the dead node does not
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second): // the renewal interval
				}
				_ = leases.RenewNodeLease(ctx, alive, 3*time.Second)
			}
		}()
		lapsed := time.Now()
		for w.Live(dead) {
			time.Sleep(liveness.DefaultPollInterval) // the watcher's poll interval in the bubble
		}
		synctest.Wait()
		assert.Equal(t, alive, assignedNode(t, s, rev, "n1", "n2"), "the replica moved")
		assert.LessOrEqual(t, time.Since(lapsed), 3*time.Second+liveness.DefaultPollInterval)
	})
}

// TestStandbyRunnerWritesOnlyWhileItLeads: a standby runner takes reports
// but writes nothing until Lead, decides at once when it starts leading,
// and writes through the store Lead gave it.
func TestStandbyRunnerWritesOnlyWhileItLeads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := openStore(t)
		rev := putRevision(t, s, "hello", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(1) })
		putNode(t, s, "n1")
		r, err := NewRunner(RunnerConfig{Tick: time.Hour}, RunnerDeps{Store: s, Standby: true})
		require.NoError(t, err)
		runRunner(t, r)
		synctest.Wait()
		require.NoError(t, r.Activate(ctx, rev))
		require.NoError(t, r.Tick(ctx))
		_, ok := getScale(t, s, rev)
		assert.False(t, ok, "a runner that does not lead writes nothing")

		first, err := s.Txn(ctx, store.Put("leader/controlplane", []byte("me"), store.AnyVersion))
		require.NoError(t, err)
		lctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Lead(lctx, store.Fenced(s, "leader/controlplane", first)) }()
		synctest.Wait()
		sc, ok := getScale(t, s, rev)
		require.True(t, ok, "the new leader decides at once")
		assert.Equal(t, 1, sc.Desired)
		stop()
		require.NoError(t, <-done)

		// A deposed leader's fenced store refuses; a runner that stopped
		// leading does not even try.
		_, err = s.Txn(ctx, store.Put("leader/controlplane", []byte("other"), store.AnyVersion))
		require.NoError(t, err)
		_, err = store.Fenced(s, "leader/controlplane", first).Txn(ctx, store.Delete(store.ScaleKey(rev), store.AnyVersion))
		assert.ErrorIs(t, err, store.ErrConflict)
		assert.Nil(t, r.writer())
	})
}
