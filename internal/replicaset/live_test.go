package replicaset

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/store"
)

// TestRegistryDropsADeadNodesEndpointsAtOnce: when a node's lease lapses
// its endpoints leave every Set within one poll, while their records are
// still in the store; when the lease is back, so are they.
func TestRegistryDropsADeadNodesEndpointsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st := openStore(t)
		leases := liveness.NewMemory(nil)
		require.NoError(t, leases.RenewNodeLease(ctx, "a", 3*time.Second))
		require.NoError(t, leases.RenewNodeLease(ctx, "b", time.Hour))
		w, err := liveness.NewWatcher(leases, liveness.Config{}, nil)
		require.NoError(t, err)
		tr, err := proxy.NewTransport(proxy.Config{})
		require.NoError(t, err)
		cache := store.NewCache[store.Endpoint](st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{})
		g := New(cache, tr, nil)
		g.FollowLiveness(w)
		s := g.Retain("hello-00001")
		done := make(chan error, 3)
		go func() { done <- w.Run(ctx) }()
		go func() { done <- cache.Run(ctx) }()
		go func() { done <- g.Run(ctx) }()
		<-g.Ready()
		<-w.Ready()
		for _, ep := range []store.Endpoint{
			{Function: "hello", Revision: "hello-00001", Replica: "a1", Node: "a", Addr: "127.0.0.1:9"},
			{Function: "hello", Revision: "hello-00001", Replica: "b1", Node: "b", Addr: "127.0.0.1:8"},
		} {
			b, _ := json.Marshal(ep)
			_, err := st.Txn(ctx, store.Put(store.EndpointKey(ep.Revision, ep.Replica), b, store.AnyVersion))
			require.NoError(t, err)
		}
		synctest.Wait()
		require.Equal(t, 2, s.Len())

		lapsed := time.Now().Add(3 * time.Second)
		for s.Len() == 2 {
			time.Sleep(liveness.DefaultPollInterval) // the watcher's poll interval in the bubble
			synctest.Wait()
		}
		assert.LessOrEqual(t, time.Since(lapsed), liveness.DefaultPollInterval, "within one poll of the lapse")
		require.Equal(t, 1, s.Len())
		assert.Equal(t, "b1", s.Replicas()[0].ID)
		s2 := g.Retain("hello-00001")
		assert.Equal(t, 1, s2.Len(), "a Set retained later starts without the dead node too")
		g.Drop(s2)

		require.NoError(t, leases.RenewNodeLease(ctx, "a", time.Hour))
		time.Sleep(liveness.DefaultPollInterval) // one poll in the bubble
		synctest.Wait()
		assert.Equal(t, 2, s.Len(), "a node whose lease is back serves again")
		cancel()
		for range 3 {
			require.NoError(t, <-done)
		}
	})
}
