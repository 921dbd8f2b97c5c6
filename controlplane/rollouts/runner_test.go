package rollouts

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/rollout"
	"github.com/ebbrun/ebb/rollout/promql"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/redis"
)

// fixture is one function, hello, with a stable revision and a canary
// under rollout, in a real embedded store, and runners on a test clock.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	store store.Store
	now   time.Time
}

const (
	stable = "hello-00001"
	canary = "hello-00002"
)

var rolloutKey = store.RolloutKey("hello", canary)

func policy() api.RolloutPolicy {
	rate := 0.1
	return api.RolloutPolicy{
		Steps:        []int{10, 50},
		Interval:     api.D(time.Second),
		StepDuration: api.D(time.Second),
		Deadline:     api.D(3 * time.Second),
		MinRequests:  10,
		MaxErrorRate: &rate,
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	return newFixtureOn(t, st)
}

// newFixtureOn is newFixture on a store of the caller's.
func newFixtureOn(t *testing.T, st store.Store) *fixture {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, store: st, now: time.Unix(1_800_000_000, 0).UTC()}

	fn := store.Function{
		Name: "hello", Generation: 2, LatestRevision: canary,
		Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}},
	}
	ops, err := Begin(f.now, &fn, policy(), stable, canary, nil)
	require.NoError(t, err)
	require.NotEmpty(t, ops, "a function following its latest revision starts a rollout")
	assert.Equal(t, []api.TrafficTarget{{Revision: stable, Percent: 90}, {Revision: canary, Percent: 10}}, fn.Traffic)
	ops = append(ops,
		store.PutJSON(store.RevisionKey("hello", stable), store.Revision{Name: stable, Function: "hello"}, store.MustNotExist),
		store.PutJSON(store.RevisionKey("hello", canary), store.Revision{Name: canary, Function: "hello"}, store.MustNotExist),
		store.PutJSON(store.FunctionKey("hello"), fn, store.MustNotExist))
	_, err = st.Txn(ctx, ops...)
	require.NoError(t, err)
	return f
}

// runner starts a control plane's runner with a cache of its own, as a
// process has.
func (f *fixture) runner(owner string) *Runner {
	cache := store.NewCache[store.Rollout](f.store, store.PrefixRollouts, store.CacheConfig[store.Rollout]{})
	go func() { _ = cache.Run(f.ctx) }()
	r, err := New(Config{Owner: owner, Lease: 5 * time.Second, Now: func() time.Time { return f.now }}, Deps{Store: f.store, Rollouts: cache})
	require.NoError(f.t, err)
	<-cache.Ready()
	return r
}

// tick runs r once against a cache that has seen every write so far.
func (f *fixture) tick(r *Runner) {
	f.t.Helper()
	kv, err := f.store.Get(f.ctx, rolloutKey)
	require.NoError(f.t, err)
	require.Eventually(f.t, func() bool {
		v, ok := r.deps.Rollouts.Snapshot().Get(rolloutKey)
		return ok && v.Version >= kv.Version
	}, 5*time.Second, time.Millisecond, "cache catches up")
	r.Tick(f.ctx)
}

func (f *fixture) rollout() store.Rollout {
	rec, _, err := store.GetJSON[store.Rollout](f.ctx, f.store, rolloutKey)
	require.NoError(f.t, err)
	return rec
}

func (f *fixture) traffic() []api.TrafficTarget {
	fn, _, err := store.GetJSON[store.Function](f.ctx, f.store, store.FunctionKey("hello"))
	require.NoError(f.t, err)
	return fn.Traffic
}

// load reports one router interval of traffic: requests to each revision,
// errors of the canary's, and the latency of every answered one.
func load(revision string, requests, errs int64, latency time.Duration) api.RevisionStat {
	o := api.Outcomes{Requests: requests, Errors5xx: errs, Latency: make([]int64, api.LatencyBucket(latency)+1)}
	o.Latency[api.LatencyBucket(latency)] = requests
	return api.RevisionStat{Revision: revision, Reporter: "router/a", Outcomes: &o}
}

func TestRunnerHealthyCanarySucceeds(t *testing.T) {
	f := newFixture(t)
	a := f.runner("cp-a")
	f.tick(a)
	assert.Equal(t, "cp-a", f.rollout().Owner, "a free rollout is claimed")

	a.Report([]api.RevisionStat{load(canary, 100, 0, time.Millisecond), load(stable, 900, 0, time.Millisecond)})
	f.now = f.now.Add(time.Second)
	f.tick(a)
	rec := f.rollout()
	require.Equal(t, rollout.Progressing, rec.Phase, rec.Reason)
	assert.Equal(t, 50, rec.Percent, "step 1 passed after its duration")
	assert.Equal(t, int64(100), rec.Steps[0].Last.Canary.Requests, "the window holds the canary's requests")
	assert.Equal(t, []api.TrafficTarget{{Revision: stable, Percent: 50}, {Revision: canary, Percent: 50}}, f.traffic())

	a.Report([]api.RevisionStat{load(canary, 500, 1, time.Millisecond), load(stable, 500, 0, time.Millisecond)})
	f.now = f.now.Add(time.Second)
	f.tick(a)
	rec = f.rollout()
	assert.Equal(t, rollout.Succeeded, rec.Phase, rec.Reason)
	assert.Equal(t, []api.TrafficTarget{{LatestRevision: true, Percent: 100}}, f.traffic(), "the function follows its latest revision again")
}

func TestRunnerRollsBackOnErrorsAndSlowness(t *testing.T) {
	for _, tc := range []struct {
		name   string
		canary api.RevisionStat
		reason string
	}{
		{"errors", load(canary, 100, 30, time.Millisecond), "error rate"},
		{"slow", load(canary, 100, 0, 5*time.Millisecond), "p50 4.718592ms is 4.8x the stable p50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.runner("cp-a")
			f.tick(a)
			a.Report([]api.RevisionStat{tc.canary, load(stable, 900, 0, time.Millisecond)})
			f.now = f.now.Add(time.Second)
			f.tick(a)
			rec := f.rollout()
			assert.Equal(t, rollout.RolledBack, rec.Phase)
			assert.Contains(t, rec.Reason, tc.reason)
			assert.Equal(t, []api.TrafficTarget{{Revision: stable, Percent: 100}}, f.traffic(), "all traffic back on the stable revision")
		})
	}
}

func TestRunnerWaitsForItsInterval(t *testing.T) {
	f := newFixture(t)
	a := f.runner("cp-a")
	f.tick(a)
	a.Report([]api.RevisionStat{load(canary, 100, 50, time.Millisecond)})
	f.now = f.now.Add(900 * time.Millisecond)
	f.tick(a)
	assert.Equal(t, rollout.Progressing, f.rollout().Phase, "nothing is judged before the interval is up")
	f.now = f.now.Add(100 * time.Millisecond)
	f.tick(a)
	assert.Equal(t, rollout.RolledBack, f.rollout().Phase)
}

func TestRunnerPausedRolloutHoldsItsPercent(t *testing.T) {
	f := newFixture(t)
	a := f.runner("cp-a")
	f.tick(a)
	kv, err := f.store.Get(f.ctx, rolloutKey)
	require.NoError(t, err)
	rec := f.rollout()
	rec.RolloutState, _, err = Act(f.now, rec.RolloutState, api.RolloutPause, "")
	require.NoError(t, err)
	_, err = Write(f.ctx, f.store, rec, kv.Version, rollout.Decision{}, f.now)
	require.NoError(t, err)

	a.Report([]api.RevisionStat{load(canary, 100, 50, time.Millisecond)})
	for range 3 {
		f.now = f.now.Add(time.Second)
		f.tick(a)
	}
	rec = f.rollout()
	assert.Equal(t, rollout.Paused, rec.Phase, "a paused rollout is not judged")
	assert.Equal(t, "cp-a", rec.Owner, "its lease is kept")
	assert.True(t, rec.LeaseUntil.After(f.now))
}

// Two control planes never both drive one rollout: the second leaves it
// alone while the first's lease holds, takes it over once the lease has
// run out, and the first, coming back, finds it taken.
func TestRunnersShareNoRollout(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testRunnersShareNoRollout(t, newFixture(t)) })
	t.Run("redis", func(t *testing.T) {
		// Two control planes on other machines share one Redis.
		rs, err := redis.Open(context.Background(), testenv.Redis(t).URL(), redis.Options{})
		require.NoError(t, err)
		testRunnersShareNoRollout(t, newFixtureOn(t, rs))
	})
}

func testRunnersShareNoRollout(t *testing.T, f *fixture) {
	a, b := f.runner("cp-a"), f.runner("cp-b")
	f.tick(a)
	f.tick(b)
	assert.Equal(t, "cp-a", f.rollout().Owner)
	assert.Empty(t, b.drives, "b leaves a's rollout alone")

	// a passes step 1; b, ticking too, changes nothing.
	for _, r := range []*Runner{a, b} {
		r.Report([]api.RevisionStat{load(canary, 100, 0, time.Millisecond), load(stable, 900, 0, time.Millisecond)})
	}
	f.now = f.now.Add(time.Second)
	f.tick(a)
	f.tick(b)
	rec := f.rollout()
	assert.Equal(t, 50, rec.Percent)
	assert.Equal(t, 1, rec.Steps[0].Checks, "one check of step 1, by a alone")

	// a stops; b waits out the lease, then takes over with a fresh window.
	f.now = f.now.Add(4 * time.Second)
	f.tick(b)
	assert.Equal(t, "cp-a", f.rollout().Owner, "the lease still holds")
	f.now = f.now.Add(2 * time.Second)
	f.tick(b)
	assert.Equal(t, "cp-b", f.rollout().Owner, "b takes over an expired lease")

	// a comes back: its write is refused, and it lets go.
	a.Report([]api.RevisionStat{load(canary, 100, 90, time.Millisecond)})
	f.tick(a)
	assert.Empty(t, a.drives)
	assert.Equal(t, rollout.Progressing, f.rollout().Phase, "a judged nothing")

	b.Report([]api.RevisionStat{load(canary, 500, 0, time.Millisecond), load(stable, 500, 0, time.Millisecond)})
	f.now = f.now.Add(time.Second)
	f.tick(b)
	rec = f.rollout()
	assert.Equal(t, rollout.Succeeded, rec.Phase, rec.Reason)
	assert.Equal(t, 1, rec.Steps[1].Checks)
}

func TestBeginSupersedesALiveRollout(t *testing.T) {
	f := newFixture(t)
	existing, _, err := store.ListJSON[store.Rollout](f.ctx, f.store, store.RolloutsPrefix("hello"))
	require.NoError(t, err)
	fn, _, err := store.GetJSON[store.Function](f.ctx, f.store, store.FunctionKey("hello"))
	require.NoError(t, err)
	fn.LatestRevision = "hello-00003"
	ops, err := Begin(f.now, &fn, policy(), canary, "hello-00003", existing)
	require.NoError(t, err)
	assert.Equal(t, []api.TrafficTarget{{Revision: stable, Percent: 90}, {Revision: "hello-00003", Percent: 10}}, fn.Traffic,
		"the new canary starts from the old one's stable revision")
	require.Len(t, ops, 2)
	_, err = f.store.Txn(f.ctx, ops...)
	require.NoError(t, err)
	rec := f.rollout()
	assert.Equal(t, rollout.Aborted, rec.Phase)
	assert.Contains(t, rec.Reason, "superseded by revision hello-00003")
}

func TestBeginWithoutAStableRevision(t *testing.T) {
	fn := store.Function{Name: "hello", Traffic: []api.TrafficTarget{{Revision: stable, Percent: 50}, {Revision: canary, Percent: 50}}}
	ops, err := Begin(time.Now(), &fn, policy(), canary, "hello-00003", nil)
	require.NoError(t, err)
	assert.Nil(t, ops, "a hand-made split has no one stable revision")
	assert.Len(t, fn.Traffic, 2, "and is left alone")
}

func TestTrimHistory(t *testing.T) {
	var existing []store.Versioned[store.Rollout]
	t0 := time.Unix(0, 0)
	for i := range History + 2 {
		rec := store.Rollout{ID: api.RevisionName("hello", i+1)}
		rec.Phase, rec.StartedAt = rollout.Succeeded, t0.Add(time.Duration(i)*time.Minute)
		existing = append(existing, store.Versioned[store.Rollout]{Key: store.RolloutKey("hello", rec.ID), Version: int64(i + 1), Value: rec})
	}
	ops := trimHistory(existing)
	require.Len(t, ops, 3, "keeps History-1, making room for the new one")
	for i, op := range ops {
		assert.Equal(t, store.RolloutKey("hello", api.RevisionName("hello", 3-i)), op.Key, "oldest go")
	}
}

func TestActUnknown(t *testing.T) {
	_, _, err := Act(time.Now(), api.RolloutState{Phase: rollout.Progressing}, "explode", "")
	assert.ErrorIs(t, err, ErrUnknownAction)
	_, _, err = Act(time.Now(), api.RolloutState{Phase: rollout.Succeeded}, api.RolloutAbort, "")
	assert.ErrorIs(t, err, rollout.ErrTransition)
}

// fixedPromQL answers every check with one value and records the vars.
type fixedPromQL struct {
	value float64
	vars  []promql.Vars
}

func (p *fixedPromQL) Check(_ context.Context, _ time.Time, checks []api.PromCheck, vars promql.Vars) ([]float64, error) {
	p.vars = append(p.vars, vars)
	out := make([]float64, len(checks))
	for i := range out {
		out[i] = p.value
	}
	return out, nil
}

func TestRunnerAsksPromQL(t *testing.T) {
	f := newFixture(t)
	// The rollout's policy gains a check, as if it had started with one.
	kv, err := f.store.Get(f.ctx, rolloutKey)
	require.NoError(t, err)
	rec := f.rollout()
	rec.Policy.PromQL = []api.PromCheck{{Query: `sum(rate(ebb_router_requests_total{revision="{{canary}}",code=~"5.."}[{{interval}}]))`, Max: 0.5}}
	_, err = Write(f.ctx, f.store, rec, kv.Version, rollout.Decision{}, f.now)
	require.NoError(t, err)

	prom := &fixedPromQL{value: 3}
	a := f.runner("cp-a")
	a.deps.PromQL = prom
	f.tick(a)
	a.Report([]api.RevisionStat{load(canary, 100, 0, time.Millisecond), load(stable, 900, 0, time.Millisecond)})
	f.now = f.now.Add(time.Second)
	f.tick(a)
	rec = f.rollout()
	assert.Equal(t, rollout.RolledBack, rec.Phase)
	assert.Contains(t, rec.Reason, "promql[0]")
	require.Len(t, prom.vars, 1)
	assert.Equal(t, promql.Vars{Canary: canary, Stable: stable, Function: "hello", Namespace: api.DefaultNamespace, Interval: time.Second}, prom.vars[0])
}

// A canary whose replicas keep crashing is rolled back at its next check,
// before any request of it could time out.
func TestRunnerRollsBackACrashingCanary(t *testing.T) {
	f := newFixture(t)
	a := f.runner("cp-a")
	f.tick(a)
	_, err := f.store.Txn(f.ctx, store.PutJSON(store.RevStatusKey(canary, "n1"), store.RevisionNodeStatus{
		Revision: canary, Node: "n1", State: api.RevisionCrashLoop, Message: "exit status 1", Restarts: 3,
	}, store.AnyVersion))
	require.NoError(t, err)
	f.now = f.now.Add(time.Second)
	f.tick(a)
	rec := f.rollout()
	assert.Equal(t, rollout.RolledBack, rec.Phase)
	assert.Contains(t, rec.Reason, "the canary revision cannot serve: CrashLoop: exit status 1")
	assert.Equal(t, []api.TrafficTarget{{Revision: stable, Percent: 100}}, f.traffic())
}
