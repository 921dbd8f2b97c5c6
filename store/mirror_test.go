package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

type mirrorRun struct {
	snaps chan map[string]store.KV
	calls atomic.Int32
	done  chan error
}

func runMirror(t *testing.T, ctx context.Context, s store.Store, prefix string, hold <-chan struct{}) *mirrorRun {
	m := &mirrorRun{snaps: make(chan map[string]store.KV, 1000), done: make(chan error, 1)}
	go func() {
		m.done <- store.Mirror(ctx, s, prefix, func(snap map[string]store.KV) {
			n := m.calls.Add(1)
			cp := make(map[string]store.KV, len(snap))
			for k, v := range snap {
				cp[k] = v
			}
			if n == 2 && hold != nil {
				<-hold
			}
			m.snaps <- cp
		})
	}()
	return m
}

// waitFor waits for a snapshot holding exactly keys.
func (m *mirrorRun) waitFor(t *testing.T, keys ...string) map[string]store.KV {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case snap := <-m.snaps:
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

func TestMirrorRecoversFromErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := openEmbedded(t)
	_, err := base.Txn(ctx, store.Put("m/a", []byte("a"), store.MustNotExist))
	require.NoError(t, err)
	s := &flakyStore{Store: base}
	s.listFailures.Store(2)
	s.watchFailures.Store(1)

	m := runMirror(t, ctx, s, "m/", nil)
	m.waitFor(t, "m/a")
	_, err = base.Txn(ctx, store.Put("m/b", []byte("b"), store.MustNotExist), store.Put("x/c", nil, store.MustNotExist))
	require.NoError(t, err)
	snap := m.waitFor(t, "m/a", "m/b")
	assert.Equal(t, []byte("b"), snap["m/b"].Value)
	assert.Equal(t, int32(4), s.lists.Load(), "two failed lists, one whose watch broke, one that held")

	cancel()
	select {
	case err := <-m.done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(waitTimeout):
		t.Fatal("Mirror did not return after cancel")
	}
}

func TestMirrorStopsWhenStoreCloses(t *testing.T) {
	s := openEmbedded(t)
	m := runMirror(t, context.Background(), s, "", nil)
	m.waitFor(t)
	require.NoError(t, s.Close())
	select {
	case err := <-m.done:
		assert.ErrorIs(t, err, store.ErrClosed)
	case <-time.After(waitTimeout):
		t.Fatal("Mirror did not return after Close")
	}
}

// TestMirrorFoldsBursts checks that events queued while onChange runs are
// delivered in one later call, not one call each.
func TestMirrorFoldsBursts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openEmbedded(t)
	hold := make(chan struct{})
	m := runMirror(t, ctx, s, "m/", hold)
	m.waitFor(t)
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
	m.waitFor(t, keys...)
	assert.Less(t, m.calls.Load(), int32(burst/2), "a burst costs a few calls, not one per event")
}

// TestMirrorUpdatesSaysWhatChanged folds every Update's changes into a copy
// of its own and checks the copy always equals the snapshot: a consumer
// that only reads Changed misses nothing.
func TestMirrorUpdatesSaysWhatChanged(t *testing.T) {
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
	done := make(chan error, 1)
	go func() {
		mine := map[string]store.KV{}
		done <- store.MirrorUpdates(ctx, s, "u/", func(u store.Update) {
			if u.Full {
				clear(mine)
				for k, v := range u.Snapshot {
					mine[k] = v
				}
			}
			seen := map[string]bool{}
			for _, k := range u.Changed {
				if seen[k] {
					t.Errorf("key %s listed twice in one update", k)
				}
				seen[k] = true
				if kv, ok := u.Snapshot[k]; ok {
					mine[k] = kv
				} else {
					delete(mine, k)
				}
			}
			var bad []string
			for k, v := range u.Snapshot {
				if m := mine[k]; m.Version != v.Version || string(m.Value) != string(v.Value) {
					bad = append(bad, k)
				}
				if v.Version > u.Revision {
					bad = append(bad, k+" is newer than the update's revision")
				}
			}
			if len(mine) != len(u.Snapshot) {
				bad = append(bad, "size")
			}
			checks <- check{full: u.Full, mismatched: bad, size: len(u.Snapshot), revision: u.Revision}
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
			t.Fatal("the mirror never reached the store's contents")
		}
	}
}

func TestDecodeSnapshotReusesUnchangedRecords(t *testing.T) {
	type rec struct{ N int }
	old := store.DecodeSnapshot[rec](map[string]store.KV{
		"r/a": {Key: "r/a", Value: []byte(`{"N":1}`), Version: 5},
	}, nil, nil)
	var bad []string
	got := store.DecodeSnapshot(map[string]store.KV{
		"r/a": {Key: "r/a", Value: []byte(`not json`), Version: 5}, // unchanged: reused, not decoded
		"r/b": {Key: "r/b", Value: []byte(`{"N":2}`), Version: 6},
		"r/c": {Key: "r/c", Value: []byte(`not json`), Version: 7},
	}, old, func(key string, _ error) { bad = append(bad, key) })
	assert.Equal(t, map[string]store.Versioned[rec]{
		"r/a": {Key: "r/a", Value: rec{1}, Version: 5},
		"r/b": {Key: "r/b", Value: rec{2}, Version: 6},
	}, got)
	assert.Equal(t, []string{"r/c"}, bad)
}

func TestDecodeUpdate(t *testing.T) {
	type rec struct{ N int }
	kv := func(key, value string, version int64) store.KV {
		return store.KV{Key: key, Value: []byte(value), Version: version}
	}
	// start holds r/a at version 5 and r/b at version 6.
	start := func() map[string]store.Versioned[rec] {
		return map[string]store.Versioned[rec]{
			"r/a": {Key: "r/a", Value: rec{1}, Version: 5},
			"r/b": {Key: "r/b", Value: rec{2}, Version: 6},
		}
	}
	tests := []struct {
		name    string
		m       map[string]store.Versioned[rec]
		update  store.Update
		want    map[string]store.Versioned[rec]
		wantBad []string
	}{
		{
			name: "only changed keys are decoded: a bad unchanged record stays as it was",
			m:    start(),
			update: store.Update{
				Snapshot: map[string]store.KV{"r/a": kv("r/a", "not json", 5), "r/b": kv("r/b", `{"N":3}`, 9)},
				Changed:  []string{"r/b"},
			},
			want: map[string]store.Versioned[rec]{
				"r/a": {Key: "r/a", Value: rec{1}, Version: 5},
				"r/b": {Key: "r/b", Value: rec{3}, Version: 9},
			},
		},
		{
			name: "a changed key missing from the snapshot was deleted",
			m:    start(),
			update: store.Update{
				Snapshot: map[string]store.KV{"r/b": kv("r/b", `{"N":2}`, 6)},
				Changed:  []string{"r/a"},
			},
			want: map[string]store.Versioned[rec]{"r/b": {Key: "r/b", Value: rec{2}, Version: 6}},
		},
		{
			name: "a record that no longer decodes is dropped and reported",
			m:    start(),
			update: store.Update{
				Snapshot: map[string]store.KV{"r/a": kv("r/a", `{"N":1}`, 5), "r/b": kv("r/b", "not json", 7), "r/c": kv("r/c", `{"N":4}`, 8)},
				Changed:  []string{"r/b", "r/c"},
			},
			want: map[string]store.Versioned[rec]{
				"r/a": {Key: "r/a", Value: rec{1}, Version: 5},
				"r/c": {Key: "r/c", Value: rec{4}, Version: 8},
			},
			wantBad: []string{"r/b"},
		},
		{
			name: "a listing replaces everything, reusing records at the same version",
			m:    start(),
			update: store.Update{
				Snapshot: map[string]store.KV{"r/a": kv("r/a", "not json", 5), "r/d": kv("r/d", `{"N":5}`, 10)},
				Full:     true,
			},
			want: map[string]store.Versioned[rec]{
				"r/a": {Key: "r/a", Value: rec{1}, Version: 5},
				"r/d": {Key: "r/d", Value: rec{5}, Version: 10},
			},
		},
		{
			name:   "the first callback decodes the snapshot",
			update: store.Update{Snapshot: map[string]store.KV{"r/a": kv("r/a", `{"N":1}`, 5)}, Changed: []string{"r/a"}},
			want:   map[string]store.Versioned[rec]{"r/a": {Key: "r/a", Value: rec{1}, Version: 5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bad []string
			got := store.DecodeUpdate(tt.m, tt.update, func(key string, _ error) { bad = append(bad, key) })
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantBad, bad)
		})
	}
}
