package nodeagent_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
)

// TestReturningNodeStopsWhatIsNoLongerWanted: an agent that comes back
// after its replicas were placed elsewhere, or after their revision was
// deleted, stops them instead of adopting them, and publishes no endpoint
// for them: it never serves a revision deleted while it was away.
func TestReturningNodeStopsWhatIsNoLongerWanted(t *testing.T) {
	tests := []struct {
		name  string
		while func(e *env, rev string)
	}{
		{"placed elsewhere", func(e *env, rev string) { e.unassign(rev) }},
		{"revision deleted", func(e *env, rev string) {
			_, err := e.store.Txn(context.Background(), store.Delete(store.RevisionKey("hello", rev), store.AnyVersion))
			require.NoError(t, err)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, nil)
				rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
				e.assign("hello", rev, 2, 0)
				e.waitEndpoints(rev, 2)
				before := e.waitContainers(3)

				e.stop() // the node is lost; its containers live on
				tc.while(e, rev)
				calls := len(e.rt.Calls())
				e.start()
				e.waitContainers(0)
				assert.Empty(t, e.endpoints(rev), "nothing of it is served")
				recs, _, err := store.ListJSON[store.Replica](context.Background(), e.store, store.ReplicasPrefix(node))
				require.NoError(t, err)
				assert.Empty(t, recs)
				after := e.rt.Calls()[calls:]
				for id := range before {
					assert.Contains(t, after, "delete "+id, "the left-behind container is stopped")
				}
				for _, c := range after {
					assert.False(t, strings.HasPrefix(c, "start ") || strings.HasPrefix(c, "create "), "nothing is started: %s", c)
				}
			})
		})
	}
}

// TestAgentHoldsItsLease: the agent renews its lease while it runs and
// stops when it stops, so the node's lease lapses one TTL after it dies.
// Its record is written when it changes, not on every heartbeat.
func TestAgentHoldsItsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		leases := liveness.NewMemory(nil)
		e := newEnv(t, nil)
		e.stop()
		e.lease = leases
		e.start()
		synctest.Wait()
		_, nodes, _, err := leases.LiveNodes(ctx, -1, 0)
		require.NoError(t, err)
		assert.Equal(t, []string{node}, nodes)

		rec, ver, err := store.GetJSON[store.Node](ctx, e.store, store.NodeKey(node))
		require.NoError(t, err)
		assert.Equal(t, liveness.DefaultRenewEvery, rec.HeartbeatInterval.Duration, "the interval is the lease's renewal")
		time.Sleep(10 * e.cfg.HeartbeatInterval) // ten heartbeats in the bubble
		synctest.Wait()
		_, ver2, err := store.GetJSON[store.Node](ctx, e.store, store.NodeKey(node))
		require.NoError(t, err)
		assert.Equal(t, ver, ver2, "an unchanged record is not rewritten")
		_, nodes, _, err = leases.LiveNodes(ctx, -1, 0)
		require.NoError(t, err)
		assert.Equal(t, []string{node}, nodes, "renewed all along")

		e.stop()
		time.Sleep(e.cfg.WithDefaults().LeaseTTL) // the TTL in the bubble
		_, nodes, _, err = leases.LiveNodes(ctx, -1, 0)
		require.NoError(t, err)
		assert.Empty(t, nodes, "a dead agent's lease lapses")
	})
}
