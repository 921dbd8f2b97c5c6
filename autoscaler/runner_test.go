package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// The runner tests run in testing/synctest bubbles: the embedded store, the
// runner's caches and its ticker all live on the bubble's clock, so a test
// of a 30 s grace takes microseconds. synctest.Wait returns once every
// watch has been delivered and every tick that was due has run, so a test
// asserts what happened, never what a sleep happened to allow. A test
// decides at an exact instant by calling Tick itself.

type runnerEnv struct {
	store  store.Store
	runner *Runner
	reg    *prometheus.Registry
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "ebb.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newRunner builds a Runner against a real embedded store. clock is nil in
// a bubble, where time.Now is the bubble's.
func newRunner(t *testing.T, s store.Store, clock func() time.Time, cfg RunnerConfig) (*Runner, *prometheus.Registry) {
	t.Helper()
	// Node heartbeats are written once; the hours a test skips must not
	// make them stale.
	cfg.Placement.NodeDownAfter = 1000 * time.Hour
	reg := prometheus.NewRegistry()
	r, err := NewRunner(cfg, RunnerDeps{Store: s, Clock: clock, Registerer: reg})
	require.NoError(t, err)
	return r, reg
}

// runRunner runs r until the test ends and returns its stop function, which
// cancels Run and checks that it returned cleanly.
func runRunner(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// startRunner runs a Runner in the test's bubble and waits until its
// caches have listed and its first tick has run.
func startRunner(t *testing.T, s store.Store, cfg RunnerConfig) *runnerEnv {
	t.Helper()
	r, reg := newRunner(t, s, nil, cfg)
	runRunner(t, r)
	synctest.Wait()
	require.True(t, r.allSynced(), "the runner's caches have listed")
	return &runnerEnv{store: s, runner: r, reg: reg}
}

// advance moves the bubble's clock on by d, letting every tick due on the
// way run, and waits until the runner is idle again.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// tick decides for every revision at the current instant.
func (e *runnerEnv) tick(t *testing.T) {
	t.Helper()
	require.NoError(t, e.runner.Tick(context.Background()))
	synctest.Wait()
}

func (r *Runner) allSynced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allSyncedLocked()
}

func put(t *testing.T, s store.Store, key string, v any) {
	t.Helper()
	_, err := s.Txn(context.Background(), store.PutJSON(key, v, store.AnyVersion))
	require.NoError(t, err)
}

func putRevision(t *testing.T, s store.Store, fn string, gen int, mod func(*api.FunctionSpec)) string {
	t.Helper()
	name := api.RevisionName(fn, gen)
	put(t, s, store.RevisionKey(fn, name), store.Revision{
		Name: name, Function: fn, Generation: gen, Spec: testSpec(mod), CreatedAt: t0,
	})
	return name
}

func putNode(t *testing.T, s store.Store, name string, images ...string) {
	t.Helper()
	put(t, s, store.NodeKey(name), store.Node{
		Name: name, CPU: 64, MemoryBytes: 64 * gib, Images: images, PoolCapacity: 8,
		Heartbeat: t0, HeartbeatInterval: api.D(5 * time.Second),
	})
}

func putEndpoints(t *testing.T, s store.Store, rev string, n int) {
	t.Helper()
	kvs, _, err := s.List(context.Background(), store.EndpointsPrefix(rev))
	require.NoError(t, err)
	var ops []store.Op
	keep := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("r%d", i)
		keep[store.EndpointKey(rev, id)] = true
		ops = append(ops, store.PutJSON(store.EndpointKey(rev, id), store.Endpoint{Revision: rev, Replica: id, Node: "n1"}, store.AnyVersion))
	}
	for _, kv := range kvs {
		if !keep[kv.Key] {
			ops = append(ops, store.Delete(kv.Key, store.AnyVersion))
		}
	}
	if len(ops) > 0 {
		_, err = s.Txn(context.Background(), ops...)
		require.NoError(t, err)
	}
}

func getScale(t *testing.T, s store.Store, rev string) (store.Scale, bool) {
	t.Helper()
	sc, _, err := store.GetJSON[store.Scale](context.Background(), s, store.ScaleKey(rev))
	if errors.Is(err, store.ErrNotFound) {
		return store.Scale{}, false
	}
	require.NoError(t, err)
	return sc, true
}

func getAssignment(t *testing.T, s store.Store, node, rev string) (store.Assignment, bool) {
	t.Helper()
	a, _, err := store.GetJSON[store.Assignment](context.Background(), s, store.AssignmentKey(node, rev))
	if errors.Is(err, store.ErrNotFound) {
		return store.Assignment{}, false
	}
	require.NoError(t, err)
	return a, true
}

// metricValue reads one gauge or counter.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.Write(&d))
	if d.Gauge != nil {
		return d.GetGauge().GetValue()
	}
	return d.GetCounter().GetValue()
}

func loadStat(rev, reporter string, concurrency, requests float64) api.RevisionStat {
	return api.RevisionStat{Revision: rev, Reporter: reporter, AvgConcurrency: concurrency, MaxConcurrency: concurrency,
		Requests: requests, Interval: api.D(time.Second)}
}

func TestRunnerActivateWritesScaleAndAssignmentAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "hello", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		putNode(t, s, "n1")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})

		require.NoError(t, env.runner.Activate(context.Background(), rev))
		// Activate returns once the decision is stored: no waiting.
		sc, ok := getScale(t, s, rev)
		require.True(t, ok)
		assert.Equal(t, 1, sc.Desired)
		assert.Equal(t, "hello", sc.Function)
		a, ok := getAssignment(t, s, "n1", rev)
		require.True(t, ok)
		assert.Equal(t, store.Assignment{Function: "hello", Revision: rev, Replicas: 1}, a)

		err := env.runner.Activate(context.Background(), "nosuch-00001")
		assert.ErrorIs(t, err, ErrUnknownRevision)
		err = env.runner.Activate(context.Background(), "not a revision")
		assert.ErrorIs(t, err, ErrUnknownRevision)

		assert.Equal(t, 1.0, metricValue(t, env.runner.m.desired.WithLabelValues("default", "hello", rev)))
		var h dto.Metric
		require.NoError(t, env.runner.m.activation.Write(&h))
		assert.Equal(t, uint64(1), h.GetHistogram().GetSampleCount())
	})
}

func TestRunnerActivatesARevisionTheCacheHasNotSeen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		// Written and activated at once, with no synctest.Wait between:
		// the revision watch may not have delivered it yet.
		rev := putRevision(t, s, "fresh", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		sc, ok := getScale(t, s, rev)
		require.True(t, ok)
		assert.Equal(t, 1, sc.Desired)
	})
}

func TestRunnerFollowsLoadAndScalesToZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "load", 1, func(sp *api.FunctionSpec) {
			sp.Scale.Initial = intp(0)
			sp.Concurrency.Target = 10 // target 7 per replica
		})
		putNode(t, s, "n1", "img")
		env := startRunner(t, s, RunnerConfig{})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		putEndpoints(t, s, rev, 1)

		// 50 concurrent requests through two routers for 30 s, with the
		// runner ticking every 2 s meanwhile.
		for range 30 {
			time.Sleep(time.Second)
			env.runner.Report([]api.RevisionStat{loadStat(rev, "router-a", 25, 250), loadStat(rev, "router-b", 25, 250)})
		}
		env.tick(t)
		sc, _ := getScale(t, s, rev)
		assert.Equal(t, 8, sc.Desired, "scale-up to ceil(50/7)")
		a, _ := getAssignment(t, s, "n1", rev)
		assert.Equal(t, 8, a.Replicas)
		putEndpoints(t, s, rev, 8)
		st, ok := env.runner.Status(rev)
		require.True(t, ok)
		assert.InDelta(t, 50, st.Observation.Stable, 1e-9)

		// Load stops: nothing for 29 s keeps a replica, 30 s (the grace) goes to zero.
		advance(29 * time.Second)
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Positive(t, sc.Desired)
		advance(time.Second)
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 0, sc.Desired, "scale to zero")
		// No replica on the node; with no idle history yet the policy's
		// fallback holds a pre-created task there instead.
		a, ok = getAssignment(t, s, "n1", rev)
		require.True(t, ok)
		assert.Equal(t, store.Assignment{Function: "load", Revision: rev, Replicas: 0, PreCreated: 1}, a)
		assert.Equal(t, 0.0, metricValue(t, env.runner.m.desired.WithLabelValues("default", "load", rev)))
		assert.Positive(t, metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "written")))
	})
}

func TestRunnerPreCreatesAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "pre", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		putNode(t, s, "n1", "img")
		env := startRunner(t, s, RunnerConfig{})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		env.runner.Report([]api.RevisionStat{{Revision: rev, Reporter: "r", AvgConcurrency: 1, Requests: 1, Interval: api.D(time.Second)}})
		// No history: after the grace period the revision goes to zero and
		// the node holds a pre-created task for it (the fallback up to 10 min).
		advance(31 * time.Second)
		a, ok := getAssignment(t, s, "n1", rev)
		require.True(t, ok)
		assert.Equal(t, 0, a.Replicas)
		assert.Equal(t, 1, a.PreCreated, "a pre-created task instead of a replica")
		sc, _ := getScale(t, s, rev)
		assert.True(t, sc.PreWarm)
		assert.Equal(t, 0, sc.Desired)
		advance(10 * time.Minute)
		_, ok = getAssignment(t, s, "n1", rev)
		assert.False(t, ok, "the pre-created task released")
	})
}

func TestRunnerRecoversFromAConflictingWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "cas", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		putNode(t, s, "n1")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		env.runner.mu.Lock()
		stale := env.runner.scales[rev]
		env.runner.mu.Unlock()
		// Someone else rewrites the scale and the assignment, and the runner's
		// cache still holds the old versions (its watch has not caught up).
		put(t, s, store.ScaleKey(rev), store.Scale{Revision: rev, Function: "cas", Desired: 7})
		put(t, s, store.AssignmentKey("n1", rev), store.Assignment{Function: "cas", Revision: rev, Replicas: 7})
		synctest.Wait()
		env.runner.mu.Lock()
		require.Equal(t, 7, env.runner.scales[rev].Value.Desired, "the cache saw the other write")
		env.runner.scales[rev] = stale
		env.runner.mu.Unlock()
		env.runner.Report([]api.RevisionStat{{Revision: rev, Reporter: "r", AvgConcurrency: 150, Interval: api.D(time.Second)}})
		time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		// Its next write conflicts, re-reads and lands.
		sc, _ := getScale(t, s, rev)
		assert.Equal(t, 3, sc.Desired)
		a, _ := getAssignment(t, s, "n1", rev)
		assert.Equal(t, 3, a.Replicas)
		assert.Positive(t, metricValue(t, env.runner.m.decisions.WithLabelValues("activate", "conflict")))
	})
}

func TestRunnerStopsWhenTheRevisionIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "gone", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		putNode(t, s, "n1")
		env := startRunner(t, s, RunnerConfig{})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		// The control plane deletes the function: revision, scale and assignment.
		_, err := s.Txn(context.Background(),
			store.Delete(store.RevisionKey("gone", rev), store.AnyVersion),
			store.Delete(store.ScaleKey(rev), store.AnyVersion),
			store.Delete(store.AssignmentKey("n1", rev), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		_, ok := env.runner.Status(rev)
		assert.False(t, ok, "the runner forgets the revision")
		// Ticks go on; nothing is resurrected.
		ticks := metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "unchanged")) +
			metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "written"))
		advance(10 * time.Second)
		env.tick(t)
		_, ok = getScale(t, s, rev)
		assert.False(t, ok)
		_, ok = getAssignment(t, s, "n1", rev)
		assert.False(t, ok)
		assert.ErrorIs(t, env.runner.Activate(context.Background(), rev), ErrUnknownRevision)
		assert.Equal(t, ticks, metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "unchanged"))+
			metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "written")),
			"no tick decided for the deleted revision")
	})
}

// listEmpty hands r an empty listing from every cache, as if the store
// were empty, without running them.
func listEmpty(r *Runner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onFunctions(store.Update[store.Function]{Full: true})
	r.onRevisions(store.Update[store.Revision]{Full: true})
	r.onEndpoints(store.Update[store.Endpoint]{Full: true})
	r.onNodes(store.Update[store.Node]{Full: true})
	r.onAssignments(store.Update[store.Assignment]{Full: true})
	r.onScales(store.Update[store.Scale]{Full: true})
	r.onKeepAlive(store.Update[store.KeepAlive]{Full: true})
	for _, w := range r.watches {
		r.listedLocked(w.prefix)
	}
}

// TestRunnerBelievesTheWatchOnceItHasCaughtUp drives the revisions cache's
// updates by hand: a revision Activate read ahead of the watch is kept
// while the watch is behind the version read, and from then on the watch
// decides, also when its only word of the revision is its delete.
func TestRunnerBelievesTheWatchOnceItHasCaughtUp(t *testing.T) {
	put := func(rec store.Versioned[store.Revision]) store.Change[store.Revision] {
		return store.Change[store.Revision]{Versioned: rec}
	}
	deleted := func(key string, version int64) store.Change[store.Revision] {
		return store.Change[store.Revision]{Versioned: store.Versioned[store.Revision]{Key: key, Version: version}, Deleted: true}
	}
	tests := []struct {
		name string
		// watch is what the watch delivers after the read, given the
		// record read; nil: nothing.
		watch     func(read store.Versioned[store.Revision]) store.Update[store.Revision]
		wantKnown bool
	}{
		{name: "the watch says nothing yet", wantKnown: true},
		{
			name: "the watch shows it",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				return store.Update[store.Revision]{Changed: []store.Change[store.Revision]{put(read)}, Revision: read.Version}
			},
			wantKnown: true,
		},
		{
			name: "the watch is behind: a listing from before the read",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				return store.Update[store.Revision]{Full: true, Revision: read.Version - 1}
			},
			wantKnown: true,
		},
		{
			name: "the watch is behind: the delete of an earlier revision of that name",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				return store.Update[store.Revision]{Changed: []store.Change[store.Revision]{deleted(read.Key, read.Version-1)}, Revision: read.Version - 1}
			},
			wantKnown: true,
		},
		{
			name: "deleted before the watch showed it",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				return store.Update[store.Revision]{Changed: []store.Change[store.Revision]{deleted(read.Key, read.Version+1)}, Revision: read.Version + 1}
			},
		},
		{
			name: "a later listing without it",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				return store.Update[store.Revision]{Full: true, Revision: read.Version + 1}
			},
		},
		{
			name: "a later change to another revision, without it",
			watch: func(read store.Versioned[store.Revision]) store.Update[store.Revision] {
				other := store.RevisionKey("other", "other-00001")
				return store.Update[store.Revision]{Changed: []store.Change[store.Revision]{deleted(other, read.Version+2)}, Revision: read.Version + 2}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			r, _ := newRunner(t, s, func() time.Time { return t0 }, RunnerConfig{})
			listEmpty(r)
			rev := putRevision(t, s, "early", 1, nil)
			rec, version, err := store.GetJSON[store.Revision](context.Background(), s, store.RevisionKey("early", rev))
			require.NoError(t, err)
			require.NoError(t, r.loadRevision(context.Background(), rev))
			_, ok := r.Status(rev)
			require.True(t, ok, "the read revision gets a scaling state")

			if tt.watch != nil {
				u := tt.watch(store.Versioned[store.Revision]{Key: store.RevisionKey("early", rev), Value: rec, Version: version})
				r.mu.Lock()
				r.onRevisions(u)
				r.mu.Unlock()
			}

			r.mu.Lock()
			_, known := r.records[rev]
			r.mu.Unlock()
			assert.Equal(t, tt.wantKnown, known)
			_, ok = r.Status(rev)
			assert.Equal(t, tt.wantKnown, ok, "scaling state follows the record")
		})
	}
}

func TestRunnerKeepsInitialScaleOnceAndResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		rev := putRevision(t, s, "init", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(2) })
		putNode(t, s, "n1")
		// A first runner applies the initial scale.
		first, _ := newRunner(t, s, nil, RunnerConfig{})
		stop := runRunner(t, first)
		synctest.Wait()
		sc, _ := getScale(t, s, rev)
		require.Equal(t, 2, sc.Desired, "initial scale")
		stop()

		// A restarted runner must not apply the initial scale again. Having
		// lost its metrics it keeps the warm revision for one grace period,
		// then lets it go to zero.
		time.Sleep(time.Hour)
		env := startRunner(t, s, RunnerConfig{})
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 1, sc.Desired, "one replica after restart")
		advance(29 * time.Second)
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 1, sc.Desired, "one replica within a grace period of the restart")
		advance(time.Second)
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 0, sc.Desired, "zero a grace period after restart")
	})
}

// deploy writes a revision of fn and the function pointing at it in one
// transaction, as the control plane does, and returns the revision's name.
func deploy(t *testing.T, s store.Store, fn string, gen int, mod func(*api.FunctionSpec), traffic ...api.TrafficTarget) string {
	t.Helper()
	name := api.RevisionName(fn, gen)
	if traffic == nil {
		traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
	}
	spec := testSpec(mod)
	_, err := s.Txn(context.Background(),
		store.PutJSON(store.RevisionKey(fn, name), store.Revision{Name: name, Function: fn, Generation: gen, Spec: spec, CreatedAt: t0}, store.AnyVersion),
		store.PutJSON(store.FunctionKey(fn), store.Function{Name: fn, Spec: spec, LatestRevision: name, Generation: gen, Traffic: traffic}, store.AnyVersion))
	require.NoError(t, err)
	return name
}

// TestRunnerScalesAnUnroutedRevisionToZero is bug 4: deploy with min 1,
// deploy a changed spec, and the old revision ran forever at 0% traffic.
// As in Knative, a revision no route reaches (no percent, no tag) ignores
// min scale and goes to zero a grace period after the routes left it.
func TestRunnerScalesAnUnroutedRevisionToZero(t *testing.T) {
	old := api.RevisionName("fn", 1)
	tests := []struct {
		name    string
		traffic []api.TrafficTarget // after the second deploy
		// The replicas of the old and the new revision a grace period later.
		wantOld, wantNew int
	}{
		{name: "all traffic to the new revision", wantOld: 0, wantNew: 1},
		{name: "all traffic to the new revision by name", traffic: []api.TrafficTarget{{Revision: "fn-00002", Percent: 100}}, wantOld: 0, wantNew: 1},
		{name: "a tag still reaches the old revision", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}, {Revision: old, Tag: "v1"}}, wantOld: 1, wantNew: 1},
		{name: "a header match still reaches the old revision", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}, {Revision: old, Headers: map[string]string{"User": "tester"}}}, wantOld: 1, wantNew: 1},
		{name: "a split still reaches the old revision", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 90}, {Revision: old, Percent: 10}}, wantOld: 1, wantNew: 1},
		{name: "traffic pinned to the old revision: the new one is unrouted", traffic: []api.TrafficTarget{{Revision: old, Percent: 100}}, wantOld: 1, wantNew: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := openStore(t)
				putNode(t, s, "n1")
				minOne := func(sp *api.FunctionSpec) { sp.Scale.Min = 1 }
				require.Equal(t, old, deploy(t, s, "fn", 1, minOne))
				env := startRunner(t, s, RunnerConfig{})
				putEndpoints(t, s, old, 1)
				advance(2 * time.Minute)
				sc, _ := getScale(t, s, old)
				require.Equal(t, 1, sc.Desired, "min scale holds the routed revision past its grace")

				next := deploy(t, s, "fn", 2, func(sp *api.FunctionSpec) {
					minOne(sp)
					sp.Env = map[string]string{"CHANGED": "yes"}
				}, tt.traffic...)
				synctest.Wait()
				env.tick(t) // the routes left the old revision now
				advance(29 * time.Second)
				env.tick(t)
				sc, _ = getScale(t, s, old)
				assert.Equal(t, 1, sc.Desired, "within a grace period of the routes leaving it")
				advance(time.Second)
				env.tick(t)
				sc, _ = getScale(t, s, old)
				assert.Equal(t, tt.wantOld, sc.Desired, "a grace period later")
				a, _ := getAssignment(t, s, "n1", old)
				assert.Equal(t, tt.wantOld, a.Replicas)
				sc, _ = getScale(t, s, next)
				assert.Equal(t, tt.wantNew, sc.Desired, "the new revision a grace period later")
			})
		})
	}
}

// TestRunnerRestoresPoolsAfterARestart is bug 3: the keep-alive state lived
// in memory, so after a restart no revision had a last demand to count its
// windows from, and no pre-created task was held until traffic came back:
// the first cold starts missed the pool. A function called every ten
// minutes is learnt by one runner; a second runner on the same store, with
// no new traffic, holds the pre-created task over the same window.
func TestRunnerRestoresPoolsAfterARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1", "img")
		rev := deploy(t, s, "cron", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		first, _ := newRunner(t, s, nil, RunnerConfig{})
		stop := runRunner(t, first)
		synctest.Wait()
		// Eleven calls ten minutes apart: ten idle times, a histogram plan
		// that holds a pre-created task from 0.9 × 576 s to 1.1 × 640 s after
		// each call.
		for i := range 11 {
			if i > 0 {
				advance(10*time.Minute - time.Second)
			}
			first.Report([]api.RevisionStat{{Revision: rev, Reporter: "r", AvgConcurrency: 1, Requests: 1, Interval: api.D(time.Second)}})
			advance(time.Second)
		}
		called := time.Now()
		advance(5 * time.Minute)
		st, ok := first.Status(rev)
		require.True(t, ok)
		require.Equal(t, ModeHistogram, st.Plan.Mode)
		require.Equal(t, 0, st.PreCreated, "before the window")
		stop()

		kept, _, err := store.GetJSON[store.KeepAlive](context.Background(), s, store.KeepAliveKey(rev))
		require.NoError(t, err)
		assert.Equal(t, "cron", kept.Function)
		assert.Equal(t, []store.IdleCount{{From: api.D(576 * time.Second), Count: 10}}, kept.IdleTimes, "compact: one bin")

		// The restart: nothing but the store carries over.
		second := startRunner(t, s, RunnerConfig{})
		st, ok = second.runner.Status(rev)
		require.True(t, ok)
		assert.Equal(t, ModeHistogram, st.Plan.Mode, "the history is restored")
		assert.Equal(t, 0, st.PreCreated)
		_, ok = getAssignment(t, s, "n1", rev)
		assert.False(t, ok)

		advance(called.Add(9 * time.Minute).Sub(time.Now()))
		second.tick(t)
		a, ok := getAssignment(t, s, "n1", rev)
		require.True(t, ok, "a pre-created task inside the window, with no new traffic")
		assert.Equal(t, store.Assignment{Function: "cron", Revision: rev, PreCreated: 1}, a)
		sc, _ := getScale(t, s, rev)
		assert.True(t, sc.PreWarm)
		assert.Equal(t, 0, sc.Desired)

		advance(called.Add(12 * time.Minute).Sub(time.Now()))
		second.tick(t)
		_, ok = getAssignment(t, s, "n1", rev)
		assert.False(t, ok, "released after the window")
	})
}

// TestRunnerRestoresANeverCalledRevisionsPool: a revision deployed warm
// and not called yet holds a pre-created task after its replica goes, up
// to the fallback pre-warm horizon; a restart keeps that.
func TestRunnerRestoresANeverCalledRevisionsPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1", "img")
		rev := deploy(t, s, "fresh", 1, nil)
		first, _ := newRunner(t, s, nil, RunnerConfig{})
		stop := runRunner(t, first)
		synctest.Wait()
		deployed := time.Now()
		putEndpoints(t, s, rev, 1)
		advance(time.Minute)
		a, _ := getAssignment(t, s, "n1", rev)
		require.Equal(t, 1, a.PreCreated, "deployed warm, never called: a pre-created task after grace")
		stop()

		second := startRunner(t, s, RunnerConfig{})
		putEndpoints(t, s, rev, 0)
		advance(time.Minute)
		second.tick(t)
		a, _ = getAssignment(t, s, "n1", rev)
		assert.Equal(t, store.Assignment{Function: "fresh", Revision: rev, PreCreated: 1}, a, "still held after the restart")
		advance(deployed.Add(10 * time.Minute).Sub(time.Now()))
		second.tick(t)
		_, ok := getAssignment(t, s, "n1", rev)
		assert.False(t, ok, "released at the fallback horizon")
	})
}

// TestRunnerWritesKeepAliveStateSparingly: the record is rewritten when
// it changed, at most every StatusRefresh, and not at all while nothing
// changes.
func TestRunnerWritesKeepAliveStateSparingly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1", "img")
		rev := deploy(t, s, "busy", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
		_, from, err := s.List(context.Background(), store.PrefixKeepAlive)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := s.Watch(ctx, store.PrefixKeepAlive, from)
		require.NoError(t, err)
		writes := func() int {
			n := 0
			for {
				select {
				case ev := <-events:
					require.NoError(t, ev.Err)
					n++
				default:
					return n
				}
			}
		}
		env := startRunner(t, s, RunnerConfig{}) // ticks every 2 s, refreshes every 10 s
		advance(time.Minute)
		assert.Zero(t, writes(), "never called, deployed at zero: nothing to keep")
		putEndpoints(t, s, rev, 1)

		// A minute of steady traffic: the last demand moves every second.
		for range 60 {
			env.runner.Report([]api.RevisionStat{loadStat(rev, "r", 10, 10)})
			advance(time.Second)
		}
		busy := writes()
		assert.Positive(t, busy)
		assert.LessOrEqual(t, busy, 60/10+2, "at most one write per refresh period, and the first")

		// Quiet: once the last demand has been written, nothing more.
		advance(time.Minute)
		writes()
		advance(10 * time.Minute)
		assert.Zero(t, writes(), "no writes while nothing changes")
	})
}

func TestRunnerConfig(t *testing.T) {
	_, err := NewRunner(RunnerConfig{}, RunnerDeps{})
	assert.ErrorContains(t, err, "store")
	_, err = NewRunner(RunnerConfig{Tick: -time.Second}, RunnerDeps{Store: openStore(t)})
	assert.Error(t, err)
	_, err = NewRunner(RunnerConfig{KeepAlive: HybridConfig{Margin: 2}}, RunnerDeps{Store: openStore(t)})
	assert.Error(t, err)
	reg := prometheus.NewRegistry()
	_, err = NewRunner(RunnerConfig{}, RunnerDeps{Store: openStore(t), Registerer: reg})
	require.NoError(t, err)
	_, err = NewRunner(RunnerConfig{}, RunnerDeps{Store: openStore(t), Registerer: reg})
	assert.ErrorContains(t, err, "already registered")
	c := RunnerConfig{}.WithDefaults()
	assert.Equal(t, 2*time.Second, c.Tick)
}

func TestFunctionOf(t *testing.T) {
	cases := map[string]string{"hello-00001": "hello", "a-b-00012": "a-b", "x-1": "x"}
	for rev, fn := range cases {
		got, ok := functionOf(rev)
		assert.True(t, ok, rev)
		assert.Equal(t, fn, got)
	}
	for _, bad := range []string{"hello", "-00001", "hello-", "hello-abc"} {
		_, ok := functionOf(bad)
		assert.False(t, ok, bad)
	}
}

// TestHTTPTransport runs the internal API between a Client and a Runner on
// a real store, as a router and an activator in other processes would.
func TestHTTPTransport(t *testing.T) {
	// Real sockets cannot live in a synctest bubble: this test runs on the
	// wall clock, with the decisions' clock injected and Tick never due.
	s := openStore(t)
	rev := putRevision(t, s, "remote", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) })
	putNode(t, s, "n1")
	var now atomic.Int64 // the decisions' clock, as nanoseconds after t0
	r, _ := newRunner(t, s, func() time.Time { return t0.Add(time.Duration(now.Load())) }, RunnerConfig{Tick: time.Hour})
	runRunner(t, r)
	env := &runnerEnv{store: s, runner: r}
	select {
	case <-r.ready: // the caches have listed
	case <-time.After(10 * time.Second):
		t.Fatal("the runner's caches did not list")
	}
	srv := httptest.NewServer(NewHandler(env.runner, HandlerConfig{Token: "s3cret"}))
	t.Cleanup(srv.Close)

	c, err := NewClient(ClientConfig{BaseURL: srv.URL, Token: "s3cret"})
	require.NoError(t, err)
	require.NoError(t, c.Activate(context.Background(), rev))
	sc, _ := getScale(t, s, rev)
	assert.Equal(t, 1, sc.Desired)

	c.Report([]api.RevisionStat{{Revision: rev, Reporter: "router-x", AvgConcurrency: 200, Requests: 10, Interval: api.D(time.Second)}})
	assert.Zero(t, c.Dropped())
	now.Add(int64(1500 * time.Millisecond))
	require.NoError(t, c.Activate(context.Background(), rev))
	sc, _ = getScale(t, s, rev)
	assert.Equal(t, 3, sc.Desired, "200 in flight at 70 per replica")

	assert.ErrorIs(t, c.Activate(context.Background(), "nosuch-00001"), ErrUnknownRevision)

	// Wrong token, malformed bodies, unknown paths.
	bad, err := NewClient(ClientConfig{BaseURL: srv.URL, Token: "nope"})
	require.NoError(t, err)
	err = bad.Activate(context.Background(), rev)
	assert.ErrorContains(t, err, "401")
	bad.Report([]api.RevisionStat{{Revision: rev}})
	assert.Equal(t, uint64(1), bad.Dropped())

	cases := []struct {
		path, body string
		status     int
	}{
		{PathStats, `{"not":"an array"}`, http.StatusBadRequest},
		{PathStats, `[{"revision":"x","bogus":1}]`, http.StatusBadRequest},
		// A router's report carries its outcomes; strict decoding knows them.
		{PathStats, `[{"revision":"` + rev + `","reporter":"router-x","requests":3,"interval":"1s",` +
			`"outcomes":{"requests":3,"errors5xx":1,"connErrors":1,"latency":[0,2]}}]`, http.StatusNoContent},
		{PathStats, `[{"revision":"x","outcomes":{"requests":1,"bogus":1}}]`, http.StatusBadRequest},
		{PathActivate + "Not_A_Name", ``, http.StatusBadRequest},
		{PathActivate + "a.b.c-00001", ``, http.StatusBadRequest},
		{"/internal/v1/nope", ``, http.StatusNotFound},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode, tc.path)
	}
	_, err = NewClient(ClientConfig{BaseURL: "127.0.0.1:1"})
	assert.Error(t, err)

	// The status endpoint shows the last step, plan inputs included.
	req, err := http.NewRequest(http.MethodGet, srv.URL+PathStatus+rev, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	var res Result
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	resp.Body.Close()
	assert.Equal(t, 3, res.Decision.Desired)
	assert.Equal(t, ModeFewSamples, res.Plan.Mode)
	req, err = http.NewRequest(http.MethodGet, srv.URL+PathStatus+"nosuch-00001", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	small := NewHandler(env.runner, HandlerConfig{MaxBodyBytes: 64})
	rec := httptest.NewRecorder()
	small.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathStats, strings.NewReader(`[`+strings.Repeat(`{"revision":"x"},`, 10)+`{}]`)))
	assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	assert.Contains(t, rec.Body.String(), api.CodeTooLarge)
}

// TestFold folds cache updates into a runner's map of records by name.
func TestFold(t *testing.T) {
	scale := func(key string, desired int, version int64) store.Change[store.Scale] {
		return store.Change[store.Scale]{Versioned: store.Versioned[store.Scale]{Key: key, Value: store.Scale{Revision: lastSegment(key), Desired: desired}, Version: version}}
	}
	gone := func(key string, version int64) store.Change[store.Scale] {
		return store.Change[store.Scale]{Versioned: store.Versioned[store.Scale]{Key: key, Version: version}, Deleted: true}
	}
	first := func() map[string]store.Versioned[store.Scale] {
		return fold(nil, store.Update[store.Scale]{Full: true, Changed: []store.Change[store.Scale]{
			scale("scales/a-00001", 1, 5), scale("scales/b-00001", 2, 6),
		}}, lastSegment, nil)
	}
	require.Len(t, first(), 2)

	tests := []struct {
		name string
		u    store.Update[store.Scale]
		keep func(string) bool
		want map[string]int // revision → desired
	}{
		{
			name: "a listing replaces everything: gone from it, gone from the result",
			u:    store.Update[store.Scale]{Full: true, Changed: []store.Change[store.Scale]{scale("scales/c-00001", 3, 10)}},
			want: map[string]int{"c-00001": 3},
		},
		{
			name: "a listing brings new versions",
			u: store.Update[store.Scale]{Full: true, Changed: []store.Change[store.Scale]{
				scale("scales/a-00001", 7, 9), scale("scales/b-00001", 2, 6),
			}},
			want: map[string]int{"a-00001": 7, "b-00001": 2},
		},
		{
			name: "keep holds a record a listing lacks",
			u:    store.Update[store.Scale]{Full: true},
			keep: func(name string) bool { return name == "a-00001" },
			want: map[string]int{"a-00001": 1},
		},
		{
			name: "an update folds in only its changed keys",
			u:    store.Update[store.Scale]{Changed: []store.Change[store.Scale]{scale("scales/c-00001", 4, 11)}},
			want: map[string]int{"a-00001": 1, "b-00001": 2, "c-00001": 4},
		},
		{
			name: "an update deletes what it says left",
			u:    store.Update[store.Scale]{Changed: []store.Change[store.Scale]{gone("scales/b-00001", 12)}},
			want: map[string]int{"a-00001": 1},
		},
		{
			name: "keep holds a record an update deletes",
			u:    store.Update[store.Scale]{Changed: []store.Change[store.Scale]{gone("scales/a-00001", 12), gone("scales/b-00001", 12)}},
			keep: func(name string) bool { return name == "b-00001" },
			want: map[string]int{"b-00001": 2},
		},
		{
			name: "the delete of another key of the same name leaves the record",
			u:    store.Update[store.Scale]{Changed: []store.Change[store.Scale]{gone("other/a-00001", 12)}},
			want: map[string]int{"a-00001": 1, "b-00001": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fold(first(), tt.u, lastSegment, tt.keep)
			desired := map[string]int{}
			for name, v := range got {
				desired[name] = v.Value.Desired
			}
			assert.Equal(t, tt.want, desired)
		})
	}
}

// TestRunnerCountsReadyEndpoints folds endpoint updates, one after the
// other, into each revision's count of ready endpoints.
func TestRunnerCountsReadyEndpoints(t *testing.T) {
	ep := func(rev, replica string) store.Change[store.Endpoint] {
		return store.Change[store.Endpoint]{Versioned: store.Versioned[store.Endpoint]{Key: store.EndpointKey(rev, replica)}}
	}
	gone := func(rev, replica string) store.Change[store.Endpoint] {
		c := ep(rev, replica)
		c.Deleted = true
		return c
	}
	steps := []struct {
		name string
		u    store.Update[store.Endpoint]
		want map[string]int
	}{
		{
			name: "a listing counts every endpoint by its key's revision",
			u:    store.Update[store.Endpoint]{Full: true, Changed: []store.Change[store.Endpoint]{ep("a-00001", "r1"), ep("a-00001", "r2"), ep("b-00001", "r1")}},
			want: map[string]int{"a-00001": 2, "b-00001": 1},
		},
		{
			name: "a put of a known endpoint counts it once",
			u:    store.Update[store.Endpoint]{Changed: []store.Change[store.Endpoint]{ep("a-00001", "r1")}},
			want: map[string]int{"a-00001": 2, "b-00001": 1},
		},
		{
			name: "new and deleted endpoints",
			u:    store.Update[store.Endpoint]{Changed: []store.Change[store.Endpoint]{ep("a-00001", "r3"), gone("b-00001", "r1"), gone("c-00001", "r9")}},
			want: map[string]int{"a-00001": 3},
		},
		{
			name: "a listing starts over",
			u:    store.Update[store.Endpoint]{Full: true, Changed: []store.Change[store.Endpoint]{ep("c-00001", "r1")}},
			want: map[string]int{"c-00001": 1},
		},
	}
	r, _ := newRunner(t, openStore(t), func() time.Time { return t0 }, RunnerConfig{})
	for _, st := range steps {
		r.mu.Lock()
		r.onEndpoints(st.u)
		got := maps.Clone(r.readyN)
		r.mu.Unlock()
		assert.Equal(t, st.want, got, st.name)
	}
}

// TestRunnerOnSharedCaches runs a Runner on caches it is handed, as ebbd
// does: it opens none of its own, and refuses a cache of part of a prefix
// it needs whole.
func TestRunnerOnSharedCaches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		caches := RunnerCaches{
			Functions:   store.NewCache[store.Function](s, store.PrefixFunctions, store.CacheConfig[store.Function]{}),
			Revisions:   store.NewCache[store.Revision](s, store.PrefixRevisions, store.CacheConfig[store.Revision]{}),
			Endpoints:   store.NewCache[store.Endpoint](s, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{}),
			Nodes:       store.NewCache[store.Node](s, store.PrefixNodes, store.CacheConfig[store.Node]{}),
			Assignments: store.NewCache[store.Assignment](s, store.PrefixAssignments, store.CacheConfig[store.Assignment]{}),
			Scales:      store.NewCache[store.Scale](s, store.PrefixScales, store.CacheConfig[store.Scale]{}),
			KeepAlive:   store.NewCache[store.KeepAlive](s, store.PrefixKeepAlive, store.CacheConfig[store.KeepAlive]{}),
			Namespaces:  store.NewCache[store.Namespace](s, store.PrefixNamespaces, store.CacheConfig[store.Namespace]{}),
			JobPods:     store.NewCache[store.JobPod](s, store.PrefixJobPods, store.CacheConfig[store.JobPod]{}),
		}
		narrow := caches
		narrow.Assignments = store.NewCache[store.Assignment](s, store.AssignmentsPrefix("n1"), store.CacheConfig[store.Assignment]{})
		_, err := NewRunner(RunnerConfig{}, RunnerDeps{Store: s, Caches: narrow})
		assert.ErrorContains(t, err, "must hold all of assignments/")

		rev := putRevision(t, s, "shared", 1, func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(1) })
		putNode(t, s, "n1")
		r, err := NewRunner(RunnerConfig{}, RunnerDeps{Store: s, Caches: caches})
		require.NoError(t, err)
		for _, w := range r.watches {
			assert.Nil(t, w.run, "%s: the runner runs no cache of its own", w.prefix)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, run := range []func(context.Context) error{caches.Functions.Run, caches.Revisions.Run, caches.Endpoints.Run,
			caches.Nodes.Run, caches.Assignments.Run, caches.Scales.Run, caches.KeepAlive.Run, caches.Namespaces.Run, caches.JobPods.Run} {
			go func() { _ = run(ctx) }()
		}
		runRunner(t, r)
		synctest.Wait()
		require.True(t, r.allSynced())
		sc, ok := getScale(t, s, rev)
		require.True(t, ok)
		assert.Equal(t, 1, sc.Desired, "the first tick placed the initial scale")
	})
}
