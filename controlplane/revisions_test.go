package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// deployN makes revisions 1..n of function fn (in path's namespace), each
// with its own env.
func (a *testAPI) deployN(path string, n int) {
	a.t.Helper()
	for i := 1; i <= n; i++ {
		code := a.do("PUT", path, fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil)
		require.Contains(a.t, []int{http.StatusOK, http.StatusCreated}, code)
	}
}

// ownedBy puts the records the autoscaler keeps for rev: a scale, a
// keep-alive state and assignments on two nodes.
func (a *testAPI) ownedBy(rev string) {
	a.t.Helper()
	a.put(
		store.PutJSON(store.ScaleKey(rev), store.Scale{Revision: rev, Desired: 1}, store.AnyVersion),
		store.PutJSON(store.KeepAliveKey(rev), store.KeepAlive{Revision: rev}, store.AnyVersion),
		store.PutJSON(store.AssignmentKey("n1", rev), store.Assignment{Revision: rev, Replicas: 1}, store.AnyVersion),
		store.PutJSON(store.AssignmentKey("n2", rev), store.Assignment{Revision: rev, Replicas: 1}, store.AnyVersion),
	)
}

func TestDeleteRevision(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	a.deployN("/v1/functions/hello", 5)
	a.deployN("/v1/namespaces/team-a/functions/hello", 2)
	a.deployN("/v1/functions/other", 1)
	// 1 takes every request, 2 is reachable at its tag, 3 is named by a
	// 0% untagged target (as a header match is), 4 is unrouted, 5 latest.
	split := `{"traffic":[{"revision":"hello-00001","percent":100},{"revision":"hello-00002","percent":0,"tag":"canary"},{"revision":"hello-00003","percent":0}]}`
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", split, nil))
	for _, rev := range []string{"hello-00001", "hello-00004", "hello.team-a-00001"} {
		a.ownedBy(rev)
	}

	long := strings.Repeat("a", 80)
	tests := []struct {
		name, path string
		want       int
		code       string
		says       string // in the message
	}{
		{"name not a DNS label", "/v1/functions/hello/revisions/Bad_Name", 400, api.CodeInvalid, "revision"},
		{"name too long", "/v1/functions/hello/revisions/" + long, 400, api.CodeInvalid, "longer"},
		{"two dots", "/v1/functions/hello/revisions/hello..x-00001", 400, api.CodeInvalid, "revision"},
		{"escaped slash", "/v1/functions/hello/revisions/hello%2F00001", 400, api.CodeInvalid, "revision"},
		{"bad function name", "/v1/functions/Hello/revisions/hello-00004", 400, api.CodeInvalid, "name"},
		{"bad namespace", "/v1/namespaces/Team_A/functions/hello/revisions/hello-00004", 400, api.CodeInvalid, "namespace"},
		{"missing namespace", "/v1/namespaces/nope/functions/hello/revisions/hello.nope-00001", 404, api.CodeNotFound, "nope"},
		{"missing function", "/v1/functions/nope/revisions/nope-00001", 404, api.CodeNotFound, "nope"},
		{"missing revision", "/v1/functions/hello/revisions/hello-00009", 404, api.CodeNotFound, "hello-00009"},
		{"other namespace's revision", "/v1/functions/hello/revisions/hello.team-a-00001", 404, api.CodeNotFound, "does not exist"},
		{"default's revision from team-a", "/v1/namespaces/team-a/functions/hello/revisions/hello-00004", 404, api.CodeNotFound, "does not exist"},
		{"other function's revision", "/v1/functions/hello/revisions/other-00001", 404, api.CodeNotFound, "does not exist"},
		{"routed by percent", "/v1/functions/hello/revisions/hello-00001", 409, api.CodeConflict, "100% of the traffic"},
		{"routed by tag", "/v1/functions/hello/revisions/hello-00002", 409, api.CodeConflict, `tag "canary"`},
		{"named by a 0% target", "/v1/functions/hello/revisions/hello-00003", 409, api.CodeConflict, "a traffic target routes to it"},
		{"latest", "/v1/functions/hello/revisions/hello-00005", 409, api.CodeConflict, "latest revision"},
		{"team-a's latest", "/v1/namespaces/team-a/functions/hello/revisions/hello.team-a-00002", 409, api.CodeConflict, "100%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			got := a.doRaw("DELETE", tt.path, "", nil, testToken, &e)
			assert.Equal(t, tt.want, got, "message: %s", e.Error.Message)
			assert.Equal(t, tt.code, e.Error.Code)
			assert.Contains(t, e.Error.Message, tt.says)
		})
	}
	// Nothing refused was touched.
	assert.Len(t, a.keys(store.RevisionsPrefix("hello")), 5)
	assert.Len(t, a.keys(store.RevisionsPrefix("hello.team-a")), 2)
	assert.Len(t, a.keys(store.PrefixAssignments), 6)

	// An unrouted revision goes with what belongs to it, and only that.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello/revisions/hello-00004", "", nil))
	assert.NotContains(t, a.keys(store.RevisionsPrefix("hello")), store.RevisionKey("hello", "hello-00004"))
	assert.Equal(t, []string{store.ScaleKey("hello-00001"), store.ScaleKey("hello.team-a-00001")}, a.keys(store.PrefixScales))
	assert.Equal(t, []string{store.KeepAliveKey("hello-00001"), store.KeepAliveKey("hello.team-a-00001")}, a.keys(store.PrefixKeepAlive))
	assert.ElementsMatch(t, []string{
		store.AssignmentKey("n1", "hello-00001"), store.AssignmentKey("n2", "hello-00001"),
		store.AssignmentKey("n1", "hello.team-a-00001"), store.AssignmentKey("n2", "hello.team-a-00001"),
	}, a.keys(store.PrefixAssignments))
	assert.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/functions/hello/revisions/hello-00004", "", nil), "a second delete finds nothing")

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a/functions/hello/revisions/hello.team-a-00001", "", nil))
	assert.Equal(t, []string{store.RevisionKey("hello.team-a", "hello.team-a-00002")}, a.keys(store.RevisionsPrefix("hello.team-a")))
	assert.Len(t, a.keys(store.PrefixAssignments), 2)

	// The status no longer lists it, and a split may not name it.
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	assert.Len(t, fn.Revisions, 4)
	assert.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00004","percent":100}]}`, nil))

	// Once its traffic moves, a formerly routed revision may go.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"latestRevision":true,"percent":100}]}`, nil))
	for _, rev := range []string{"hello-00001", "hello-00002", "hello-00003"} {
		assert.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello/revisions/"+rev, "", nil), rev)
	}
	assert.Empty(t, a.keys(store.PrefixScales+"hello-"))
}

func TestDeleteRevisionByItsSpecName(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","revisionName":"hello-blue"}`, nil))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","revisionName":"hello-green","env":{"A":"b"}}`, nil))
	// Going back to blue by its name makes blue the function's spec again
	// without a new revision: it may not be deleted, nor may green, the
	// latest.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","revisionName":"hello-blue"}`, nil))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-green","percent":100}]}`, nil))
	var e api.ErrorBody
	assert.Equal(t, http.StatusConflict, a.doRaw("DELETE", "/v1/functions/hello/revisions/hello-blue", "", nil, testToken, &e))
	assert.Contains(t, e.Error.Message, "current spec")

	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"C":"d"}}`, nil))
	assert.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello/revisions/hello-blue", "", nil))
	assert.Equal(t, []string{store.RevisionKey("hello", "hello-00002"), store.RevisionKey("hello", "hello-00003")}, a.keys(store.RevisionsPrefix("hello")))
}

func TestChooseRevisionGarbage(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	// revs makes generations 1..n, generation g created n-g hours ago.
	revs := func(n int) []store.Revision {
		out := make([]store.Revision, 0, n)
		for g := 1; g <= n; g++ {
			out = append(out, store.Revision{Name: api.RevisionName("f", g), Generation: g, CreatedAt: now.Add(-time.Duration(n-g) * time.Hour)})
		}
		return out
	}
	names := func(gens ...int) []string {
		var out []string
		for _, g := range gens {
			out = append(out, api.RevisionName("f", g))
		}
		return out
	}
	pins := func(gens ...int) map[string]string {
		m := map[string]string{}
		for _, n := range names(gens...) {
			m[n] = "pinned"
		}
		return m
	}
	tests := []struct {
		name    string
		revs    []store.Revision
		pinned  map[string]string
		history int
		minAge  time.Duration
		want    []string
	}{
		{"none", nil, nil, 10, time.Hour, nil},
		{"fewer than history", revs(5), pins(5), 10, 0, nil},
		{"exactly history unpinned", revs(11), pins(11), 10, 0, nil},
		{"the oldest beyond history go, oldest first", revs(14), pins(14), 10, 0, names(1, 2, 3)},
		{"pinned ones do not count toward history", revs(14), pins(1, 2, 14), 10, 0, names(3)},
		{"pinned beyond history stay", revs(6), pins(1, 6), 2, 0, names(2, 3)},
		{"younger than min age stay past history", revs(8), pins(8), 2, 4 * time.Hour, names(1, 2, 3, 4)},
		{"min age is inclusive of exactly its age", revs(4), pins(4), 1, 2 * time.Hour, names(1, 2)},
		{"everything young", revs(20), pins(20), 1, 100 * time.Hour, nil},
		{"history 0 keeps only pinned and young", revs(4), pins(4), 0, 0, names(1, 2, 3)},
		{"all pinned", revs(3), pins(1, 2, 3), 0, 0, nil},
		{"unordered input", []store.Revision{revs(4)[2], revs(4)[0], revs(4)[3], revs(4)[1]}, pins(4), 1, 0, names(1, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, chooseRevisionGarbage(now, tt.revs, tt.pinned, tt.history, tt.minAge))
		})
	}
}

func TestRevisionPins(t *testing.T) {
	fn := store.Function{
		Name: "f", LatestRevision: "f-00009", Spec: api.FunctionSpec{RevisionName: "f-blue"},
		Traffic: []api.TrafficTarget{
			{Revision: "f-00001", Percent: 60},
			{LatestRevision: true, Percent: 40, Tag: "next"},
			{Revision: "f-00001", Percent: 0, Tag: "old"},
			{Revision: "f-00002", Percent: 0, Tag: "canary"},
			{Revision: "f-00003", Percent: 0},
		},
	}
	revs := []store.Revision{{Name: "f-00004", Spec: api.FunctionSpec{RevisionName: "f-blue"}}, {Name: "f-00005"}}
	got := revisionPins(fn, revs)
	assert.Equal(t, map[string]string{
		"f-00001": "it receives 60% of the traffic",
		"f-00009": "it receives 40% of the traffic",
		"f-00002": `traffic tag "canary" routes to it`,
		"f-00003": "a traffic target routes to it",
		"f-00004": `its spec (revisionName "f-blue") is the function's current spec`,
	}, got)
}

// newBubbleServer is a Server over a fresh embedded store, without an
// HTTP listener, so it can live in a synctest bubble.
func newBubbleServer(t *testing.T) (*Server, store.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	srv, err := New(Config{Token: testToken, SpoolDir: filepath.Join(dir, "spool")},
		Deps{Store: st, Images: &recordingImporter{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return srv, st
}

// seedFunction writes function name with revisions 1..n created at
// created(g), and traffic as given (nil: 100% to the latest).
func seedFunction(t *testing.T, st store.Store, name string, n int, created func(g int) time.Time, traffic []api.TrafficTarget) {
	t.Helper()
	if traffic == nil {
		traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
	}
	fn := store.Function{Name: name, LatestRevision: api.RevisionName(name, n), Generation: n, Traffic: traffic}
	ops := []store.Op{store.PutJSON(store.FunctionKey(name), fn, store.MustNotExist)}
	for g := 1; g <= n; g++ {
		rev := api.RevisionName(name, g)
		ops = append(ops, store.PutJSON(store.RevisionKey(name, rev),
			store.Revision{Name: rev, Function: name, Generation: g, CreatedAt: created(g)}, store.MustNotExist))
	}
	_, err := st.Txn(context.Background(), ops...)
	require.NoError(t, err)
}

func revisionNames(t *testing.T, st store.Store, fn string) []string {
	t.Helper()
	kvs, _, err := st.List(context.Background(), store.RevisionsPrefix(fn))
	require.NoError(t, err)
	var out []string
	for _, kv := range kvs {
		out = append(out, strings.TrimPrefix(kv.Key, store.RevisionsPrefix(fn)))
	}
	return out
}

// TestRevisionGCLoop runs the collector on the bubble's clock: it deletes
// nothing before its first tick, then the old unrouted revisions beyond
// the history with what they own, and a function's young revisions only
// once they reach the minimum age.
func TestRevisionGCLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st := newBubbleServer(t)
		start := time.Now()
		// old: 14 revisions an hour apart; 1 takes the traffic, 14 is the
		// latest, 2..13 are unrouted: 13..4 are the history, 3 and 2 go.
		seedFunction(t, st, "old", 14, func(g int) time.Time { return start.Add(-time.Duration(14-g) * time.Hour) },
			[]api.TrafficTarget{{Revision: "old-00001", Percent: 100}})
		// young: 13 revisions made just now, following the latest.
		seedFunction(t, st, "young", 13, func(int) time.Time { return start }, nil)
		_, err := st.Txn(context.Background(),
			store.PutJSON(store.ScaleKey("old-00002"), store.Scale{Revision: "old-00002"}, store.AnyVersion),
			store.PutJSON(store.KeepAliveKey("old-00002"), store.KeepAlive{Revision: "old-00002"}, store.AnyVersion),
			store.PutJSON(store.AssignmentKey("n1", "old-00002"), store.Assignment{Revision: "old-00002"}, store.AnyVersion),
			store.PutJSON(store.AssignmentKey("n1", "old-00001"), store.Assignment{Revision: "old-00001"}, store.AnyVersion))
		require.NoError(t, err)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.RunRevisionGC(ctx, RevisionGCConfig{}) }()
		synctest.Wait()
		assert.Len(t, revisionNames(t, st, "old"), 14, "nothing before the first tick")

		time.Sleep(DefaultRevisionGCEvery) // synctest bubble time
		synctest.Wait()
		old := revisionNames(t, st, "old")
		assert.Len(t, old, 12)
		assert.NotContains(t, old, "old-00002")
		assert.NotContains(t, old, "old-00003")
		assert.Contains(t, old, "old-00001", "routed, however old")
		kvs, _, err := st.List(context.Background(), store.PrefixAssignments)
		require.NoError(t, err)
		require.Len(t, kvs, 1, "old-00002's assignment went with it")
		assert.Equal(t, store.AssignmentKey("n1", "old-00001"), kvs[0].Key)
		for _, key := range []string{store.ScaleKey("old-00002"), store.KeepAliveKey("old-00002")} {
			_, err := st.Get(context.Background(), key)
			assert.ErrorIs(t, err, store.ErrNotFound, key)
		}
		assert.Len(t, revisionNames(t, st, "young"), 13, "younger than the minimum age")

		time.Sleep(DefaultRevisionMinAge - 2*DefaultRevisionGCEvery) // synctest bubble time
		synctest.Wait()
		assert.Len(t, revisionNames(t, st, "young"), 13, "a minute short of the minimum age")
		time.Sleep(DefaultRevisionGCEvery) // synctest bubble time
		synctest.Wait()
		assert.Equal(t, []string{"young-00003", "young-00004", "young-00005", "young-00006", "young-00007",
			"young-00008", "young-00009", "young-00010", "young-00011", "young-00012", "young-00013"}, revisionNames(t, st, "young"))
		assert.Len(t, revisionNames(t, st, "old"), 12, "a later pass deletes nothing more")

		cancel()
		require.NoError(t, <-done)
	})
}

func TestRevisionGCConfigRefused(t *testing.T) {
	srv, _ := newBubbleServer(t)
	for _, cfg := range []RevisionGCConfig{{History: -1}, {MinAge: -time.Second}, {Every: -time.Minute}} {
		assert.Error(t, srv.RunRevisionGC(context.Background(), cfg), "%+v", cfg)
	}
}
