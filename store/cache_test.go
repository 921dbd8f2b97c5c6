package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

type rec struct {
	N int `json:"n"`
}

func recJSON(n int) []byte {
	b, _ := json.Marshal(rec{N: n})
	return b
}

// cacheRun is a Cache of recs over a memStore, running in a synctest
// bubble, with one follower recording what it hears.
type cacheRun struct {
	st      *memStore
	cache   *store.Cache[rec]
	runErr  chan error
	follow  chan error
	mu      sync.Mutex
	updates []store.Update[rec]
	bad     []string
	decodes int
}

// startCache starts a cache of prefix over st and a follower of it, and
// waits until both are idle.
func startCache(t *testing.T, ctx context.Context, st *memStore, prefix string) *cacheRun {
	r := &cacheRun{st: st, runErr: make(chan error, 1), follow: make(chan error, 1)}
	r.cache = store.NewCache(st, prefix, store.CacheConfig[rec]{
		Decode: func(b []byte) (rec, error) {
			r.mu.Lock()
			r.decodes++
			r.mu.Unlock()
			var v rec
			err := json.Unmarshal(b, &v)
			return v, err
		},
		OnUndecodable: func(key string, _ error) {
			r.mu.Lock()
			r.bad = append(r.bad, key)
			r.mu.Unlock()
		},
	})
	go func() { r.follow <- r.cache.Follow(ctx, r.record) }()
	go func() { r.runErr <- r.cache.Run(ctx) }()
	synctest.Wait()
	return r
}

func (r *cacheRun) record(u store.Update[rec]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
}

// take returns the updates recorded since the last take.
func (r *cacheRun) take() []store.Update[rec] {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.updates
	r.updates = nil
	return out
}

func put(key string, n int, version int64) store.Change[rec] {
	return store.Change[rec]{Versioned: store.Versioned[rec]{Key: key, Value: rec{N: n}, Version: version}}
}

func deleted(key string, version int64) store.Change[rec] {
	return store.Change[rec]{Versioned: store.Versioned[rec]{Key: key, Version: version}, Deleted: true}
}

func full(revision int64, changed ...store.Change[rec]) store.Update[rec] {
	if changed == nil {
		changed = []store.Change[rec]{}
	}
	return store.Update[rec]{Full: true, Changed: changed, Revision: revision}
}

func changes(revision int64, changed ...store.Change[rec]) store.Update[rec] {
	return store.Update[rec]{Changed: changed, Revision: revision}
}

func txn(t *testing.T, st store.Store, ops ...store.Op) {
	t.Helper()
	_, err := st.Txn(context.Background(), ops...)
	require.NoError(t, err)
}

// TestCacheUpdates drives a cache through a store's changes and failures
// and checks, step by step, the updates its follower hears.
func TestCacheUpdates(t *testing.T) {
	type step struct {
		name string
		do   func(t *testing.T, st *memStore)
		want []store.Update[rec]
	}
	tests := []struct {
		name    string
		before  func(t *testing.T, st *memStore) // store contents before the cache starts
		listing []store.Update[rec]              // what the follower hears once the cache has started
		steps   []step
		bad     []string // keys reported undecodable, in order
		decodes int      // values decoded in all
		lists   int
		watches int // when not lists: a watch follows each listing that succeeds
	}{
		{
			name: "the listing is one full update in key order, of the prefix only",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/b", recJSON(2), store.AnyVersion))
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion), store.Put("s/a", recJSON(9), store.AnyVersion))
			},
			listing: []store.Update[rec]{full(2, put("r/a", 1, 2), put("r/b", 2, 1))},
			decodes: 2,
			lists:   1,
		},
		{
			name:    "an empty prefix lists as an empty full update",
			listing: []store.Update[rec]{full(0)},
			lists:   1,
		},
		{
			name: "puts and deletes come as changes, each decoded once",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion))
			},
			listing: []store.Update[rec]{full(1, put("r/a", 1, 1))},
			steps: []step{
				{
					name: "a put",
					do:   func(t *testing.T, st *memStore) { txn(t, st, store.Put("r/b", recJSON(2), store.AnyVersion)) },
					want: []store.Update[rec]{changes(2, put("r/b", 2, 2))},
				},
				{
					name: "a delete",
					do:   func(t *testing.T, st *memStore) { txn(t, st, store.Delete("r/a", store.AnyVersion)) },
					want: []store.Update[rec]{changes(3, deleted("r/a", 3))},
				},
				{
					name: "a transaction that puts and deletes, and writes outside the prefix",
					do: func(t *testing.T, st *memStore) {
						txn(t, st, store.Put("r/a", recJSON(3), store.AnyVersion), store.Delete("r/b", store.AnyVersion), store.Put("s/x", recJSON(0), store.AnyVersion))
					},
					want: []store.Update[rec]{changes(4, put("r/a", 3, 4), deleted("r/b", 4))},
				},
				{
					name: "a write outside the prefix is no update",
					do:   func(t *testing.T, st *memStore) { txn(t, st, store.Put("s/y", recJSON(0), store.AnyVersion)) },
				},
			},
			decodes: 3,
			lists:   1,
		},
		{
			name: "an undecodable value is left out, reported, and delivered as a delete",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion), store.Put("r/x", []byte("not json"), store.AnyVersion))
			},
			listing: []store.Update[rec]{full(1, put("r/a", 1, 1))},
			steps: []step{{
				name: "a record that no longer decodes",
				do:   func(t *testing.T, st *memStore) { txn(t, st, store.Put("r/a", []byte("{"), store.AnyVersion)) },
				want: []store.Update[rec]{changes(2, deleted("r/a", 2))},
			}, {
				name: "and decodes again",
				do:   func(t *testing.T, st *memStore) { txn(t, st, store.Put("r/a", recJSON(5), store.AnyVersion)) },
				want: []store.Update[rec]{changes(3, put("r/a", 5, 3))},
			}},
			bad:     []string{"r/x", "r/a"},
			decodes: 4,
			lists:   1,
		},
		{
			name: "a broken watch lists again after a backoff, decoding only what changed",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion), store.Put("r/b", recJSON(2), store.AnyVersion))
			},
			listing: []store.Update[rec]{full(1, put("r/a", 1, 1), put("r/b", 2, 1))},
			steps: []step{{
				name: "the watch breaks",
				do:   func(t *testing.T, st *memStore) { st.breakWatches(errFlaky) },
			}, {
				name: "writes while it is down",
				do: func(t *testing.T, st *memStore) {
					txn(t, st, store.Put("r/b", recJSON(3), store.AnyVersion), store.Put("r/c", recJSON(4), store.AnyVersion))
					txn(t, st, store.Delete("r/a", store.AnyVersion))
				},
			}, {
				name: "the backoff passes",
				do:   func(*testing.T, *memStore) { time.Sleep(time.Second) },
				want: []store.Update[rec]{full(3, put("r/b", 3, 2), put("r/c", 4, 2))},
			}, {
				name: "the new watch follows on from the listing",
				do:   func(t *testing.T, st *memStore) { txn(t, st, store.Put("r/d", recJSON(5), store.AnyVersion)) },
				want: []store.Update[rec]{changes(4, put("r/d", 5, 4))},
			}},
			decodes: 5, // a and b, then b and c again (a changed version), then d
			lists:   2,
		},
		{
			name: "a watch behind compaction lists again",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion))
			},
			listing: []store.Update[rec]{full(1, put("r/a", 1, 1))},
			steps: []step{{
				name: "compacted",
				do: func(t *testing.T, st *memStore) {
					st.breakWatches(store.ErrCompacted)
					time.Sleep(time.Second)
				},
				want: []store.Update[rec]{full(1, put("r/a", 1, 1))},
			}},
			decodes: 1,
			lists:   2,
		},
		{
			name: "failed listings are retried",
			before: func(t *testing.T, st *memStore) {
				txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion))
				st.failLists(3)
			},
			steps: []step{{
				name: "the backoffs pass",
				do:   func(*testing.T, *memStore) { time.Sleep(time.Minute) },
				want: []store.Update[rec]{full(1, put("r/a", 1, 1))},
			}},
			decodes: 1,
			lists:   4,
			watches: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore()
				if tt.before != nil {
					tt.before(t, st)
				}
				ctx, cancel := context.WithCancel(context.Background())
				r := startCache(t, ctx, st, "r/")
				assert.Equal(t, tt.listing, r.take(), "the listing")
				for _, s := range tt.steps {
					s.do(t, st)
					synctest.Wait()
					assert.Equal(t, s.want, r.take(), s.name)
				}
				r.mu.Lock()
				assert.Equal(t, tt.bad, r.bad, "undecodable keys")
				assert.Equal(t, tt.decodes, r.decodes, "values decoded")
				r.mu.Unlock()
				lists, watches := st.counts()
				assert.Equal(t, tt.lists, lists, "listings")
				wantWatches := tt.watches
				if wantWatches == 0 {
					wantWatches = tt.lists
				}
				assert.Equal(t, map[string]int{"r/": wantWatches}, watches, "one watch per listing that succeeded")
				cancel()
				assert.NoError(t, <-r.runErr, "Run ends cleanly with its context")
				assert.ErrorIs(t, <-r.follow, context.Canceled)
			})
		})
	}
}

// TestCacheFoldsBursts holds the follower while writes pile up: they come
// in one update, each key once, as it is at the end.
func TestCacheFoldsBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.buffer = 1000 // the whole burst is queued when the follower returns
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := startCache(t, ctx, st, "r/")
		require.Equal(t, []store.Update[rec]{full(0)}, r.take())

		hold, held := make(chan struct{}), make(chan struct{})
		go func() {
			_ = r.cache.Follow(ctx, func(u store.Update[rec]) {
				if !u.Full {
					held <- struct{}{}
					<-hold
				}
			})
		}()
		synctest.Wait()
		txn(t, st, store.Put("r/first", recJSON(0), store.AnyVersion)) // the update that holds
		<-held
		for i := range 40 {
			txn(t, st, store.Put("r/a", recJSON(i), store.AnyVersion), store.Put("r/b", recJSON(i), store.AnyVersion))
		}
		txn(t, st, store.Delete("r/b", store.AnyVersion))
		synctest.Wait()
		close(hold)
		go func() {
			for range held {
			}
		}()
		synctest.Wait()
		assert.Equal(t, []store.Update[rec]{
			changes(1, put("r/first", 0, 1)),
			changes(42, put("r/a", 39, 41), deleted("r/b", 42)),
		}, r.take())
		close(held)
	})
}

// TestCacheSnapshot checks that a snapshot is immutable, shared until the
// next change, and in a callback exactly what the update left.
func TestCacheSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion))
		c := store.NewCache[rec](st, "r/", store.CacheConfig[rec]{})
		empty := c.Snapshot()
		assert.Zero(t, empty.Len(), "empty before the listing")
		assert.Zero(t, empty.Revision)
		select {
		case <-c.Ready():
			t.Fatal("ready before the listing")
		default:
		}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// A follower that folds every update into a map of its own and
		// compares it with the snapshot taken in the callback.
		mine := map[string]store.Versioned[rec]{}
		var mismatches []string
		var calls int
		go func() {
			_ = c.Follow(ctx, func(u store.Update[rec]) {
				calls++
				if u.Full {
					clear(mine)
				}
				for _, ch := range u.Changed {
					if ch.Deleted {
						delete(mine, ch.Key)
					} else {
						mine[ch.Key] = ch.Versioned
					}
				}
				s := c.Snapshot()
				got := map[string]store.Versioned[rec]{}
				for v := range s.All() {
					got[v.Key] = v
				}
				if !assert.ObjectsAreEqual(mine, got) || s.Revision != u.Revision {
					mismatches = append(mismatches, "update "+u.Changed[0].Key)
				}
			})
		}()
		go func() { _ = c.Run(ctx) }()
		synctest.Wait()
		<-c.Ready()

		first := c.Snapshot()
		assert.Same(t, first, c.Snapshot(), "no change, the same snapshot")
		assert.Equal(t, int64(1), first.Revision)
		a, ok := first.Get("r/a")
		require.True(t, ok)
		assert.Equal(t, store.Versioned[rec]{Key: "r/a", Value: rec{1}, Version: 1}, a)
		_, ok = first.Get("r/b")
		assert.False(t, ok)
		assert.Zero(t, empty.Len(), "the listing left the earlier snapshot as it was")

		txn(t, st, store.Put("r/b", recJSON(2), store.AnyVersion), store.Put("r/a", recJSON(3), store.AnyVersion))
		txn(t, st, store.Delete("r/b", store.AnyVersion))
		txn(t, st, store.Put("r/c", recJSON(4), store.AnyVersion))
		synctest.Wait()
		last := c.Snapshot()
		assert.NotSame(t, first, last)
		assert.Equal(t, 1, first.Len(), "a change leaves an earlier snapshot as it was")
		a, _ = first.Get("r/a")
		assert.Equal(t, 1, a.Value.N)
		assert.Equal(t, 2, last.Len())
		assert.Equal(t, int64(4), last.Revision)
		a, _ = last.Get("r/a")
		assert.Equal(t, store.Versioned[rec]{Key: "r/a", Value: rec{3}, Version: 2}, a)
		assert.GreaterOrEqual(t, calls, 2)
		assert.Empty(t, mismatches, "a snapshot taken in a callback is what the update left")
	})
}

// TestCacheFollowers checks that a follower that joins late first hears
// everything at once, that one that leaves hears nothing more, and that
// each of several hears every update.
func TestCacheFollowers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		txn(t, st, store.Put("r/a", recJSON(1), store.AnyVersion))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := startCache(t, ctx, st, "r/")
		require.Equal(t, []store.Update[rec]{full(1, put("r/a", 1, 1))}, r.take())
		txn(t, st, store.Put("r/b", recJSON(2), store.AnyVersion))
		synctest.Wait()
		require.Len(t, r.take(), 1)

		var late []store.Update[rec]
		lateCtx, leave := context.WithCancel(ctx)
		lateDone := make(chan error, 1)
		go func() {
			lateDone <- r.cache.Follow(lateCtx, func(u store.Update[rec]) { late = append(late, u) })
		}()
		synctest.Wait()
		assert.Equal(t, []store.Update[rec]{full(2, put("r/a", 1, 1), put("r/b", 2, 2))}, late, "a late follower hears all at once")

		txn(t, st, store.Put("r/c", recJSON(3), store.AnyVersion))
		synctest.Wait()
		assert.Equal(t, []store.Update[rec]{changes(3, put("r/c", 3, 3))}, r.take())
		assert.Equal(t, changes(3, put("r/c", 3, 3)), late[len(late)-1], "both followers hear it")

		assert.Equal(t, 2, r.cache.Followers())
		leave()
		assert.ErrorIs(t, <-lateDone, context.Canceled)
		assert.Equal(t, 1, r.cache.Followers())
		n := len(late)
		txn(t, st, store.Put("r/d", recJSON(4), store.AnyVersion))
		synctest.Wait()
		assert.Len(t, late, n, "a follower that left hears nothing more")
		assert.Len(t, r.take(), 1)

		_, watches := st.counts()
		assert.Equal(t, map[string]int{"r/": 1}, watches, "one watch, whatever the followers")
		assert.ErrorContains(t, r.cache.Run(ctx), "already running")
	})
}

// TestCacheStoreCloses checks that Run and its followers end for good, with
// ErrClosed, when the store closes, and that a follower that comes after
// that ends at once.
func TestCacheStoreCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		r := startCache(t, context.Background(), st, "r/")
		require.NoError(t, st.Close())
		synctest.Wait()
		err := <-r.runErr
		assert.ErrorIs(t, err, store.ErrClosed)
		assert.ErrorContains(t, err, "watch r/")
		assert.ErrorIs(t, <-r.follow, store.ErrClosed)
		assert.ErrorIs(t, r.cache.Follow(context.Background(), func(store.Update[rec]) {}), store.ErrClosed)
	})
}

// TestCacheRunEndsWithItsContext checks that Run returns nil when its
// context ends, and that a follower with a context of its own hears why.
func TestCacheRunEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		c := store.NewCache[rec](st, "r/", store.CacheConfig[rec]{})
		ctx, cancel := context.WithCancel(context.Background())
		ran, followed := make(chan error, 1), make(chan error, 1)
		go func() { ran <- c.Run(ctx) }()
		go func() { followed <- c.Follow(context.Background(), func(store.Update[rec]) {}) }()
		synctest.Wait()
		cancel()
		assert.NoError(t, <-ran)
		assert.ErrorIs(t, <-followed, context.Canceled, "the follower hears that the cache's context ended")
	})
}

// A follower's error is a shutdown when its own context ended, or when
// the shared cache's Run stopped on a cancelled context a moment before
// the follower's context did; anything else is a failure.
func TestFollowEnded(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"own context ended", done, context.Canceled, true},
		{"cache cancelled first", live, context.Canceled, true},
		{"cache cancelled, wrapped", live, fmt.Errorf("watch: %w", context.Canceled), true},
		{"cache closed", live, store.ErrClosed, false},
		{"cache failed", live, errors.New("redis: connection refused"), false},
	} {
		assert.Equal(t, tc.want, store.FollowEnded(tc.ctx, tc.err), tc.name)
	}
}
