package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
)

// TestNodeStreams checks that a watch of one node's assignments reads that
// node's stream: every event of its keys, with the cluster's revisions, in
// order, from the revision it starts after, and nothing of other nodes';
// and that a watch of every node's assignments still reads them all.
func TestNodeStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := open(t, testenv.Redis(t).URL(), redis.Options{})
	put := func(ops ...store.Op) int64 {
		rev, err := s.Txn(ctx, ops...)
		require.NoError(t, err)
		return rev
	}
	r1 := put(store.Put(store.AssignmentKey("n1", "a"), []byte("1"), store.AnyVersion))
	put(store.Put(store.AssignmentKey("n2", "a"), []byte("2"), store.AnyVersion))

	n1, err := s.Watch(ctx, store.AssignmentsPrefix("n1"), r1)
	require.NoError(t, err)
	all, err := s.Watch(ctx, store.PrefixAssignments, 0)
	require.NoError(t, err)
	jobs, err := s.Watch(ctx, store.JobPodsPrefix("n1"), 0)
	require.NoError(t, err)

	// One transaction touching both nodes, the cluster and a job pod.
	r3 := put(
		store.Put(store.AssignmentKey("n2", "b"), []byte("2b"), store.AnyVersion),
		store.Put(store.AssignmentKey("n1", "b"), []byte("1b"), store.AnyVersion),
		store.Put("functions/f", []byte("f"), store.AnyVersion),
		store.Put(store.AssignmentKey("n1", "c"), []byte("1c"), store.AnyVersion),
		store.Put(store.JobPodKey("n1", "p"), []byte("p"), store.AnyVersion))
	r4 := put(store.Delete(store.AssignmentKey("n1", "a"), store.AnyVersion))

	assert.Equal(t, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: store.AssignmentKey("n1", "b"), Value: []byte("1b"), Version: r3}},
		{Type: store.EventPut, KV: store.KV{Key: store.AssignmentKey("n1", "c"), Value: []byte("1c"), Version: r3}},
		{Type: store.EventDelete, KV: store.KV{Key: store.AssignmentKey("n1", "a"), Version: r4}},
	}, recv(t, n1, 3))
	assert.Len(t, recv(t, all, 6), 6, "every node's assignments, from the cluster stream")
	assert.Equal(t, store.JobPodKey("n1", "p"), recv(t, jobs, 1)[0].KV.Key)
	select {
	case ev := <-n1:
		t.Fatalf("n1's watch got more: %+v", ev)
	default:
	}
}

// TestNodeStreamCompacted trims a node's stream past a watch that starts
// too far back: the watch ends with ErrCompacted instead of skipping.
func TestNodeStreamCompacted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// MAXLEN ~ trims whole stream nodes (100 entries by default).
	s := open(t, testenv.Redis(t).URL(), redis.Options{History: 10})
	for i := range 500 {
		_, err := s.Txn(ctx, store.Put(store.AssignmentKey("n1", fmt.Sprintf("r%03d", i)), []byte("x"), store.AnyVersion))
		require.NoError(t, err)
	}
	ch, err := s.Watch(ctx, store.AssignmentsPrefix("n1"), 1)
	require.NoError(t, err)
	select {
	case ev := <-ch:
		require.ErrorIs(t, ev.Err, store.ErrCompacted)
	case <-time.After(waitTimeout):
		t.Fatal("no error from a watch behind its trimmed stream")
	}

	// From the newest revision it reads on.
	ch, err = s.Watch(ctx, store.AssignmentsPrefix("n1"), 500)
	require.NoError(t, err)
	rev, err := s.Txn(ctx, store.Put(store.AssignmentKey("n1", "new"), []byte("y"), store.AnyVersion))
	require.NoError(t, err)
	assert.Equal(t, rev, recv(t, ch, 1)[0].KV.Version)
}
