package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// fixture is a real embedded store, a runner on a test clock, and a
// simulated node agent that runs each pod for one step and ends it with
// the exit code exit gives.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	store  store.Store
	runner *Runner
	now    time.Time
	exit   func(pod store.JobPod) int
	// maxRunning is the most pods running at once, over every step.
	maxRunning int
	started    int
}

func newFixture(t *testing.T, nodes ...string) *fixture {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, ctx: t.Context(), store: st, now: t0, exit: func(store.JobPod) int { return 0 }}
	f.runner, err = New(Config{Now: func() time.Time { return f.now }}, st, nil)
	require.NoError(t, err)
	for _, n := range nodes {
		f.heartbeat(n)
	}
	return f
}

func (f *fixture) heartbeat(node string) {
	_, err := f.store.Txn(f.ctx, store.PutJSON(store.NodeKey(node),
		store.Node{Name: node, Heartbeat: f.now, HeartbeatInterval: api.D(time.Second)}, store.AnyVersion))
	require.NoError(f.t, err)
}

func (f *fixture) createJob(name string, spec api.JobSpec) {
	require.NoError(f.t, spec.Validate())
	_, err := f.store.Txn(f.ctx, store.PutJSON(store.JobKey(name),
		store.Job{Name: name, Namespace: api.DefaultNamespace, Spec: spec.WithDefaults(), CreatedAt: f.now}, store.MustNotExist))
	require.NoError(f.t, err)
}

func (f *fixture) job(name string) store.Job {
	j, _, err := store.GetJSON[store.Job](f.ctx, f.store, store.JobKey(name))
	require.NoError(f.t, err)
	return j
}

func (f *fixture) pods() []store.Versioned[store.JobPod] {
	pods, _, err := store.ListJSON[store.JobPod](f.ctx, f.store, store.PrefixJobPods)
	require.NoError(f.t, err)
	return pods
}

// agentStep is the simulated agents' turn: a pod without a report starts,
// a running one exits.
func (f *fixture) agentStep(finish bool) {
	running := 0
	for _, p := range f.pods() {
		key := store.JobPodStatusKey(p.Value.Job, p.Value.Name)
		rep, _, err := store.GetJSON[store.JobPodStatus](f.ctx, f.store, key)
		switch {
		case err != nil:
			rep = store.JobPodStatus{Name: p.Value.Name, Job: p.Value.Job, Index: p.Value.Index, Node: p.Value.Node,
				Phase: store.JobPodRunning, StartedAt: f.now}
			f.started++
			running++
		case rep.Phase == store.JobPodRunning && finish:
			code := f.exit(p.Value)
			rep.ExitCode, rep.FinishedAt, rep.Phase = &code, f.now, store.JobPodSucceeded
			if code != 0 {
				rep.Phase = store.JobPodFailed
			}
		case rep.Phase == store.JobPodRunning:
			running++
			continue
		default:
			continue
		}
		_, err = f.store.Txn(f.ctx, store.Check(p.Key, p.Version), store.PutJSON(key, rep, store.AnyVersion))
		require.NoError(f.t, err)
	}
	f.maxRunning = max(f.maxRunning, running)
}

func (f *fixture) tick() {
	require.NoError(f.t, f.runner.Tick(f.ctx))
}

// runUntilFinished alternates runner ticks and agent steps, a second
// apart, until the job is finished.
func (f *fixture) runUntilFinished(name string) store.Job {
	for range 100 {
		f.tick()
		if j := f.job(name); j.Status.Finished() {
			return j
		}
		f.agentStep(false)
		f.tick()
		f.agentStep(true)
		f.now = f.now.Add(time.Second)
		for _, n := range []string{"n1", "n2"} {
			f.heartbeat(n)
		}
	}
	f.t.Fatal("the job did not finish")
	return store.Job{}
}

func TestCompletionsWithParallelism(t *testing.T) {
	f := newFixture(t, "n1", "n2")
	f.createJob("batch", api.JobSpec{Image: "img", Completions: 5, Parallelism: 2})
	j := f.runUntilFinished("batch")
	assert.Equal(t, api.JobComplete, j.Status.Phase)
	assert.Equal(t, 5, j.Status.Succeeded)
	assert.Equal(t, 0, j.Status.Active)
	assert.Len(t, j.Status.Attempts, 5)
	assert.Equal(t, 5, f.started)
	assert.Equal(t, 2, f.maxRunning, "never more than parallelism at once")
	for _, a := range j.Status.Attempts {
		require.NotNil(t, a.ExitCode)
		assert.Equal(t, 0, *a.ExitCode)
		assert.Contains(t, []string{"n1", "n2"}, a.Node)
	}
	assert.Empty(t, f.pods(), "finished pods' records are gone")
	reports, _, err := f.store.List(f.ctx, store.PrefixJobPodStatus)
	require.NoError(t, err)
	assert.Empty(t, reports)
}

func TestBackoffLimit(t *testing.T) {
	f := newFixture(t, "n1")
	f.exit = func(store.JobPod) int { return 3 }
	f.createJob("flaky", api.JobSpec{Image: "img", BackoffLimit: intp(2)})
	j := f.runUntilFinished("flaky")
	assert.Equal(t, api.JobFailed, j.Status.Phase)
	assert.Equal(t, api.JobReasonBackoffLimit, j.Status.Reason)
	assert.Equal(t, 3, j.Status.Failed, "backoffLimit 2: the third failure fails the job")
	assert.Equal(t, 3, f.started)
	for _, a := range j.Status.Attempts {
		assert.Equal(t, 3, *a.ExitCode)
	}
}

func TestRetryThenSucceed(t *testing.T) {
	f := newFixture(t, "n1")
	f.exit = func(p store.JobPod) int {
		if p.Index < 2 {
			return 1
		}
		return 0
	}
	f.createJob("retry", api.JobSpec{Image: "img"})
	j := f.runUntilFinished("retry")
	assert.Equal(t, api.JobComplete, j.Status.Phase)
	assert.Equal(t, 2, j.Status.Failed)
	assert.Equal(t, 1, j.Status.Succeeded)
}

func TestActiveDeadlineKills(t *testing.T) {
	f := newFixture(t, "n1")
	f.createJob("slow", api.JobSpec{Image: "img", Parallelism: 2, Completions: 2, ActiveDeadline: api.D(10 * time.Second)})
	f.tick()
	f.agentStep(false)
	require.Len(t, f.pods(), 2)
	f.now = f.now.Add(9 * time.Second)
	f.heartbeat("n1")
	f.tick()
	require.Len(t, f.pods(), 2, "still within the deadline")
	f.now = f.now.Add(time.Second)
	f.heartbeat("n1")
	f.tick()
	j := f.job("slow")
	assert.Equal(t, api.JobFailed, j.Status.Phase)
	assert.Equal(t, api.JobReasonDeadlineExceeded, j.Status.Reason)
	assert.Equal(t, 0, j.Status.Active)
	assert.Empty(t, f.pods(), "the pods' records are deleted, which kills them")
	for _, a := range j.Status.Attempts {
		assert.Equal(t, api.AttemptReasonKilled, a.Reason)
	}
}

func TestTTLAfterFinishedAndDeletedJobs(t *testing.T) {
	f := newFixture(t, "n1")
	f.createJob("short", api.JobSpec{Image: "img", TTLAfterFinished: api.D(time.Minute)})
	j := f.runUntilFinished("short")
	require.Equal(t, api.JobComplete, j.Status.Phase)
	f.now = j.Status.CompletedAt.Add(time.Minute)
	f.tick()
	_, _, err := store.GetJSON[store.Job](f.ctx, f.store, store.JobKey("short"))
	assert.ErrorIs(t, err, store.ErrNotFound)

	f.createJob("gone", api.JobSpec{Image: "img"})
	f.heartbeat("n1")
	f.tick()
	f.agentStep(false)
	require.Len(t, f.pods(), 1)
	_, err = f.store.Txn(f.ctx, store.Delete(store.JobKey("gone"), store.AnyVersion))
	require.NoError(t, err)
	f.tick()
	assert.Empty(t, f.pods(), "a deleted job's pods are deleted, which kills them")
	reports, _, err := f.store.List(f.ctx, store.PrefixJobPodStatus)
	require.NoError(t, err)
	assert.Empty(t, reports)
}

func TestNoLiveNodeWaits(t *testing.T) {
	f := newFixture(t, "n1")
	f.now = f.now.Add(time.Hour) // n1's heartbeat is stale
	f.createJob("waiting", api.JobSpec{Image: "img"})
	f.tick()
	assert.Empty(t, f.pods())
	assert.Equal(t, api.JobRunning, f.job("waiting").Status.Phase)
	f.heartbeat("n1")
	f.tick()
	assert.Len(t, f.pods(), 1)
}

func TestCreate(t *testing.T) {
	f := newFixture(t, "n1")
	job, err := Create(f.ctx, f.store, "team-a", "nightly-1", api.JobSpec{Image: "img", Completions: 2}, f.now)
	require.NoError(t, err)
	assert.Equal(t, 2, job.Spec.Completions)
	assert.Equal(t, api.DefaultJobBackoffLimit, job.Spec.Backoff())
	_, err = Create(f.ctx, f.store, "team-a", "nightly-1", api.JobSpec{Image: "img"}, f.now)
	assert.ErrorIs(t, err, store.ErrConflict)
	_, err = Create(f.ctx, f.store, "team-a", "x", api.JobSpec{Image: "img", Parallelism: -1}, f.now)
	require.True(t, api.IsValidation(err))
	assert.Contains(t, err.Error(), "parallelism")

	f.tick()
	got := f.job("nightly-1.team-a")
	assert.Equal(t, api.JobRunning, got.Status.Phase)
	require.Len(t, f.pods(), 1)
	assert.Equal(t, "team-a", f.pods()[0].Value.Namespace)
}

// TestLeasesDecideWhichNodesLive: with Live set, a node's lease, not its
// record's age, says whether pods go there.
func TestLeasesDecideWhichNodesLive(t *testing.T) {
	f := newFixture(t, "n1", "n2")
	live := map[string]bool{"n2": true}
	f.runner.cfg.Live = func(node string) bool { return live[node] }
	f.now = f.now.Add(time.Hour) // both records are old: only the lease counts
	f.createJob("leased", api.JobSpec{Image: "img"})
	f.tick()
	pods := f.pods()
	require.Len(t, pods, 1)
	assert.Equal(t, "n2", pods[0].Value.Node, "only the node whose lease holds")
}
