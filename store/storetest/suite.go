package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

// smallHistory is the event history the compaction tests ask for. The
// tests write far more than it plus any implementation's read-ahead.
const smallHistory = 100

// Run runs the conformance suite. Each subtest creates its own backing
// through newStore.
func Run(t *testing.T, newStore NewFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewFunc)
	}{
		{"GetList", testGetList},
		{"ListPrefixBytes", testListPrefixBytes},
		{"ValuesAreCopies", testValuesAreCopies},
		{"TxnVersionModes", testTxnVersionModes},
		{"TxnAllOrNothing", testTxnAllOrNothing},
		{"TxnInvalid", testTxnInvalid},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Delete", testDelete},
		{"WatchOrdering", testWatchOrdering},
		{"WatchReplay", testWatchReplay},
		{"WatchPrefix", testWatchPrefix},
		{"WatchFutureRevision", testWatchFutureRevision},
		{"WatchNegativeRevision", testWatchNegativeRevision},
		{"Compacted", testCompacted},
		{"SlowWatcher", testSlowWatcher},
		{"WatchCancel", testWatchCancel},
		{"Close", testClose},
		{"CancelledContext", testCancelledContext},
		{"Reopen", testReopen},
		{"Cache", testCache},
		{"CacheAfterCompaction", testCacheAfterCompaction},
		{"Fenced", testFenced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func testGetList(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)

	_, err := s.Get(ctx, "a/1")
	require.ErrorIs(t, err, store.ErrNotFound)
	kvs, rev := mustList(t, s, "")
	require.Empty(t, kvs)
	require.Zero(t, rev, "an empty store is at revision 0")

	r1 := mustTxn(t, s,
		store.Put("a/2", []byte("two"), store.MustNotExist),
		store.Put("a/1", []byte("one"), store.MustNotExist),
		store.Put("ab", []byte("ab"), store.MustNotExist),
		store.Put("b/1", []byte("b"), store.MustNotExist),
	)
	require.Positive(t, r1)
	r2 := mustTxn(t, s, store.Put("a/3", nil, store.MustNotExist))
	require.Equal(t, r1+1, r2, "each write transaction takes the next revision")

	kv, err := s.Get(ctx, "a/1")
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "a/1", Value: []byte("one"), Version: r1}, kv)
	kv, err = s.Get(ctx, "a/3")
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "a/3", Version: r2}, normalize(kv), "empty value")

	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/2", "a/3"}},
		{"a", []string{"a/1", "a/2", "a/3", "ab"}},
		{"", []string{"a/1", "a/2", "a/3", "ab", "b/1"}},
		{"b/1", []string{"b/1"}},
		{"b/1/", nil},
		{"c", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("prefix=%q", tc.prefix), func(t *testing.T) {
			kvs, rev := mustList(t, s, tc.prefix)
			assert.Equal(t, r2, rev, "listing revision is the store revision")
			var keys []string
			for _, kv := range kvs {
				keys = append(keys, kv.Key)
				assert.Contains(t, []int64{r1, r2}, kv.Version)
			}
			assert.Equal(t, tc.want, keys)
		})
	}
}

// testListPrefixBytes checks byte-wise ordering and prefixes ending in 0xff,
// where a naive "prefix + 1" range end overflows.
func testListPrefixBytes(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, 0)
	keys := []string{"x\xff\xff", "x\xff/1", "x\xff", "y", "x", "x/é", "x/z", "x\x00"}
	var ops []store.Op
	for _, k := range keys {
		ops = append(ops, store.Put(k, []byte(k), store.MustNotExist))
	}
	mustTxn(t, s, ops...)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"x\xff", []string{"x\xff", "x\xff/1", "x\xff\xff"}},
		{"x\xff\xff", []string{"x\xff\xff"}},
		{"x/", []string{"x/z", "x/é"}},
		{"x", []string{"x", "x\x00", "x/z", "x/é", "x\xff", "x\xff/1", "x\xff\xff"}},
		{"\xff", nil},
	}
	for _, tc := range tests {
		kvs, _ := mustList(t, s, tc.prefix)
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key)
			assert.Equal(t, kv.Key, string(kv.Value))
		}
		assert.Equal(t, tc.want, got, "prefix %q", tc.prefix)
	}
}

func testValuesAreCopies(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	in := bytes.Clone(binary)
	mustTxn(t, s, store.Put("bin", in, store.MustNotExist))
	in[0] = 'X' // the store must not keep the caller's slice

	kv, err := s.Get(ctx, "bin")
	require.NoError(t, err)
	require.Equal(t, binary, kv.Value)
	kv.Value[1] = 'Y' // nor hand out its own memory
	kvs, _ := mustList(t, s, "bin")
	require.Len(t, kvs, 1)
	require.Equal(t, binary, kvs[0].Value)
	kvs[0].Value[2] = 'Z'
	kv, err = s.Get(ctx, "bin")
	require.NoError(t, err)
	require.Equal(t, binary, kv.Value)
}

func testTxnVersionModes(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	const (
		put   = store.OpPut
		del   = store.OpDelete
		check = store.OpCheck
		// current stands for the key's actual version; current-1 for a stale one.
		current = -100
		stale   = current - 1
	)
	tests := []struct {
		name     string
		kind     store.OpKind
		present  bool
		version  int64
		conflict bool
		newRev   bool   // success creates a revision
		after    string // value afterwards; "" means absent
	}{
		{"put MustNotExist absent", put, false, store.MustNotExist, false, true, "new"},
		{"put MustNotExist present", put, true, store.MustNotExist, true, false, "old"},
		{"put exact present", put, true, current, false, true, "new"},
		{"put stale present", put, true, stale, true, false, "old"},
		{"put exact absent", put, false, 7, true, false, ""},
		{"put AnyVersion present", put, true, store.AnyVersion, false, true, "new"},
		{"put AnyVersion absent", put, false, store.AnyVersion, false, true, "new"},
		{"delete exact present", del, true, current, false, true, ""},
		{"delete stale present", del, true, stale, true, false, "old"},
		{"delete exact absent", del, false, 7, true, false, ""},
		{"delete AnyVersion present", del, true, store.AnyVersion, false, true, ""},
		{"delete AnyVersion absent is a no-op", del, false, store.AnyVersion, false, false, ""},
		{"delete MustNotExist absent is a no-op", del, false, store.MustNotExist, false, false, ""},
		{"delete MustNotExist present", del, true, store.MustNotExist, true, false, "old"},
		{"check exact present", check, true, current, false, false, "old"},
		{"check stale present", check, true, stale, true, false, "old"},
		{"check MustNotExist absent", check, false, store.MustNotExist, false, false, ""},
		{"check MustNotExist present", check, true, store.MustNotExist, true, false, "old"},
		{"check exact absent", check, false, 3, true, false, ""},
		{"check AnyVersion absent", check, false, store.AnyVersion, false, false, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("modes/%02d", i)
			var have int64
			if tc.present {
				have = mustTxn(t, s, store.Put(key, []byte("old"), store.MustNotExist))
			}
			op := store.Op{Kind: tc.kind, Key: key, Version: tc.version}
			if tc.kind == put {
				op.Value = []byte("new")
			}
			switch tc.version {
			case current:
				op.Version = have
			case stale:
				op.Version = have - 1
			}
			_, before := mustList(t, s, "")
			rev, err := s.Txn(ctx, op)
			_, after := mustList(t, s, "")
			if tc.conflict {
				require.Error(t, err)
				require.True(t, isConflict(err), "want ErrConflict, got %v", err)
				require.Equal(t, before, after, "a conflict creates no revision")
			} else {
				require.NoError(t, err)
				if tc.newRev {
					require.Equal(t, before+1, rev)
				} else {
					require.Equal(t, before, rev, "a transaction that changes nothing returns the current revision")
				}
				require.Equal(t, rev, after)
			}
			kv, err := s.Get(ctx, key)
			if tc.after == "" {
				require.ErrorIs(t, err, store.ErrNotFound)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.after, string(kv.Value))
			if tc.after == "new" {
				require.Equal(t, rev, kv.Version)
			} else {
				require.Equal(t, have, kv.Version)
			}
		})
	}
}

func testTxnAllOrNothing(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	base := mustTxn(t, s,
		store.Put("t/a", []byte("a0"), store.MustNotExist),
		store.Put("t/b", []byte("b0"), store.MustNotExist),
	)
	watch := mustWatch(t, ctx, s, "t/", base)

	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"last op fails", []store.Op{
			store.Put("t/a", []byte("a1"), base),
			store.Delete("t/b", base),
			store.Put("t/c", []byte("c1"), store.MustNotExist),
			store.Check("t/a", base+1),
		}},
		{"first op fails", []store.Op{
			store.Put("t/c", []byte("c1"), store.AnyVersion),
			store.Put("t/a", []byte("a1"), base),
			store.Check("t/x", base),
		}},
		{"middle op fails", []store.Op{
			store.Put("t/a", []byte("a1"), store.AnyVersion),
			store.Put("t/b", []byte("b1"), store.MustNotExist),
			store.Put("t/c", []byte("c1"), store.AnyVersion),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Txn(ctx, tc.ops...)
			require.True(t, isConflict(err), "want ErrConflict, got %v", err)
			kvs, rev := mustList(t, s, "t/")
			assert.Equal(t, base, rev)
			assert.Equal(t, []store.KV{
				{Key: "t/a", Value: []byte("a0"), Version: base},
				{Key: "t/b", Value: []byte("b0"), Version: base},
			}, kvs)
		})
	}

	// A transaction that holds lands every write under one revision, in op order.
	rev := mustTxn(t, s,
		store.Check("t/b", base),
		store.Put("t/c", []byte("c1"), store.MustNotExist),
		store.Delete("t/b", base),
		store.Put("t/a", []byte("a1"), base),
		store.Delete("t/missing", store.AnyVersion),
	)
	require.Equal(t, base+1, rev)
	assert.Equal(t, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "t/c", Value: []byte("c1"), Version: rev}},
		{Type: store.EventDelete, KV: store.KV{Key: "t/b", Version: rev}},
		{Type: store.EventPut, KV: store.KV{Key: "t/a", Value: []byte("a1"), Version: rev}},
	}, recvEvents(t, watch, 3), "the failed transactions left no events")
	marker(t, s, watch, "t/")

	// A check may guard a write to the same key.
	rev2 := mustTxn(t, s, store.Check("t/a", rev), store.Put("t/a", []byte("a2"), rev))
	require.Equal(t, rev+2, rev2)

	// An empty transaction changes nothing.
	same, err := s.Txn(ctx)
	require.NoError(t, err)
	require.Equal(t, rev2, same)
}

func testTxnInvalid(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"empty key", []store.Op{store.Put("ok", nil, store.AnyVersion), store.Put("", nil, store.AnyVersion)}},
		{"key written twice", []store.Op{store.Put("k", []byte("1"), store.AnyVersion), store.Put("k", []byte("2"), store.AnyVersion)}},
		{"put and delete of one key", []store.Op{store.Put("k", []byte("1"), store.AnyVersion), store.Delete("k", store.AnyVersion)}},
		{"version below AnyVersion", []store.Op{store.Put("k", nil, -2)}},
		{"unknown kind", []store.Op{{Kind: store.OpKind(99), Key: "k", Version: store.AnyVersion}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Txn(ctx, tc.ops...)
			require.Error(t, err)
			require.False(t, isConflict(err), "a malformed transaction is not a conflict: %v", err)
			kvs, rev := mustList(t, s, "")
			require.Empty(t, kvs)
			require.Zero(t, rev)
		})
	}
}

// testConcurrentCAS increments one counter from many goroutines with
// read-modify-write transactions; a lost update would show in the total.
func testConcurrentCAS(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	const workers, perWorker = 8, 25
	mustTxn(t, s, store.Put("counter", []byte("0"), store.MustNotExist))

	var (
		mu   sync.Mutex
		revs = map[int64]bool{}
	)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				kv, err := s.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					errs <- err
					return
				}
				rev, err := s.Txn(ctx, store.Put("counter", []byte(strconv.Itoa(n+1)), kv.Version))
				if isConflict(err) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if revs[rev] {
					errs <- fmt.Errorf("revision %d returned twice", rev)
				}
				revs[rev] = true
				mu.Unlock()
				done++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	kv, err := s.Get(ctx, "counter")
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*perWorker), string(kv.Value))
	require.Len(t, revs, workers*perWorker)
}

func testDelete(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	r1 := mustTxn(t, s, store.Put("d/1", []byte("x"), store.MustNotExist), store.Put("d/2", []byte("y"), store.MustNotExist))
	watch := mustWatch(t, ctx, s, "d/", r1)

	r2 := mustTxn(t, s, store.Delete("d/1", r1))
	_, err := s.Get(ctx, "d/1")
	require.ErrorIs(t, err, store.ErrNotFound)
	kvs, rev := mustList(t, s, "d/")
	require.Equal(t, r2, rev)
	require.Equal(t, []store.KV{{Key: "d/2", Value: []byte("y"), Version: r1}}, kvs)

	// Deleting again: a no-op with AnyVersion, a conflict at the old version.
	same := mustTxn(t, s, store.Delete("d/1", store.AnyVersion))
	require.Equal(t, r2, same)
	_, err = s.Txn(ctx, store.Delete("d/1", r1))
	require.True(t, isConflict(err), "got %v", err)

	// The key can be created again; its version is the new revision.
	r3 := mustTxn(t, s, store.Put("d/1", []byte("z"), store.MustNotExist))
	assert.Equal(t, []store.Event{
		{Type: store.EventDelete, KV: store.KV{Key: "d/1", Version: r2}},
		{Type: store.EventPut, KV: store.KV{Key: "d/1", Value: []byte("z"), Version: r3}},
	}, recvEvents(t, watch, 2))
	marker(t, s, watch, "d/")
}

// testWatchOrdering runs concurrent writers and checks that a watch sees
// every committed transaction exactly once, in revision order, with each
// transaction's events in op order.
func testWatchOrdering(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, 0)
	watch := mustWatch(t, ctx, s, "", 0)

	const writers, perWriter = 4, 30
	var (
		mu        sync.Mutex
		committed = map[int64][]store.Event{}
		wg        sync.WaitGroup
	)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				a, b := fmt.Sprintf("o/%d/%03d/a", w, i), fmt.Sprintf("o/%d/%03d/b", w, i)
				val := []byte(fmt.Sprintf("%d-%d", w, i))
				rev, err := s.Txn(ctx, store.Put(b, val, store.MustNotExist), store.Put(a, val, store.MustNotExist))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				committed[rev] = []store.Event{
					{Type: store.EventPut, KV: store.KV{Key: b, Value: val, Version: rev}},
					{Type: store.EventPut, KV: store.KV{Key: a, Value: val, Version: rev}},
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := recvEvents(t, watch, 2*writers*perWriter)
	var want []store.Event
	for rev := int64(1); rev <= int64(writers*perWriter); rev++ {
		require.Contains(t, committed, rev, "revisions are contiguous")
		want = append(want, committed[rev]...)
	}
	require.Equal(t, want, got)
	marker(t, s, watch, "")
}

// testWatchReplay writes a history and checks that a watch from any past
// revision replays exactly the events after it, with and without a prefix.
func testWatchReplay(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, 0)
	type step struct {
		rev    int64
		events []store.Event
	}
	var history []step
	do := func(ops ...store.Op) {
		rev := mustTxn(t, s, ops...)
		var evs []store.Event
		for _, op := range ops {
			switch op.Kind {
			case store.OpPut:
				evs = append(evs, store.Event{Type: store.EventPut, KV: store.KV{Key: op.Key, Value: op.Value, Version: rev}})
			case store.OpDelete:
				evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, Version: rev}})
			}
		}
		history = append(history, step{rev, evs})
	}
	do(store.Put("p/1", []byte("1"), store.MustNotExist), store.Put("q/1", []byte("q"), store.MustNotExist))
	do(store.Put("p/2", []byte("2"), store.MustNotExist))
	do(store.Put("p/1", []byte("1b"), store.AnyVersion))
	do(store.Delete("q/1", store.AnyVersion), store.Put("p/3", []byte("3"), store.MustNotExist))
	do(store.Put("q/2", []byte("q2"), store.MustNotExist))
	do(store.Delete("p/2", store.AnyVersion))
	do(store.Put("pp", []byte("pp"), store.MustNotExist))

	for _, prefix := range []string{"", "p/", "q/", "p"} {
		for from := 0; from <= len(history); from++ {
			after := int64(0)
			if from > 0 {
				after = history[from-1].rev
			}
			want := []store.Event{}
			for _, st := range history[from:] {
				for _, ev := range st.events {
					if len(ev.KV.Key) >= len(prefix) && ev.KV.Key[:len(prefix)] == prefix {
						want = append(want, ev)
					}
				}
			}
			wctx, wcancel := context.WithCancel(ctx)
			ch := mustWatch(t, wctx, s, prefix, after)
			got := recvEvents(t, ch, len(want))
			require.Equal(t, want, got, "prefix %q after %d", prefix, after)
			wcancel()
		}
	}
	// Exactly: nothing beyond what was written.
	ch := mustWatch(t, ctx, s, "p/", history[len(history)-1].rev)
	marker(t, s, ch, "p/")
}

func testWatchPrefix(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, 0)
	slash := mustWatch(t, ctx, s, "a/", 0)
	bare := mustWatch(t, ctx, s, "a", 0)
	other := mustWatch(t, ctx, s, "b/", 0)
	r1 := mustTxn(t, s, store.Put("ab", []byte("x"), store.MustNotExist), store.Put("b/1", []byte("y"), store.MustNotExist))
	r2 := mustTxn(t, s, store.Put("a/1", []byte("z"), store.MustNotExist))
	r3 := mustTxn(t, s, store.Put("a", []byte("w"), store.MustNotExist), store.Delete("ab", store.AnyVersion))

	assert.Equal(t, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "a/1", Value: []byte("z"), Version: r2}},
	}, recvEvents(t, slash, 1))
	marker(t, s, slash, "a/")
	assert.Equal(t, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "ab", Value: []byte("x"), Version: r1}},
		{Type: store.EventPut, KV: store.KV{Key: "a/1", Value: []byte("z"), Version: r2}},
		{Type: store.EventPut, KV: store.KV{Key: "a", Value: []byte("w"), Version: r3}},
		{Type: store.EventDelete, KV: store.KV{Key: "ab", Version: r3}},
	}, recvEvents(t, bare, 4))
	assert.Equal(t, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "b/1", Value: []byte("y"), Version: r1}},
	}, recvEvents(t, other, 1))
	marker(t, s, other, "b/")
}

// testWatchFutureRevision watches from beyond the newest revision: events
// arrive once revisions pass it.
func testWatchFutureRevision(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, 0)
	ch := mustWatch(t, ctx, s, "", 2)
	mustTxn(t, s, store.Put("f/1", nil, store.AnyVersion))
	mustTxn(t, s, store.Put("f/2", nil, store.AnyVersion))
	r3 := mustTxn(t, s, store.Put("f/3", []byte("3"), store.AnyVersion))
	require.Equal(t, int64(3), r3)
	assert.Equal(t, []store.Event{{Type: store.EventPut, KV: store.KV{Key: "f/3", Value: []byte("3"), Version: r3}}}, recvEvents(t, ch, 1))
	marker(t, s, ch, "")
}

func testWatchNegativeRevision(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, 0)
	err := watchErr(t, s, "", -1)
	require.Error(t, err)
	require.False(t, errors.Is(err, store.ErrCompacted) || errors.Is(err, store.ErrClosed), "got %v", err)
}

// writeEvents writes n transactions of per puts each, cycling over keys
// under prefix, and returns the last revision.
func writeEvents(t testing.TB, s store.Store, prefix string, n, per int) int64 {
	t.Helper()
	var rev int64
	for i := range n {
		ops := make([]store.Op, per)
		for j := range ops {
			ops[j] = store.Put(fmt.Sprintf("%s%03d", prefix, j), []byte(fmt.Sprintf("%d/%d", i, j)), store.AnyVersion)
		}
		rev = mustTxn(t, s, ops...)
	}
	return rev
}

func testCompacted(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, smallHistory)
	last := writeEvents(t, s, "c/", 60, 20) // 1200 events, 12× the history

	for _, after := range []int64{0, 1, last - 40} {
		err := watchErr(t, s, "", after)
		require.ErrorIs(t, err, store.ErrCompacted, "watch after %d", after)
		err = watchErr(t, s, "c/", after)
		require.ErrorIs(t, err, store.ErrCompacted, "watch c/ after %d", after)
	}

	// The last History events remain: resuming within them replays exactly.
	ch := mustWatch(t, ctx, s, "c/", last-2)
	got := recvEvents(t, ch, 40)
	require.Equal(t, last-1, got[0].KV.Version)
	require.Equal(t, last, got[39].KV.Version)
	marker(t, s, ch, "c/")

	// List then watch from the listing's revision always works.
	kvs, rev := mustList(t, s, "c/")
	require.Len(t, kvs, 21)
	ch = mustWatch(t, ctx, s, "c/", rev)
	marker(t, s, ch, "c/")
}

// testSlowWatcher checks that a watcher that never reads does not hold up
// writers, and that once it falls out of the history it ends with
// ErrCompacted after a gap-free prefix of the events.
func testSlowWatcher(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, smallHistory)
	start := mustTxn(t, s, store.Put("s/start", nil, store.MustNotExist))
	ch := mustWatch(t, ctx, s, "s/", start)

	done := make(chan int64)
	go func() {
		var rev int64
		defer func() { done <- rev }()
		for i := range 150 {
			ops := make([]store.Op, 20)
			for j := range ops {
				ops[j] = store.Put(fmt.Sprintf("s/%03d", j), []byte(strconv.Itoa(i)), store.AnyVersion)
			}
			r, err := s.Txn(ctx, ops...)
			if err != nil {
				t.Errorf("txn %d: %v", i, err)
				return
			}
			rev = r
		}
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("writers blocked behind a watcher that does not read")
	}

	events, err := recvTerminal(t, ch)
	require.ErrorIs(t, err, store.ErrCompacted)
	// What was delivered is the exact start of the history.
	for i, ev := range events {
		require.Equal(t, start+1+int64(i/20), ev.KV.Version, "event %d", i)
		require.Equal(t, fmt.Sprintf("s/%03d", i%20), ev.KV.Key, "event %d", i)
	}
	require.Less(t, len(events), 150*20, "the watcher was not cut off")
}

func testWatchCancel(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, 0)
	mustTxn(t, s, store.Put("w/1", nil, store.MustNotExist))
	ctx, cancel := context.WithCancel(context.Background())
	idle := mustWatch(t, ctx, s, "idle/", 0)
	busy := mustWatch(t, ctx, s, "w/", 0)
	recvEvents(t, busy, 1)
	cancel()
	for _, ch := range []<-chan store.WatchEvent{idle, busy} {
		select {
		case ev, ok := <-ch:
			require.False(t, ok, "cancelled watch delivered %+v", ev)
		case <-time.After(waitTimeout):
			t.Fatal("watch channel not closed after cancel")
		}
	}
	// The store is unaffected.
	mustTxn(t, s, store.Put("w/2", nil, store.MustNotExist))
}

func testClose(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openNew(t, newStore, 0)
	rev := mustTxn(t, s, store.Put("k", []byte("v"), store.MustNotExist))
	idle := mustWatch(t, ctx, s, "", rev)
	busy := mustWatch(t, ctx, s, "", 0)
	recvEvents(t, busy, 1)

	require.NoError(t, s.Close())
	for _, ch := range []<-chan store.WatchEvent{idle, busy} {
		_, err := recvTerminal(t, ch)
		require.ErrorIs(t, err, store.ErrClosed)
	}
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, store.ErrClosed)
	_, _, err = s.List(ctx, "")
	assert.ErrorIs(t, err, store.ErrClosed)
	_, err = s.Txn(ctx, store.Put("k2", nil, store.AnyVersion))
	assert.ErrorIs(t, err, store.ErrClosed)
	assert.ErrorIs(t, watchErr(t, s, "", 0), store.ErrClosed)
	assert.NoError(t, s.Close(), "Close is idempotent")
}

func testCancelledContext(t *testing.T, newStore NewFunc) {
	s := openNew(t, newStore, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	_, _, err = s.List(ctx, "")
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.Txn(ctx, store.Put("k", nil, store.AnyVersion))
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.Get(context.Background(), "k")
	assert.ErrorIs(t, err, store.ErrNotFound, "a cancelled Txn wrote nothing")
}

// testReopen checks that data, revision and history survive closing and
// opening the store again.
func testReopen(t *testing.T, newStore NewFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := newStore(t, 0)
	s1 := mustOpen(t, open)
	var want []store.Event
	record := func(ch <-chan store.WatchEvent, n int) { want = append(want, recvEvents(t, ch, n)...) }
	all := mustWatch(t, ctx, s1, "", 0)
	mustTxn(t, s1, store.Put("r/1", []byte("1"), store.MustNotExist), store.Put("r/2", []byte("2"), store.MustNotExist))
	r2 := mustTxn(t, s1, store.Delete("r/1", store.AnyVersion), store.Put("r/3", []byte{0, 1, 2}, store.MustNotExist))
	mustTxn(t, s1, store.Put("r/2", []byte("2b"), r2-1))
	record(all, 5)
	kvs1, rev1 := mustList(t, s1, "")
	require.NoError(t, s1.Close())
	_, err := recvTerminal(t, all)
	require.ErrorIs(t, err, store.ErrClosed)

	s2 := mustOpen(t, open)
	kvs2, rev2 := mustList(t, s2, "")
	require.Equal(t, rev1, rev2)
	require.Equal(t, kvs1, kvs2)
	require.Equal(t, want, recvEvents(t, mustWatch(t, ctx, s2, "", 0), len(want)), "history survives reopen")
	r := mustTxn(t, s2, store.Put("r/4", nil, store.MustNotExist))
	require.Equal(t, rev1+1, r, "revisions continue after reopen")
}

// testFenced: a leader's writes through store.Fenced land while its
// leadership record is at the version it wrote, and are rejected, writing
// nothing, once a new leader has rewritten the record.
func testFenced(t *testing.T, newStore NewFunc) {
	ctx := context.Background()
	s := openNew(t, newStore, 0)
	const record = "leader/controlplane"
	first := mustTxn(t, s, store.Put(record, []byte("a"), store.AnyVersion))
	old := store.Fenced(s, record, first)

	_, err := old.Txn(ctx, store.Put("scales/x", []byte("1"), store.AnyVersion))
	require.NoError(t, err, "the current leader writes")

	second := mustTxn(t, s, store.Put(record, []byte("b"), store.AnyVersion))
	_, err = old.Txn(ctx, store.Put("scales/x", []byte("2"), store.AnyVersion), store.Delete("scales/y", store.AnyVersion))
	require.ErrorIs(t, err, store.ErrConflict, "the deposed leader's write is refused")
	kv, err := s.Get(ctx, "scales/x")
	require.NoError(t, err)
	assert.Equal(t, "1", string(kv.Value), "the refused write changed nothing")

	_, err = store.Fenced(s, record, second).Txn(ctx, store.Put("scales/x", []byte("3"), store.AnyVersion))
	require.NoError(t, err, "the new leader writes")
	require.NoError(t, old.Close())
	_, _, err = s.List(ctx, "")
	require.NoError(t, err, "closing a fenced view leaves the store open")
}
