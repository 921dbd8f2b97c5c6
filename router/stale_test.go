package router

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// A host the table does not know waits for the next table while the
// caches hold records the table was not built from: a function whose PUT
// was just answered is served, not refused. With nothing pending, an
// unknown host is refused at once; and the wait is bounded. The router's
// rebuild loop does not run here, so the test decides when a table is
// built.
func TestLookupWaitsForAPendingTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
		require.NoError(t, err)
		defer st.Close()
		fns := store.NewCache(st, store.PrefixFunctions, store.CacheConfig[store.Function]{})
		revs := store.NewCache(st, store.PrefixRevisions, store.CacheConfig[store.Revision]{})
		doms := store.NewCache(st, store.PrefixDomains, store.CacheConfig[store.Domain]{})
		ctx, cancel := context.WithCancel(t.Context())
		defer func() { cancel(); synctest.Wait() }()
		go fns.Run(ctx)
		go revs.Run(ctx)
		go doms.Run(ctx)
		r, err := New(Config{}, Deps{Store: st, Functions: fns, Revisions: revs, Domains: doms})
		require.NoError(t, err)
		rebuild := func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			require.True(t, r.rebuildLocked())
		}
		create := func(fn string) {
			rev := api.RevisionName(fn, 1)
			_, err := st.Txn(t.Context(),
				store.PutJSON(store.RevisionKey(fn, rev), store.Revision{Name: rev, Function: fn, Generation: 1, Spec: api.FunctionSpec{Image: "img"}.WithDefaults()}, store.AnyVersion),
				store.PutJSON(store.FunctionKey(fn), store.Function{Name: fn, LatestRevision: rev, Generation: 1}, store.AnyVersion))
			require.NoError(t, err)
			synctest.Wait() // the caches have it; the table does not
		}
		synctest.Wait()
		rebuild()
		assert.Nil(t, r.lookup([]byte("nope.localhost")), "unknown, nothing pending: refused at once")

		create("fresh")
		got := make(chan *route, 1)
		go func() { got <- r.lookup([]byte("fresh.localhost")) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("answered before the table that has the host")
		default:
		}
		rebuild()
		rt := <-got
		require.NotNil(t, rt, "served once the next table has it")
		assert.Equal(t, "fresh", rt.function)

		// A table that never comes: the wait ends after staleWait.
		create("late")
		start := time.Now()
		assert.Nil(t, r.lookup([]byte("late.localhost")))
		assert.Equal(t, staleWait, time.Since(start))
	})
}
