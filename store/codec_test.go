package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func openEmbedded(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "ebb.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestJSONHelpers(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t)
	scales := []store.Scale{
		{Revision: "hello-00001", Function: "hello", Desired: 2},
		{Revision: "hello-00002", Function: "hello", Desired: 0, Panic: true},
	}
	rev, err := s.Txn(ctx,
		store.PutJSON(store.ScaleKey(scales[0].Revision), scales[0], store.MustNotExist),
		store.PutJSON(store.ScaleKey(scales[1].Revision), scales[1], store.MustNotExist),
		store.Put(store.NodeKey("n1"), []byte("not json"), store.MustNotExist),
	)
	require.NoError(t, err)

	got, version, err := store.GetJSON[store.Scale](ctx, s, store.ScaleKey("hello-00002"))
	require.NoError(t, err)
	assert.Equal(t, scales[1], got)
	assert.Equal(t, rev, version)

	list, lrev, err := store.ListJSON[store.Scale](ctx, s, store.PrefixScales)
	require.NoError(t, err)
	assert.Equal(t, rev, lrev)
	require.Len(t, list, 2)
	for i, v := range list {
		assert.Equal(t, store.Versioned[store.Scale]{Key: store.ScaleKey(scales[i].Revision), Value: scales[i], Version: rev}, v)
	}

	_, _, err = store.GetJSON[store.Scale](ctx, s, store.ScaleKey("missing"))
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, _, err = store.GetJSON[store.Node](ctx, s, store.NodeKey("n1"))
	assert.ErrorContains(t, err, "decode nodes/n1")
	_, _, err = store.ListJSON[store.Node](ctx, s, store.PrefixNodes)
	assert.ErrorContains(t, err, "decode nodes/n1")

	assert.Panics(t, func() { store.PutJSON("k", make(chan int), store.AnyVersion) })
}

func TestKeys(t *testing.T) {
	tests := []struct{ got, want string }{
		{store.FunctionKey("hello"), "functions/hello"},
		{store.RevisionKey("hello", "hello-00001"), "revisions/hello/hello-00001"},
		{store.EndpointKey("hello-00001", "r1"), "endpoints/hello-00001/r1"},
		{store.PortKey("node-a", 30001), "ports/node-a/30001"},
		{store.RevStatusKey("hello-00001", "node-a"), "revstatus/hello-00001/node-a"},
		{store.ImageKey("registry.local/team/app:v1"), "images/registry.local%2Fteam%2Fapp:v1"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.got)
	}
	// Prefixes of one function never match another whose name extends it.
	assert.NotContains(t, store.RevisionKey("hello2", "x"), store.RevisionsPrefix("hello"))
}

func TestResolveTraffic(t *testing.T) {
	fn := store.Function{
		LatestRevision: "hello-00003",
		Traffic: []api.TrafficTarget{
			{LatestRevision: true, Percent: 80},
			{Revision: "hello-00001", Percent: 20, Tag: "old"},
		},
	}
	got := store.ResolveTraffic(fn)
	assert.Equal(t, []api.TrafficTarget{
		{Revision: "hello-00003", LatestRevision: true, Percent: 80},
		{Revision: "hello-00001", Percent: 20, Tag: "old"},
	}, got)
	assert.Empty(t, fn.Traffic[0].Revision, "the function is not modified")
}
