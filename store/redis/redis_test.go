package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
)

const waitTimeout = 15 * time.Second

func open(t *testing.T, url string, opts redis.Options) *redis.Store {
	t.Helper()
	s, err := redis.Open(context.Background(), url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func recv(t *testing.T, ch <-chan store.WatchEvent, n int) []store.Event {
	t.Helper()
	var out []store.Event
	deadline := time.After(waitTimeout)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "watch closed after %d events", len(out))
			require.NoError(t, ev.Err)
			out = append(out, ev.Event)
		case <-deadline:
			t.Fatalf("%d of %d events before the timeout", len(out), n)
		}
	}
	return out
}

// txnRetrying retries a create across a Redis restart. MustNotExist makes
// a retry of an attempt that did apply show up as a conflict.
func txnRetrying(t *testing.T, s store.Store, key string) int64 {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		rev, err := s.Txn(context.Background(), store.Put(key, []byte(key), store.MustNotExist))
		if err == nil {
			return rev
		}
		if errors.Is(err, store.ErrConflict) {
			kv, err := s.Get(context.Background(), key)
			require.NoError(t, err)
			return kv.Version
		}
		require.True(t, time.Now().Before(deadline), "txn %s: %v", key, err)
		time.Sleep(20 * time.Millisecond) // waiting out a server restart
	}
}

func TestPrefixIsolation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testenv.Redis(t)
	a := open(t, srv.URL(), redis.Options{Prefix: "a:"})
	b := open(t, srv.URL(), redis.Options{Prefix: "b:"})
	wa, err := a.Watch(ctx, "", 0)
	require.NoError(t, err)

	ra, err := a.Txn(ctx, store.Put("k", []byte("from a"), store.MustNotExist))
	require.NoError(t, err)
	rb, err := b.Txn(ctx, store.Put("k", []byte("from b"), store.MustNotExist), store.Put("only-b", nil, store.MustNotExist))
	require.NoError(t, err)
	assert.Equal(t, int64(1), ra, "each prefix has its own revisions")
	assert.Equal(t, int64(1), rb)

	kv, err := a.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from a", string(kv.Value))
	_, err = a.Get(ctx, "only-b")
	assert.ErrorIs(t, err, store.ErrNotFound)
	kvs, rev, err := a.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, kvs, 1)
	assert.Equal(t, int64(1), rev)

	// a's watch sees only a's write, then its own next one.
	got := recv(t, wa, 1)
	assert.Equal(t, "from a", string(got[0].KV.Value))
	r2, err := a.Txn(ctx, store.Put("k2", nil, store.MustNotExist))
	require.NoError(t, err)
	got = recv(t, wa, 1)
	assert.Equal(t, store.KV{Key: "k2", Value: []byte{}, Version: r2}, got[0].KV)
}

// TestSharedAcrossHandles is the multi-node case: two handles (two ebbd
// processes) on one prefix see each other's writes and conflicts.
func TestSharedAcrossHandles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testenv.Redis(t)
	n1 := open(t, srv.URL(), redis.Options{})
	n2 := open(t, srv.URL(), redis.Options{})
	w2, err := n2.Watch(ctx, "nodes/", 0)
	require.NoError(t, err)

	rev, err := n1.Txn(ctx, store.Put("nodes/a", []byte("1"), store.MustNotExist))
	require.NoError(t, err)
	assert.Equal(t, []store.Event{{Type: store.EventPut, KV: store.KV{Key: "nodes/a", Value: []byte("1"), Version: rev}}}, recv(t, w2, 1))
	_, err = n2.Txn(ctx, store.Put("nodes/a", []byte("2"), store.MustNotExist))
	assert.ErrorIs(t, err, store.ErrConflict)
	rev2, err := n2.Txn(ctx, store.Put("nodes/a", []byte("2"), rev))
	require.NoError(t, err)
	kv, err := n1.Get(ctx, "nodes/a")
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "nodes/a", Value: []byte("2"), Version: rev2}, kv)
}

// TestWatchSurvivesRestart restarts redis-server under a running watch:
// it must reconnect and deliver every event once, in order.
func TestWatchSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testenv.Redis(t)
	s := open(t, srv.URL(), redis.Options{})
	ch, err := s.Watch(ctx, "w/", 0)
	require.NoError(t, err)

	var want []string
	write := func(from, to int) {
		for i := from; i < to; i++ {
			key := fmt.Sprintf("w/%03d", i)
			txnRetrying(t, s, key)
			want = append(want, key)
		}
	}
	write(0, 20)
	recv(t, ch, 10) // the watch is mid-stream when the server dies
	srv.Restart(t)
	write(20, 40)
	srv.Restart(t)
	write(40, 50)

	var got []string
	for i, ev := range recv(t, ch, 40) {
		got = append(got, ev.KV.Key)
		assert.Equal(t, int64(i+11), ev.KV.Version)
	}
	assert.Equal(t, want[10:], got)
	// Nothing more: the next event is a new write.
	rev := txnRetrying(t, s, "w/last")
	last := recv(t, ch, 1)
	assert.Equal(t, store.KV{Key: "w/last", Value: []byte("w/last"), Version: rev}, last[0].KV)
}

// TestWatchAfterDataLoss restarts Redis without its AOF under a running
// watch. The revision counter went back, so the watch's position means
// nothing: it must end with ErrCompacted rather than skip or mix histories.
func TestWatchAfterDataLoss(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testenv.Redis(t)
	s := open(t, srv.URL(), redis.Options{})
	ch, err := s.Watch(ctx, "", 0)
	require.NoError(t, err)
	for i := range 5 {
		txnRetrying(t, s, fmt.Sprintf("k%d", i))
	}
	recv(t, ch, 5)

	srv.Kill()
	require.NoError(t, os.RemoveAll(filepath.Join(srv.Dir, "appendonlydir")))
	srv.Restart(t)
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch closed without an error")
		require.ErrorIs(t, ev.Err, store.ErrCompacted)
	case <-time.After(waitTimeout):
		t.Fatal("watch did not notice the data loss")
	}
}

func TestOpenErrors(t *testing.T) {
	srv := testenv.Redis(t)
	dead := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	tests := []struct {
		name string
		url  string
		opts redis.Options
	}{
		{"bad scheme", "http://" + srv.Addr, redis.Options{}},
		{"bad db", "redis://" + srv.Addr + "/x", redis.Options{}},
		{"nothing listening", dead, redis.Options{}},
		{"negative history", srv.URL(), redis.Options{History: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := redis.Open(ctx, tc.url, tc.opts)
			require.Error(t, err)
			require.Nil(t, s)
		})
	}
}

// TestTxnFailsWithoutTrace breaks the store on purpose (the revision
// counter reset under a live stream, so the next event ID is too small):
// Redis does not undo a failing script, so the script must fail before it
// writes anything.
func TestTxnFailsWithoutTrace(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	s := open(t, srv.URL(), redis.Options{Prefix: "x:"})
	rev, err := s.Txn(ctx, store.Put("a", []byte("1"), store.MustNotExist))
	require.NoError(t, err)

	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	require.NoError(t, raw.Del(ctx, "x:rev").Err())

	_, err = s.Txn(ctx, store.Put("b", []byte("2"), store.MustNotExist), store.Put("a", []byte("3"), rev))
	require.Error(t, err)
	assert.False(t, errors.Is(err, store.ErrConflict), "not a conflict: %v", err)
	kvs, _, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []store.KV{{Key: "a", Value: []byte("1"), Version: rev}}, kvs)
	n, err := raw.XLen(ctx, "x:events").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}
