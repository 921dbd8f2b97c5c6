package storetest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

// cacheHarness runs a store.Cache of raw values with one follower, and
// hands the test the latest snapshot that follower saw.
type cacheHarness struct {
	latest  chan map[string]store.KV
	hold    atomic.Bool
	held    chan struct{}
	release chan struct{}
	lists   atomic.Int32
}

// countingStore counts List calls, to tell a relist from a resumed watch.
type countingStore struct {
	store.Store
	lists *atomic.Int32
}

func (c countingStore) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, prefix)
}

func startCache(t *testing.T, s store.Store, prefix string) *cacheHarness {
	h := &cacheHarness{
		latest:  make(chan map[string]store.KV, 1),
		held:    make(chan struct{}, 1),
		release: make(chan struct{}),
	}
	c := store.NewCache(countingStore{Store: s, lists: &h.lists}, prefix, store.CacheConfig[[]byte]{
		Decode: func(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran, followed := make(chan error, 1), make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	go func() {
		followed <- c.Follow(ctx, func(store.Update[[]byte]) {
			cp := map[string]store.KV{}
			for v := range c.Snapshot().All() {
				cp[v.Key] = store.KV{Key: v.Key, Value: v.Value, Version: v.Version}
			}
			if h.hold.Load() {
				h.held <- struct{}{}
				<-h.release
			}
			select {
			case <-h.latest:
			default:
			}
			h.latest <- cp
		})
	}()
	t.Cleanup(func() {
		cancel()
		for _, done := range []chan error{ran, followed} {
			select {
			case err := <-done:
				if done == ran {
					assert.NoError(t, err, "Run ends cleanly with its context")
				} else {
					assert.ErrorIs(t, err, context.Canceled)
				}
			case <-time.After(waitTimeout):
				t.Error("the cache did not stop after cancel")
			}
		}
	})
	return h
}

// converged waits until the follower's snapshot equals the store's listing.
func (h *cacheHarness) converged(t *testing.T, s store.Store, prefix string) {
	t.Helper()
	kvs, _ := mustList(t, s, prefix)
	want := normalizeMap(kvMap(kvs))
	deadline := time.After(waitTimeout)
	var last map[string]store.KV
	for {
		select {
		case snap := <-h.latest:
			last = normalizeMap(snap)
			if assert.ObjectsAreEqual(want, last) {
				return
			}
		case <-deadline:
			require.Equal(t, want, last, "cache did not converge")
			return
		}
	}
}

func testCache(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, 0)
	mustTxn(t, s, store.Put("m/a", []byte("a"), store.MustNotExist), store.Put("n/a", []byte("n"), store.MustNotExist))
	h := startCache(t, s, "m/")
	h.converged(t, s, "m/")

	for i := range 20 {
		key := fmt.Sprintf("m/%d", i%7)
		if i%3 == 2 {
			mustTxn(t, s, store.Delete(key, store.AnyVersion))
			continue
		}
		mustTxn(t, s, store.Put(key, []byte(strconv.Itoa(i)), store.AnyVersion), store.Put("n/x", nil, store.AnyVersion))
	}
	h.converged(t, s, "m/")
	mustTxn(t, s, store.Delete("m/a", store.AnyVersion))
	h.converged(t, s, "m/")
	require.Equal(t, int32(1), h.lists.Load(), "one listing while the watch holds")
}

// testCacheAfterCompaction stalls the cache's follower until its watch
// falls out of the history; the cache must list again and converge.
func testCacheAfterCompaction(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, smallHistory)
	h := startCache(t, s, "m/")
	h.converged(t, s, "m/")
	require.Equal(t, int32(1), h.lists.Load())

	h.hold.Store(true)
	mustTxn(t, s, store.Put("m/first", nil, store.MustNotExist))
	select {
	case <-h.held:
	case <-time.After(waitTimeout):
		t.Fatal("follower not called")
	}
	writeEvents(t, s, "m/k", 150, 20)
	mustTxn(t, s, store.Delete("m/k000", store.AnyVersion))
	h.hold.Store(false)
	close(h.release)
	h.converged(t, s, "m/")
	require.GreaterOrEqual(t, h.lists.Load(), int32(2), "the cache listed again after compaction")
}
