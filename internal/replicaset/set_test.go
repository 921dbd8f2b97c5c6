package replicaset

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func newRegistry(t testing.TB) *Registry {
	t.Helper()
	tr, err := proxy.NewTransport(proxy.Config{})
	require.NoError(t, err)
	return New(nil, tr, nil)
}

func eps(rev string, limit int, ids ...string) []store.Endpoint {
	var out []store.Endpoint
	for _, id := range ids {
		out = append(out, store.Endpoint{Revision: rev, Replica: id, Addr: "127.0.0.1:1" + id, Limit: limit})
	}
	return out
}

func TestAcquireHonoursLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		limit    int
	}{
		{"one replica", 1, 3},
		{"two replicas", 2, 2},
		{"five replicas", 5, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRegistry(t)
			ids := []string{"0", "1", "2", "3", "4"}[:tc.replicas]
			g.Update(eps("r", tc.limit, ids...))
			s := g.Retain("r")
			var got []*Replica
			for i := 0; i < tc.replicas*tc.limit; i++ {
				r := s.TryAcquire()
				require.NotNil(t, r, "slot %d", i)
				got = append(got, r)
			}
			assert.Nil(t, s.TryAcquire(), "every replica is at its limit")
			for _, r := range s.Replicas() {
				assert.Equal(t, tc.limit, r.InFlight())
			}
			s.Release(got[0])
			assert.Same(t, got[0], s.TryAcquire())
		})
	}
}

func TestLeastInFlight(t *testing.T) {
	g := newRegistry(t)
	g.Update(eps("r", 0, "a", "b"))
	s := g.Retain("r")
	a := s.Replicas()[0]
	for i := 0; i < 10; i++ {
		a.inflight.Add(1)
	}
	for i := 0; i < 10; i++ {
		r := s.TryAcquire()
		require.NotNil(t, r)
		assert.Equal(t, "b", r.ID, "the idle replica wins until they are even")
	}
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		r := s.TryAcquire()
		counts[r.ID]++
	}
	assert.InDelta(t, 500, counts["a"], 1, "with two replicas P2C keeps them level")
}

func TestFIFOHandOff(t *testing.T) {
	g := newRegistry(t)
	s := g.Retain("r")
	var ws []*Waiter
	for i := 0; i < 3; i++ {
		w := NewWaiter()
		assert.Equal(t, i+1, s.Enqueue(w))
		ws = append(ws, w)
	}
	assert.Equal(t, 3, s.Waiting())

	g.Update(eps("r", 1, "a")) // one replica, one slot: only the head gets it
	r := <-ws[0].C
	assert.Equal(t, "a", r.ID)
	assert.Empty(t, ws[1].C)

	// Newcomers queue behind the waiters even when a slot frees up.
	s.Release(r)
	assert.Nil(t, s.TryAcquire())
	r = <-ws[1].C
	s.Release(r)
	r = <-ws[2].C
	assert.Equal(t, 0, s.Waiting())
	s.Release(r)
	assert.NotNil(t, s.TryAcquire(), "with the queue empty the direct path is open again")
}

func TestCancel(t *testing.T) {
	g := newRegistry(t)
	s := g.Retain("r")
	w1, w2 := NewWaiter(), NewWaiter()
	s.Enqueue(w1)
	s.Enqueue(w2)
	assert.Nil(t, s.Cancel(w1), "a queued waiter just leaves")
	assert.Equal(t, 1, s.Waiting())
	g.Update(eps("r", 1, "a"))
	r := s.Cancel(w2)
	require.NotNil(t, r, "a granted waiter gets its slot back to release")
	assert.Equal(t, 1, r.InFlight())
	s.Release(r)
	assert.Equal(t, 0, r.InFlight())
	assert.Nil(t, s.Cancel(w2), "cancelling twice is harmless")
}

// Many goroutines mixing the direct path and the queue must never push a
// replica past its limit, and every queued waiter must eventually be served.
func TestLimitUnderContention(t *testing.T) {
	g := newRegistry(t)
	g.Update(eps("r", 3, "a", "b"))
	s := g.Retain("r")
	var peak [2]atomic.Int32
	var cur [2]atomic.Int32
	idx := func(r *Replica) int {
		if r.ID == "a" {
			return 0
		}
		return 1
	}
	hold := func(r *Replica) {
		i := idx(r)
		n := cur[i].Add(1)
		for {
			p := peak[i].Load()
			if n <= p || peak[i].CompareAndSwap(p, n) {
				break
			}
		}
		cur[i].Add(-1)
		s.Release(r)
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := NewWaiter()
			for j := 0; j < 200; j++ {
				if r := s.TryAcquire(); r != nil {
					hold(r)
					continue
				}
				s.Enqueue(w)
				hold(<-w.C)
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak[0].Load(), int32(3))
	assert.LessOrEqual(t, peak[1].Load(), int32(3))
	assert.Equal(t, 0, s.Waiting())
	for _, r := range s.Replicas() {
		assert.Equal(t, 0, r.InFlight())
	}
}

func TestUpdateKeepsReplicas(t *testing.T) {
	g := newRegistry(t)
	g.Update(eps("r", 2, "a", "b"))
	s := g.Retain("r")
	a := s.Replicas()[0]
	require.Equal(t, "a", a.ID)
	a.inflight.Add(1)
	gone := s.Replicas()[1]

	g.Update(append(eps("r", 5, "a"), eps("r", 5, "c")...))
	reps := s.Replicas()
	require.Len(t, reps, 2)
	assert.Same(t, a, reps[0], "a replica that stays keeps its count")
	assert.Equal(t, 1, a.InFlight())
	assert.Equal(t, 5, a.Limit())
	assert.Equal(t, "c", reps[1].ID)
	assert.NotSame(t, gone, reps[1])

	g.Drop(s)
	s2 := g.Retain("r")
	assert.NotSame(t, s, s2, "the last Drop forgot the set")
	assert.Len(t, s2.Replicas(), 2, "a new set starts from the known endpoints")
}

// The store tests run in testing/synctest bubbles: the embedded store's
// watches and the registry's cache live in the bubble, so synctest.Wait
// returns once every update has been delivered and the test asserts what
// happened instead of polling for it.

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestRegistryFollowsStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		tr, err := proxy.NewTransport(proxy.Config{})
		require.NoError(t, err)
		eps := store.NewCache[store.Endpoint](st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{})
		g := New(eps, tr, nil)
		s := g.Retain("hello-00001")
		ctx, cancel := context.WithCancel(context.Background())
		done, cached := make(chan error, 1), make(chan error, 1)
		go func() { cached <- eps.Run(ctx) }()
		go func() { done <- g.Run(ctx) }()
		<-g.Ready()

		put := func(ep store.Endpoint) {
			b, _ := json.Marshal(ep)
			_, err := st.Txn(ctx, store.Put(store.EndpointKey(ep.Revision, ep.Replica), b, store.AnyVersion))
			require.NoError(t, err)
		}
		put(store.Endpoint{Function: "hello", Revision: "hello-00001", Replica: "x1", Addr: "127.0.0.1:9", Limit: 10})
		put(store.Endpoint{Function: "hello", Revision: "hello-00002", Replica: "y1", Addr: "127.0.0.1:8"})
		synctest.Wait()
		require.Equal(t, 1, s.Len(), "only the retained revision's endpoint")
		assert.Equal(t, 10, s.Replicas()[0].Limit())

		_, err = st.Txn(ctx, store.Delete(store.EndpointKey("hello-00001", "x1"), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 0, s.Len())

		// A record without its names takes them from its key; one without an
		// address is not ready.
		_, err = st.Txn(ctx,
			store.Put(store.EndpointKey("hello-00001", "x2"), []byte(`{"addr":"127.0.0.1:7"}`), store.AnyVersion),
			store.Put(store.EndpointKey("hello-00001", "x3"), []byte(`{"revision":"hello-00001","replica":"x3"}`), store.AnyVersion),
			store.Put(store.EndpointKey("hello-00001", "x4"), []byte(`not json`), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 1, s.Len())
		assert.Equal(t, store.EndpointKey("hello-00001", "x2"), s.Replicas()[0].ID)

		cancel()
		require.NoError(t, <-done)
		require.NoError(t, <-cached)
	})
}

// TestOpenedRegistryRunsItsOwnCache checks that a Registry from Open
// needs nothing else run.
func TestOpenedRegistryRunsItsOwnCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		g, err := Open(st, proxy.Config{}, nil)
		require.NoError(t, err)
		s := g.Retain("hello-00001")
		defer g.Drop(s)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		_, err = st.Txn(ctx, store.PutJSON(store.EndpointKey("hello-00001", "x1"),
			store.Endpoint{Function: "hello", Revision: "hello-00001", Replica: "x1", Addr: "127.0.0.1:9"}, store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 1, s.Len())
		cancel()
		require.NoError(t, <-done)
	})
}

func TestMarkDown(t *testing.T) {
	g := newRegistry(t)
	g.Update(eps("r", 1, "a", "b"))
	s := g.Retain("r")
	a, b := s.Replicas()[0], s.Replicas()[1]
	a.MarkDown(time.Hour)
	for i := 0; i < 20; i++ {
		r := s.TryAcquire()
		require.Same(t, b, r, "a replica marked down is avoided while others have room")
		s.Release(r)
	}
	held := s.TryAcquire()
	require.Same(t, b, held)
	assert.Same(t, a, s.TryAcquire(), "with no other room it is still a last resort")
	a.downUntil.Store(time.Now().Add(-time.Second).UnixNano())
	assert.True(t, a.up(), "the mark expires")
	assert.Zero(t, a.downUntil.Load())
}
