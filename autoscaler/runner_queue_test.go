package autoscaler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// fakeDepths is a QueueDepths whose answers the test sets, and which
// counts the reads.
type fakeDepths struct {
	mu     sync.Mutex
	depths map[string]int
	err    error
	reads  map[string]int
}

func newFakeDepths() *fakeDepths {
	return &fakeDepths{depths: map[string]int{}, reads: map[string]int{}}
}

func (f *fakeDepths) Depth(_ context.Context, function string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[function]++
	if f.err != nil {
		return 0, f.err
	}
	return f.depths[function], nil
}

func (f *fakeDepths) set(function string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.depths[function] = n
}

func (f *fakeDepths) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeDepths) readsOf(function string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[function]
}

// startQueueRunner runs a Runner with a queue depth source in the test's
// bubble and waits for its first tick.
func startQueueRunner(t *testing.T, s store.Store, q QueueDepths, cfg RunnerConfig) *runnerEnv {
	t.Helper()
	cfg.Placement.NodeDownAfter = 1000 * time.Hour
	reg := prometheus.NewRegistry()
	r, err := NewRunner(cfg, RunnerDeps{Store: s, Registerer: reg, Queue: q})
	require.NoError(t, err)
	runRunner(t, r)
	synctest.Wait()
	require.True(t, r.allSynced(), "the runner's caches have listed")
	return &runnerEnv{store: s, runner: r, reg: reg}
}

func desiredOf(t *testing.T, s store.Store, rev string) int {
	t.Helper()
	sc, ok := getScale(t, s, rev)
	require.True(t, ok, "a scale is recorded for %s", rev)
	return sc.Desired
}

// Queued asynchronous work wakes a function at zero with no request and
// no activation poke, sizes it to ceil(depth/target) on each tick of Run's
// loop, and once drained lets it go to zero a grace period later.
func TestRunnerScalesOnQueueDepth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1", "img")
		rev := deploy(t, s, "jobs", 1, func(sp *api.FunctionSpec) {
			sp.Scale.Initial = intp(0)
			sp.Async = &api.AsyncPolicy{Target: 10}
		})
		q := newFakeDepths()
		env := startQueueRunner(t, s, q, RunnerConfig{}) // ticks every 2 s
		assert.Equal(t, 0, desiredOf(t, s, rev), "nothing queued: stays at zero")
		assert.Equal(t, 1, q.readsOf("jobs"), "one read on the first tick")

		q.set("jobs", 25)
		advance(2 * time.Second)
		assert.Equal(t, 3, desiredOf(t, s, rev), "ceil(25/10), before any request reached a router")
		a, ok := getAssignment(t, s, "n1", rev)
		require.True(t, ok)
		assert.Equal(t, 3, a.Replicas)
		assert.Equal(t, 25.0, metricValue(t, env.runner.m.queued.WithLabelValues("default", "jobs", rev)))
		assert.Equal(t, 2, q.readsOf("jobs"), "one read per tick, not per revision step")
		st, ok := env.runner.Status(rev)
		require.True(t, ok)
		assert.Equal(t, ReasonAsync, st.Decision.Reason)
		assert.Equal(t, 3, st.Decision.AsyncDesired)

		putEndpoints(t, s, rev, 3)
		q.set("jobs", 0)
		advance(2 * time.Second)
		assert.Equal(t, 1, desiredOf(t, s, rev), "drained: down by the scale-down rate, kept warm")
		advance(26 * time.Second)
		assert.Equal(t, 1, desiredOf(t, s, rev), "within the grace period of the last queued work")
		advance(2 * time.Second)
		assert.Equal(t, 0, desiredOf(t, s, rev), "a grace period after the queue drained")
	})
}

// The function's depth is shared between its revisions by the traffic
// split, rounded up; a revision only a tag or a header match reaches gets
// none, since the invoker delivers to the function's own host.
func TestRunnerSharesQueueDepthByTraffic(t *testing.T) {
	old := api.RevisionName("fn", 1)
	tests := []struct {
		name             string
		traffic          []api.TrafficTarget // of the second deploy
		wantOld, wantNew int                 // queued invocations each sees
	}{
		{name: "all to the latest", wantOld: 0, wantNew: 50},
		{name: "a 90/10 split", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 90}, {Revision: old, Percent: 10}}, wantOld: 5, wantNew: 45},
		{name: "rounded up", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 99}, {Revision: old, Percent: 1}}, wantOld: 1, wantNew: 50},
		{name: "a tag gets none", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}, {Revision: old, Tag: "v1"}}, wantOld: 0, wantNew: 50},
		{name: "a header match gets none", traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}, {Revision: old, Headers: map[string]string{"User": "tester"}}}, wantOld: 0, wantNew: 50},
		{name: "no split: the latest revision", traffic: []api.TrafficTarget{}, wantOld: 0, wantNew: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := openStore(t)
				putNode(t, s, "n1")
				noInitial := func(sp *api.FunctionSpec) { sp.Scale.Initial = intp(0) }
				require.Equal(t, old, deploy(t, s, "fn", 1, noInitial))
				next := deploy(t, s, "fn", 2, func(sp *api.FunctionSpec) {
					noInitial(sp)
					sp.Env = map[string]string{"CHANGED": "yes"}
				}, tt.traffic...)
				q := newFakeDepths()
				q.set("fn", 50)
				env := startQueueRunner(t, s, q, RunnerConfig{Tick: time.Hour})
				env.tick(t)
				for rev, want := range map[string]int{old: tt.wantOld, next: tt.wantNew} {
					st, ok := env.runner.Status(rev)
					require.True(t, ok)
					assert.Equal(t, want, st.Observation.Queued, rev)
					assert.Equal(t, min(want, 1), desiredOf(t, s, rev), "%s: woken only with a share (target 100)", rev)
				}
			})
		})
	}
}

// An activation poke between ticks decides on the depth the last tick
// read: the depth is read once per tick, never per step.
func TestRunnerActivateUsesTheLastTicksDepth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1")
		rev := deploy(t, s, "fn", 1, func(sp *api.FunctionSpec) {
			sp.Scale.Initial = intp(0)
			sp.Async = &api.AsyncPolicy{Target: 1}
		})
		q := newFakeDepths()
		q.set("fn", 4)
		env := startQueueRunner(t, s, q, RunnerConfig{Tick: time.Hour})
		require.Equal(t, 4, desiredOf(t, s, rev))
		q.set("fn", 9)
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		assert.Equal(t, 4, desiredOf(t, s, rev), "no read outside a tick")
		assert.Equal(t, 1, q.readsOf("fn"))
		env.tick(t)
		assert.Equal(t, 9, desiredOf(t, s, rev))
	})
}

// A queue that does not answer counts as nothing queued: the tick still
// decides for everything, on the other signals, and the failure is
// counted.
func TestRunnerCountsAnUnreadableQueueAsEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNode(t, s, "n1")
		rev := deploy(t, s, "fn", 1, func(sp *api.FunctionSpec) {
			sp.Scale.Initial = intp(0)
			sp.Async = &api.AsyncPolicy{Target: 1}
		})
		q := newFakeDepths()
		q.set("fn", 4)
		env := startQueueRunner(t, s, q, RunnerConfig{Tick: time.Hour})
		require.Equal(t, 4, desiredOf(t, s, rev))

		q.fail(errors.New("redis: connection refused"))
		require.NoError(t, env.runner.Tick(context.Background()), "an unreadable queue fails no step")
		st, ok := env.runner.Status(rev)
		require.True(t, ok)
		assert.Zero(t, st.Observation.Queued)
		assert.Equal(t, 1.0, metricValue(t, env.runner.m.queueErrors))
		assert.Equal(t, 1, desiredOf(t, s, rev), "decided on the other signals: no replica ready, kept warm for its grace")
	})
}
