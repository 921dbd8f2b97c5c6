package nodeloss_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/controlplane/nodeloss"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func ep(key, node string, version int64) store.Versioned[store.Endpoint] {
	return store.Versioned[store.Endpoint]{Key: key, Version: version, Value: store.Endpoint{Node: node, Addr: "x"}}
}

func TestPlan(t *testing.T) {
	eps := []store.Versioned[store.Endpoint]{
		ep("endpoints/r/a1", "a", 3), ep("endpoints/r/b1", "b", 4), ep("endpoints/r/a2", "a", 5), ep("endpoints/r/x", "", 6),
	}
	tests := []struct {
		name string
		live *liveness.Set
		ops  []store.Op
		dead []string
	}{
		{"not polled yet: nothing", nil, nil, nil},
		{"all live: nothing", liveness.NewSet(1, []string{"a", "b"}), nil, nil},
		{"a dead: its endpoints at their versions", liveness.NewSet(2, []string{"b"}),
			[]store.Op{store.Delete("endpoints/r/a1", 3), store.Delete("endpoints/r/a2", 5)}, []string{"a"}},
		{"none live: all but the nodeless", liveness.NewSet(3, nil),
			[]store.Op{store.Delete("endpoints/r/a1", 3), store.Delete("endpoints/r/b1", 4), store.Delete("endpoints/r/a2", 5)}, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops, dead := nodeloss.Plan(tc.live, eps)
			assert.Equal(t, tc.ops, ops)
			assert.Equal(t, tc.dead, dead)
		})
	}
}

// TestCleanThroughAFencedStore: the clean-up deletes a dead node's
// endpoints through the leader's store, and a deposed leader's clean-up
// writes nothing.
func TestCleanThroughAFencedStore(t *testing.T) {
	ctx := context.Background()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "ebb.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	put := func(key, node string) {
		_, err := s.Txn(ctx, store.PutJSON(key, store.Endpoint{Node: node, Addr: "127.0.0.1:1"}, store.AnyVersion))
		require.NoError(t, err)
	}
	put("endpoints/r/a1", "a")
	put("endpoints/r/b1", "b")
	term, err := s.Txn(ctx, store.Put("leader/controlplane", []byte("me"), store.AnyVersion))
	require.NoError(t, err)
	leader := store.Fenced(s, "leader/controlplane", term)
	live := liveness.NewSet(1, []string{"b"})

	_, err = s.Txn(ctx, store.Put("leader/controlplane", []byte("other"), store.AnyVersion))
	require.NoError(t, err)
	require.ErrorIs(t, nodeloss.Clean(ctx, leader, live, nodeloss.FromStore(s)), store.ErrConflict, "deposed")
	eps, _, err := s.List(ctx, store.PrefixEndpoints)
	require.NoError(t, err)
	assert.Len(t, eps, 2)

	kv, err := s.Get(ctx, "leader/controlplane")
	require.NoError(t, err)
	require.NoError(t, nodeloss.Clean(ctx, store.Fenced(s, "leader/controlplane", kv.Version), live, nodeloss.FromStore(s)))
	eps, _, err = s.List(ctx, store.PrefixEndpoints)
	require.NoError(t, err)
	require.Len(t, eps, 1)
	assert.Equal(t, "endpoints/r/b1", eps[0].Key)
}
