package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

// These tests run a Cache over the embedded store, in real time; the
// synctest ones in cache_test.go drive a memStore.

const waitTimeout = 15 * time.Second

// flakyStore fails its first List calls and ends its first watches with an
// error, as a store losing its connection would.
type flakyStore struct {
	store.Store
	listFailures  atomic.Int32
	watchFailures atomic.Int32
	lists         atomic.Int32
}

var errFlaky = errors.New("connection lost")

func (f *flakyStore) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	f.lists.Add(1)
	if f.listFailures.Add(-1) >= 0 {
		return nil, 0, errFlaky
	}
	return f.Store.List(ctx, prefix)
}

func (f *flakyStore) Watch(ctx context.Context, prefix string, after int64) (<-chan store.WatchEvent, error) {
	if f.watchFailures.Add(-1) >= 0 {
		ch := make(chan store.WatchEvent, 1)
		ch <- store.WatchEvent{Err: errFlaky}
		close(ch)
		return ch, nil
	}
	return f.Store.Watch(ctx, prefix, after)
}

// rawCache holds values as the strings stored, for tests that write bytes.
func rawCache(s store.Store, prefix string) *store.Cache[string] {
	return store.NewCache(s, prefix, store.CacheConfig[string]{
		Decode: func(b []byte) (string, error) { return string(b), nil },
	})
}

// cacheFollower runs a cache and a follower that copies each snapshot it is
// handed, holding the second update until hold closes when hold is set.
type cacheFollower struct {
	snaps chan map[string]string
	calls atomic.Int32
	done  chan error
}

func followCache(ctx context.Context, c *store.Cache[string], hold <-chan struct{}) *cacheFollower {
	f := &cacheFollower{snaps: make(chan map[string]string, 1000), done: make(chan error, 1)}
	go func() { _ = c.Run(ctx) }()
	go func() {
		f.done <- c.Follow(ctx, func(store.Update[string]) {
			n := f.calls.Add(1)
			cp := map[string]string{}
			for v := range c.Snapshot().All() {
				cp[v.Key] = v.Value
			}
			if n == 2 && hold != nil {
				<-hold
			}
			f.snaps <- cp
		})
	}()
	return f
}

// waitFor waits for a snapshot holding exactly keys.
func (f *cacheFollower) waitFor(t *testing.T, keys ...string) map[string]string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case snap := <-f.snaps:
			if len(snap) != len(keys) {
				continue
			}
			ok := true
			for _, k := range keys {
				_, found := snap[k]
				ok = ok && found
			}
			if ok {
				return snap
			}
		case <-deadline:
			t.Fatalf("no snapshot with keys %v", keys)
		}
	}
}

func TestCacheRecoversFromErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := openEmbedded(t)
	_, err := base.Txn(ctx, store.Put("m/a", []byte("a"), store.MustNotExist))
	require.NoError(t, err)
	s := &flakyStore{Store: base}
	s.listFailures.Store(2)
	s.watchFailures.Store(1)

	f := followCache(ctx, rawCache(s, "m/"), nil)
	f.waitFor(t, "m/a")
	_, err = base.Txn(ctx, store.Put("m/b", []byte("b"), store.MustNotExist), store.Put("x/c", nil, store.MustNotExist))
	require.NoError(t, err)
	snap := f.waitFor(t, "m/a", "m/b")
	assert.Equal(t, "b", snap["m/b"])
	assert.Equal(t, int32(4), s.lists.Load(), "two failed lists, one whose watch broke, one that held")

	cancel()
	select {
	case err := <-f.done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(waitTimeout):
		t.Fatal("Follow did not return after cancel")
	}
}

func TestCacheStopsWhenEmbeddedStoreCloses(t *testing.T) {
	s := openEmbedded(t)
	f := followCache(context.Background(), rawCache(s, ""), nil)
	f.waitFor(t)
	require.NoError(t, s.Close())
	select {
	case err := <-f.done:
		assert.ErrorIs(t, err, store.ErrClosed)
	case <-time.After(waitTimeout):
		t.Fatal("Follow did not return after Close")
	}
}

// TestCacheFoldsEmbeddedBursts checks that events queued while a follower
// runs are delivered in one later update, not one update each.
func TestCacheFoldsEmbeddedBursts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openEmbedded(t)
	hold := make(chan struct{})
	f := followCache(ctx, rawCache(s, "m/"), hold)
	f.waitFor(t)
	_, err := s.Txn(ctx, store.Put("m/first", nil, store.MustNotExist)) // the second call, which holds
	require.NoError(t, err)
	const burst = 40
	keys := []string{"m/first"}
	for i := range burst {
		key := fmt.Sprintf("m/%02d", i)
		keys = append(keys, key)
		_, err := s.Txn(ctx, store.Put(key, nil, store.MustNotExist))
		require.NoError(t, err)
	}
	close(hold)
	f.waitFor(t, keys...)
	assert.Less(t, f.calls.Load(), int32(burst/2), "a burst costs a few updates, not one per event")
}

// TestCacheUpdatesSayWhatChanged folds every update's changes into a copy
// of its own and checks the copy always equals the snapshot: a follower
// that only reads Changed misses nothing.
func TestCacheUpdatesSayWhatChanged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openEmbedded(t)
	_, err := s.Txn(ctx, store.Put("u/old", []byte("0"), store.MustNotExist))
	require.NoError(t, err)

	type check struct {
		full       bool
		mismatched []string
		size       int
		revision   int64
	}
	checks := make(chan check, 1000)
	c := rawCache(s, "u/")
	go func() { _ = c.Run(ctx) }()
	done := make(chan error, 1)
	go func() {
		mine := map[string]store.Versioned[string]{}
		done <- c.Follow(ctx, func(u store.Update[string]) {
			if u.Full {
				clear(mine)
			}
			seen := map[string]bool{}
			for _, ch := range u.Changed {
				if seen[ch.Key] {
					t.Errorf("key %s listed twice in one update", ch.Key)
				}
				seen[ch.Key] = true
				if ch.Deleted {
					delete(mine, ch.Key)
				} else {
					mine[ch.Key] = ch.Versioned
				}
			}
			snap := c.Snapshot()
			var bad []string
			for v := range snap.All() {
				if m := mine[v.Key]; m != v {
					bad = append(bad, v.Key)
				}
				if v.Version > u.Revision {
					bad = append(bad, v.Key+" is newer than the update's revision")
				}
			}
			if len(mine) != snap.Len() {
				bad = append(bad, "size")
			}
			checks <- check{full: u.Full, mismatched: bad, size: snap.Len(), revision: u.Revision}
		})
	}()
	first := <-checks
	assert.True(t, first.full)
	assert.Equal(t, 1, first.size)
	assert.Positive(t, first.revision, "a listing says which revision it reflects")

	for i := range 30 {
		key := fmt.Sprintf("u/%02d", i%10)
		var op store.Op = store.Put(key, []byte(fmt.Sprint(i)), store.AnyVersion)
		if i%7 == 6 {
			op = store.Delete(key, store.AnyVersion)
		}
		_, err := s.Txn(ctx, op)
		require.NoError(t, err)
	}
	last, err := s.Txn(ctx, store.Delete("u/old", store.AnyVersion))
	require.NoError(t, err)
	want, _, err := s.List(ctx, "u/")
	require.NoError(t, err)

	deadline := time.After(waitTimeout)
	revision := first.revision
	for {
		select {
		case c := <-checks:
			assert.False(t, c.full, "no relist without a broken watch")
			assert.Empty(t, c.mismatched, "the changes folded in give the snapshot")
			assert.GreaterOrEqual(t, c.revision, revision, "revisions only go forward")
			revision = c.revision
			if c.size == len(want) && len(c.mismatched) == 0 && c.revision == last {
				cancel()
				<-done
				return
			}
		case <-deadline:
			t.Fatal("the cache never reached the store's contents")
		}
	}
}
