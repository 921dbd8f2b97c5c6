package nodesim_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bench/nodesim"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	redisstore "github.com/ebbrun/ebb/store/redis"
)

// TestNodeWritesWhatAnAgentWrites assigns a revision to one of three
// simulated nodes and checks the records it leaves: its lease, its node
// record, a port, a ready replica, an endpoint and a Ready status; then
// takes the assignment away and checks they are gone.
func TestNodeWritesWhatAnAgentWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := redisstore.Open(ctx, testenv.Redis(t).URL(), redisstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	var mu sync.Mutex
	ready := map[string]string{}
	sim := nodesim.New(nodesim.Config{
		Nodes: 3, CPU: 8, MemoryBytes: 16 << 30,
		OnReady: func(node, rev string, _ time.Time) { mu.Lock(); ready[rev] = node; mu.Unlock() },
	}, st, st)
	done := make(chan struct{})
	go func() { sim.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	node := sim.NodeName(1)
	eventually(t, func() bool { return sim.Stats.Registered.Load() == 3 })
	eventually(t, func() bool {
		_, live, _, err := st.LiveNodes(ctx, -1, time.Second)
		return err == nil && len(live) == 3
	})
	rec, _, err := store.GetJSON[store.Node](ctx, st, store.NodeKey(node))
	require.NoError(t, err)
	assert.Equal(t, 8.0, rec.CPU)

	_, err = st.Txn(ctx, store.PutJSON(store.AssignmentKey(node, "f-00001"), store.Assignment{Function: "f", Revision: "f-00001", Replicas: 2}, store.AnyVersion))
	require.NoError(t, err)
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return ready["f-00001"] == node })

	eps, _, err := st.List(ctx, store.EndpointsPrefix("f-00001"))
	require.NoError(t, err)
	require.Len(t, eps, 2)
	reps, _, err := st.List(ctx, store.ReplicasPrefix(node))
	require.NoError(t, err)
	require.Len(t, reps, 2)
	for _, kv := range reps {
		assert.Contains(t, string(kv.Value), `"state":"`+store.ReplicaReady+`"`)
	}
	ports, _, err := st.List(ctx, store.PrefixPorts+node+"/")
	require.NoError(t, err)
	assert.Len(t, ports, 2)
	eventually(t, func() bool {
		s, _, err := store.GetJSON[store.RevisionNodeStatus](ctx, st, store.RevStatusKey("f-00001", node))
		return err == nil && s.State == api.RevisionReady && s.Ready == 2
	})
	eventually(t, func() bool {
		n, _, err := store.GetJSON[store.Node](ctx, st, store.NodeKey(node))
		return err == nil && n.Running == 2
	})

	_, err = st.Txn(ctx, store.Delete(store.AssignmentKey(node, "f-00001"), store.AnyVersion))
	require.NoError(t, err)
	eventually(t, func() bool {
		all, _, err := st.List(ctx, "")
		if err != nil {
			return false
		}
		for _, kv := range all {
			if strings.Contains(kv.Key, "f-00001") || strings.HasPrefix(kv.Key, store.PrefixPorts) {
				return false
			}
		}
		return true
	})
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 20*time.Millisecond)
}
