package cron

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	queueembedded "github.com/ebbrun/ebb/queue/embedded"
	queueredis "github.com/ebbrun/ebb/queue/redis"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/redis"
)

type fixture struct {
	t     *testing.T
	ctx   context.Context
	store store.Store
	queue *testQueue
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	return newFixtureOn(t, st)
}

func newFixtureOn(t *testing.T, st store.Store) *fixture {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	return &fixture{t: t, ctx: t.Context(), store: st, queue: newTestQueue()}
}

// create stores trigger tick of function hello (and the function, once),
// created at t0.
func (f *fixture) create(spec api.CronTriggerSpec) {
	f.t.Helper()
	tr := trigger(spec, time.Time{})
	_, err := f.store.Txn(f.ctx, store.PutJSON(store.CronTriggerKey(tr.Function, tr.Name), tr, store.MustNotExist),
		store.PutJSON(store.FunctionKey("hello"), store.Function{Name: "hello"}, store.AnyVersion))
	require.NoError(f.t, err)
}

func (f *fixture) runner() *Runner {
	r, err := New(Config{}, Deps{Store: f.store, Queue: f.queue})
	require.NoError(f.t, err)
	return r
}

func (f *fixture) trigger() store.CronTrigger {
	tr, _, err := store.GetJSON[store.CronTrigger](f.ctx, f.store, store.CronTriggerKey("hello", "tick"))
	require.NoError(f.t, err)
	return tr
}

// runs are the run records by seconds after t0.
func (f *fixture) runs() map[int]store.CronRun {
	rs, _, err := store.ListJSON[store.CronRun](f.ctx, f.store, store.CronRunsPrefix("hello", "tick"))
	require.NoError(f.t, err)
	out := map[int]store.CronRun{}
	for _, r := range rs {
		out[int(r.Value.Scheduled.Sub(t0)/time.Second)] = r.Value
	}
	return out
}

// fired are the seconds after t0 of the runs enqueued, in order.
func (f *fixture) fired() []int {
	var out []int
	for _, inv := range f.queue.all(f.t) {
		at, err := time.Parse(time.RFC3339, inv.Request.Header.Get(api.HeaderCronScheduled))
		require.NoError(f.t, err)
		out = append(out, int(at.Sub(t0)/time.Second))
	}
	return out
}

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func TestRunnerFiresEveryTwoSeconds(t *testing.T) {
	f := newFixture(t)
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", Request: api.CronRequest{Path: "/report", Body: "hi"}})
	r := f.runner()
	assert.Equal(t, at(2), r.Tick(f.ctx, at(1)), "the next run's time, for the loop to wake at")
	assert.Empty(t, f.fired())
	assert.Equal(t, at(4), r.Tick(f.ctx, at(2)))
	assert.Equal(t, at(4), r.Tick(f.ctx, at(2.5)), "a second tick fires nothing more")
	r.Tick(f.ctx, at(4))
	assert.Equal(t, []int{2, 4}, f.fired())

	inv := f.queue.all(f.t)[0]
	assert.Equal(t, "hello", inv.Function)
	assert.Equal(t, "cron/tick/"+"1800000002", inv.IdempotencyKey)
	assert.Equal(t, api.InvocationRequest{Method: "POST", Path: "/report", Body: []byte("hi"), Header: inv.Request.Header}, inv.Request)
	assert.Equal(t, "tick", inv.Request.Header.Get(api.HeaderCronTrigger))
	assert.Equal(t, at(2), inv.CreatedAt)

	runs := f.runs()
	require.Len(t, runs, 2)
	assert.Equal(t, inv.ID, runs[2].InvocationID)
	assert.True(t, runs[2].Enqueued)
	assert.Equal(t, api.CronRunPending, runs[2].Outcome)
	tr := f.trigger()
	assert.Equal(t, at(4), tr.LastScheduled)
	assert.Equal(t, at(4), tr.LastFired)
	assert.Zero(t, tr.Missed)

	f.queue.finish(t, api.InvocationSucceeded)
	r.Tick(f.ctx, at(5))
	assert.Equal(t, api.CronRunSucceeded, f.runs()[2].Outcome, "the outcome follows the invocation")
}

func TestRunnerMetrics(t *testing.T) {
	f := newFixture(t)
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", ConcurrencyPolicy: api.CronForbid, StartingDeadline: api.D(5 * time.Second)})
	reg := prometheus.NewRegistry()
	r, err := New(Config{}, Deps{Store: f.store, Queue: f.queue, Registerer: reg})
	require.NoError(t, err)
	r.Tick(f.ctx, at(2.25))
	r.Tick(f.ctx, at(4)) // run 2 pending: 4 skipped
	r.Tick(f.ctx, at(20))
	count := func(outcome string) float64 {
		var m dto.Metric
		require.NoError(t, r.metrics.runs.WithLabelValues(outcome).Write(&m))
		return m.GetCounter().GetValue()
	}
	assert.InDelta(t, 1, count("fired"), 0)
	assert.InDelta(t, 2, count("skipped"), 0, "4, and 20 while 2 is still pending")
	assert.InDelta(t, 7, count("missed"), 0, "6 to 18")
	var m dto.Metric
	require.NoError(t, r.metrics.lateness.Write(&m))
	assert.Equal(t, uint64(1), m.GetHistogram().GetSampleCount())
	assert.InDelta(t, 0.25, m.GetHistogram().GetSampleSum(), 1e-9, "fired a quarter second late")
	_, err = New(Config{}, Deps{Store: f.store, Queue: f.queue, Registerer: reg})
	assert.Error(t, err, "a second runner on one registerer is refused")
}

func TestRunnerConcurrencyPolicies(t *testing.T) {
	tests := []struct {
		policy api.CronPolicy
		fired  []int
		want   map[int]api.CronRunOutcome
		// replaced are the runs marked replaced.
		replaced []int
	}{
		{policy: api.CronAllow, fired: []int{2, 4, 6}, want: map[int]api.CronRunOutcome{2: api.CronRunSucceeded, 4: api.CronRunSucceeded, 6: api.CronRunPending}},
		{policy: api.CronForbid, fired: []int{2, 6}, want: map[int]api.CronRunOutcome{2: api.CronRunSucceeded, 4: api.CronRunSkipped, 6: api.CronRunPending}},
		{policy: api.CronReplace, fired: []int{2, 4, 6}, want: map[int]api.CronRunOutcome{2: api.CronRunSucceeded, 4: api.CronRunSucceeded, 6: api.CronRunPending}, replaced: []int{2}},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			f := newFixture(t)
			f.create(api.CronTriggerSpec{Schedule: "@every 2s", ConcurrencyPolicy: tt.policy})
			r := f.runner()
			r.Tick(f.ctx, at(2))
			r.Tick(f.ctx, at(4)) // run 2 still queued: the overlap
			f.queue.finish(t, api.InvocationSucceeded)
			r.Tick(f.ctx, at(6))
			assert.Equal(t, tt.fired, f.fired())
			runs := f.runs()
			got := map[int]api.CronRunOutcome{}
			var replaced []int
			for sec, run := range runs {
				got[sec] = run.Outcome
				if run.Replaced {
					replaced = append(replaced, sec)
				}
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.replaced, replaced)
		})
	}
}

// After downtime the newest run missed within the starting deadline is
// fired once and the older ones are counted; past the deadline all are.
func TestRunnerRestart(t *testing.T) {
	tests := []struct {
		name   string
		now    float64
		fired  []int
		missed int
	}{
		{name: "inside the deadline", now: 83, fired: []int{20, 80}, missed: 2},
		{name: "outside the deadline", now: 99, fired: []int{20}, missed: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.create(api.CronTriggerSpec{Schedule: "@every 20s", StartingDeadline: api.D(5 * time.Second)})
			f.runner().Tick(f.ctx, at(20))
			// The control plane is down; a new one starts at now.
			r := f.runner()
			r.Tick(f.ctx, at(tt.now))
			r.Tick(f.ctx, at(tt.now))
			assert.Equal(t, tt.fired, f.fired())
			assert.Equal(t, tt.missed, f.trigger().Missed)
		})
	}
}

// A control plane that died between claiming a run and enqueueing it
// leaves the run unmarked; the next loop enqueues it, once.
func TestRunnerEnqueuesAClaimedRun(t *testing.T) {
	f := newFixture(t)
	f.create(api.CronTriggerSpec{Schedule: "@every 2s"})
	f.queue.fail = errors.New("queue down")
	r := f.runner()
	r.Tick(f.ctx, at(2))
	assert.Empty(t, f.fired())
	assert.False(t, f.runs()[2].Enqueued, "claimed, not enqueued")
	r.Tick(f.ctx, at(2.5))
	assert.Equal(t, []int{2}, f.fired())
	assert.True(t, f.runs()[2].Enqueued)

	// Enqueued twice (the mark was lost): still one invocation.
	tr := f.trigger()
	rs, _, err := store.ListJSON[store.CronRun](f.ctx, f.store, store.CronRunsPrefix("hello", "tick"))
	require.NoError(t, err)
	_, err = Enqueue(f.ctx, f.store, f.queue, tr, rs[0])
	require.NoError(t, err)
	assert.Equal(t, []int{2}, f.fired())
}

func TestRunnerPrunesHistory(t *testing.T) {
	f := newFixture(t)
	one := 1
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", SuccessfulHistory: &one})
	r := f.runner()
	for sec := 2.0; sec <= 10; sec += 2 {
		r.Tick(f.ctx, at(sec))
		f.queue.finish(t, api.InvocationSucceeded)
	}
	r.Tick(f.ctx, at(11))
	assert.Equal(t, map[int]store.CronRun{10: f.runs()[10]}, f.runs(), "only the newest success is kept")
}

// A trigger whose function is gone is removed with its runs, unfired.
func TestRunnerRemovesOrphans(t *testing.T) {
	f := newFixture(t)
	f.create(api.CronTriggerSpec{Schedule: "@every 2s"})
	r := f.runner()
	r.Tick(f.ctx, at(2))
	_, err := f.store.Txn(f.ctx, store.Delete(store.FunctionKey("hello"), store.AnyVersion))
	require.NoError(t, err)
	assert.True(t, r.Tick(f.ctx, at(4)).IsZero())
	assert.Equal(t, []int{2}, f.fired())
	kvs, _, err := f.store.List(f.ctx, store.PrefixCronTriggers)
	require.NoError(t, err)
	assert.Empty(t, kvs)
	assert.Empty(t, f.runs())
}

func TestRunnerSuspended(t *testing.T) {
	f := newFixture(t)
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", Suspend: true})
	r := f.runner()
	assert.True(t, r.Tick(f.ctx, at(9)).IsZero(), "a suspended trigger wakes nobody")
	assert.Empty(t, f.fired())
	assert.Equal(t, at(8), f.trigger().LastScheduled)
	assert.Zero(t, f.trigger().Missed)
}

// Two control planes on one store fire each run once, ticking in turn
// and at once.
func TestRunnersFireEachRunOnce(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		// One machine: the bbolt store and the bbolt queue.
		f := newFixture(t)
		q, err := queueembedded.Open(filepath.Join(t.TempDir(), "queue.db"), queueembedded.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { q.Close() })
		f.queue = &testQueue{Queue: q}
		testRunnersFireEachRunOnce(t, f)
	})
	t.Run("redis", func(t *testing.T) {
		// Two control planes on other machines share one Redis, for the
		// store and the queue.
		srv := testenv.Redis(t)
		rs, err := redis.Open(context.Background(), srv.URL(), redis.Options{})
		require.NoError(t, err)
		f := newFixtureOn(t, rs)
		q, err := queueredis.Open(context.Background(), srv.URL(), queueredis.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { q.Close() })
		f.queue = &testQueue{Queue: q}
		testRunnersFireEachRunOnce(t, f)
	})
}

func testRunnersFireEachRunOnce(t *testing.T, f *fixture) {
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", ConcurrencyPolicy: api.CronAllow, SuccessfulHistory: new(int)})
	a, b := f.runner(), f.runner()
	var want []int
	for sec := 2; sec <= 40; sec += 2 {
		var wg sync.WaitGroup
		for _, r := range []*Runner{a, b} {
			wg.Go(func() { r.Tick(f.ctx, at(float64(sec))) })
		}
		wg.Wait()
		b.Tick(f.ctx, at(float64(sec)))
		want = append(want, sec)
	}
	assert.Equal(t, want, f.fired())
	assert.Zero(t, f.trigger().Missed)
}

// The loop wakes at each run's time: in a bubble, every invocation is
// created exactly on schedule.
func TestRunLoopWakesOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
		require.NoError(t, err)
		defer st.Close()
		q := newTestQueue()
		start := time.Now().UTC()
		tr := store.CronTrigger{Function: "hello", Name: "tick", Spec: api.CronTriggerSpec{Schedule: "@every 2s"}.WithDefaults(), CreatedAt: start}
		_, err = st.Txn(t.Context(), store.PutJSON(store.CronTriggerKey("hello", "tick"), tr, store.MustNotExist),
			store.PutJSON(store.FunctionKey("hello"), store.Function{Name: "hello"}, store.MustNotExist))
		require.NoError(t, err)
		r, err := New(Config{Poll: 5 * time.Second}, Deps{Store: st, Queue: q})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		time.Sleep(61 * time.Second) // synctest bubble time: passes at once
		cancel()
		require.NoError(t, <-done)
		invs := q.all(t)
		require.Len(t, invs, 30)
		first := start.Truncate(2 * time.Second).Add(2 * time.Second)
		for i, inv := range invs {
			assert.Equal(t, first.Add(time.Duration(2*i)*time.Second), inv.CreatedAt, "run %d fired on time", i)
		}
	})
}

// A trigger with a job spec is a CronJob: each run creates a job named
// after the trigger and its time, its outcome is the job's, and Forbid
// skips a run while the last run's job is still running.
func TestRunnerCreatesJobs(t *testing.T) {
	f := newFixture(t)
	spec := api.JobSpec{Image: "report:latest"}
	f.create(api.CronTriggerSpec{Schedule: "@every 2s", ConcurrencyPolicy: api.CronForbid, Job: &spec})
	r := f.runner()
	r.Tick(f.ctx, at(2))
	assert.Empty(t, f.fired(), "a CronJob enqueues no invocation")
	name := api.CronJobName("tick", at(2))
	job, _, err := store.GetJSON[store.Job](f.ctx, f.store, store.JobKey(name))
	require.NoError(t, err, "the run's job exists")
	assert.Equal(t, "report:latest", job.Spec.Image)
	assert.Equal(t, name, f.runs()[2].Job)

	r.Tick(f.ctx, at(4))
	assert.Equal(t, api.CronRunSkipped, f.runs()[4].Outcome, "Forbid: the job of run 2 still runs")

	job.Status.Phase = api.JobComplete
	_, err = f.store.Txn(f.ctx, store.PutJSON(store.JobKey(name), job, store.AnyVersion))
	require.NoError(t, err)
	r.Tick(f.ctx, at(6))
	runs := f.runs()
	assert.Equal(t, api.CronRunSucceeded, runs[2].Outcome, "the run's outcome is its job's")
	assert.Equal(t, api.CronJobName("tick", at(6)), runs[6].Job)

	// A run created twice (its claimer died before marking it) is one job.
	tr := f.trigger()
	run := store.CronRun{Function: "hello", Trigger: "tick", CronRun: api.CronRun{Scheduled: at(6), Outcome: api.CronRunPending}}
	require.NoError(t, createJob(f.ctx, f.store, tr, &run))
	jobs, _, err := store.ListJSON[store.Job](f.ctx, f.store, store.PrefixJobs)
	require.NoError(t, err)
	assert.Len(t, jobs, 2)
}
