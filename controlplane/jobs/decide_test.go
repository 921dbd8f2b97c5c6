package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func intp(v int) *int { return &v }

func running(idx int, node string) api.JobAttempt {
	return api.JobAttempt{Index: idx, Node: node, StartedAt: t0}
}

func ended(idx, code int) api.JobAttempt {
	return api.JobAttempt{Index: idx, Node: "n1", ExitCode: intp(code), StartedAt: t0, FinishedAt: t0.Add(time.Second)}
}

func pod(idx int, report *store.JobPodStatus) Pod {
	return Pod{Name: store.JobPodName("j", idx), Index: idx, Node: "n1", Report: report, NodeLive: true}
}

func exited(code int) *store.JobPodStatus {
	phase := store.JobPodSucceeded
	if code != 0 {
		phase = store.JobPodFailed
	}
	return &store.JobPodStatus{Phase: phase, ExitCode: intp(code), StartedAt: t0, FinishedAt: t0.Add(time.Second)}
}

func job(spec api.JobSpec, attempts ...api.JobAttempt) api.Job {
	j := api.Job{Name: "j", Spec: spec}
	if len(attempts) > 0 || spec.Image == "started" {
		j.Status = api.JobStatus{Phase: api.JobRunning, StartedAt: t0, Attempts: attempts}
	}
	return j
}

func TestDecide(t *testing.T) {
	spec := api.JobSpec{Image: "started", Completions: 5, Parallelism: 2, BackoffLimit: intp(1)}
	tests := []struct {
		name string
		in   Input
		// want
		phase, reason             string
		create                    []int // indexes
		delete                    []string
		active, succeeded, failed int
		deleteJob                 bool
	}{
		{
			name:   "a new job starts parallelism pods",
			in:     Input{Job: api.Job{Name: "j", Spec: api.JobSpec{Image: "x", Completions: 5, Parallelism: 2}}},
			phase:  api.JobRunning,
			create: []int{0, 1}, active: 2,
		},
		{
			name:  "no more than parallelism active",
			in:    Input{Job: job(spec, running(0, "n1"), running(1, "n1")), Pods: []Pod{pod(0, nil), pod(1, nil)}},
			phase: api.JobRunning, active: 2,
		},
		{
			name:   "a success frees a slot",
			in:     Input{Job: job(spec, running(0, "n1"), running(1, "n1")), Pods: []Pod{pod(0, exited(0)), pod(1, nil)}},
			phase:  api.JobRunning,
			create: []int{2}, delete: []string{"j-0"}, active: 2, succeeded: 1,
		},
		{
			name: "only the completions left are started",
			in: Input{Job: job(spec, ended(0, 0), ended(1, 0), ended(2, 0), running(3, "n1")),
				Pods: []Pod{pod(3, nil)}},
			phase:  api.JobRunning,
			create: []int{4}, active: 2, succeeded: 3,
		},
		{
			name: "complete at completions",
			in: Input{Job: job(spec, ended(0, 0), ended(1, 0), ended(2, 0), ended(3, 0), running(4, "n1")),
				Pods: []Pod{pod(4, exited(0))}},
			phase: api.JobComplete, delete: []string{"j-4"}, succeeded: 5,
		},
		{
			name:   "a failure is retried within the backoff limit",
			in:     Input{Job: job(spec, running(0, "n1"), running(1, "n1")), Pods: []Pod{pod(0, exited(3)), pod(1, nil)}},
			phase:  api.JobRunning,
			create: []int{2}, delete: []string{"j-0"}, active: 2, failed: 1,
		},
		{
			name: "one failure more than the backoff limit fails the job and kills the rest",
			in: Input{Job: job(spec, ended(0, 3), running(1, "n1"), running(2, "n1")),
				Pods: []Pod{pod(1, exited(1)), pod(2, nil)}},
			phase: api.JobFailed, reason: api.JobReasonBackoffLimit,
			delete: []string{"j-1", "j-2"}, failed: 2,
		},
		{
			name: "backoffLimit 0 fails on the first failure",
			in: Input{Job: job(api.JobSpec{Image: "started", BackoffLimit: intp(0)}, running(0, "n1")),
				Pods: []Pod{pod(0, exited(1))}},
			phase: api.JobFailed, reason: api.JobReasonBackoffLimit, delete: []string{"j-0"}, failed: 1,
		},
		{
			name: "the active deadline kills",
			in: Input{Job: job(api.JobSpec{Image: "started", ActiveDeadline: api.D(time.Minute)}, running(0, "n1")),
				Pods: []Pod{pod(0, nil)}, Now: t0.Add(time.Minute)},
			phase: api.JobFailed, reason: api.JobReasonDeadlineExceeded, delete: []string{"j-0"},
		},
		{
			name: "before the deadline nothing happens",
			in: Input{Job: job(api.JobSpec{Image: "started", ActiveDeadline: api.D(time.Minute)}, running(0, "n1")),
				Pods: []Pod{pod(0, nil)}, Now: t0.Add(59 * time.Second)},
			phase: api.JobRunning, active: 1,
		},
		{
			name: "a pod on a dead node is lost, counted failed and replaced",
			in: Input{Job: job(spec, running(0, "n1")),
				Pods: []Pod{{Name: "j-0", Index: 0, Node: "n1"}}},
			phase:  api.JobRunning,
			create: []int{1, 2}, delete: []string{"j-0"}, active: 2, failed: 1,
		},
		{
			name:   "a start failure without exit code is a failure",
			in:     Input{Job: job(spec, running(0, "n1")), Pods: []Pod{pod(0, &store.JobPodStatus{Phase: store.JobPodFailed, Message: "bad image"})}},
			phase:  api.JobRunning,
			create: []int{1, 2}, delete: []string{"j-0"}, active: 2, failed: 1,
		},
		{
			name: "ttl after finished deletes the job",
			in: Input{Job: api.Job{Name: "j", Spec: api.JobSpec{Image: "x", TTLAfterFinished: api.D(time.Minute)},
				Status: api.JobStatus{Phase: api.JobComplete, StartedAt: t0, CompletedAt: t0, Attempts: []api.JobAttempt{ended(0, 0)}}},
				Now: t0.Add(time.Minute)},
			phase: api.JobComplete, succeeded: 1, deleteJob: true,
		},
		{
			name: "a finished job without ttl stays",
			in: Input{Job: api.Job{Name: "j", Spec: api.JobSpec{Image: "x"},
				Status: api.JobStatus{Phase: api.JobComplete, StartedAt: t0, CompletedAt: t0, Attempts: []api.JobAttempt{ended(0, 0)}}},
				Now: t0.Add(24 * time.Hour)},
			phase: api.JobComplete, succeeded: 1,
		},
		{
			name:  "no live node: nothing is created",
			in:    Input{Job: api.Job{Name: "j", Spec: api.JobSpec{Image: "x"}}, Nodes: []*Node{}},
			phase: api.JobRunning,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if in.Now.IsZero() {
				in.Now = t0
			}
			if in.Nodes == nil {
				in.Nodes = []*Node{{Name: "n1", CPU: 4, Memory: 8 << 30}}
			}
			d := decide(in)
			assert.Equal(t, tc.phase, d.Status.Phase)
			assert.Equal(t, tc.reason, d.Status.Reason)
			var created []int
			for _, a := range d.Create {
				created = append(created, a.Index)
				assert.Equal(t, "n1", a.Node)
			}
			assert.Equal(t, tc.create, created)
			assert.ElementsMatch(t, tc.delete, d.Delete)
			assert.Equal(t, tc.active, d.Status.Active, "active")
			assert.Equal(t, tc.succeeded, d.Status.Succeeded, "succeeded")
			assert.Equal(t, tc.failed, d.Status.Failed, "failed")
			assert.Equal(t, tc.deleteJob, d.DeleteJob)
			if d.Status.Phase != api.JobRunning {
				assert.False(t, d.Status.CompletedAt.IsZero())
			}
		})
	}
}

func TestDecideRecordsExitCodes(t *testing.T) {
	d := decide(Input{Job: job(api.JobSpec{Image: "started", Completions: 2}, running(0, "n1")),
		Pods: []Pod{pod(0, exited(7))}, Nodes: []*Node{{Name: "n1"}}, Now: t0})
	require.NotEmpty(t, d.Status.Attempts)
	a := d.Status.Attempts[0]
	require.NotNil(t, a.ExitCode)
	assert.Equal(t, 7, *a.ExitCode)
	assert.Equal(t, t0.Add(time.Second), a.FinishedAt)
}

func TestPlace(t *testing.T) {
	const gi = int64(1 << 30)
	node := func(name string, allocCPU float64, allocMem int64, images ...string) *Node {
		return &Node{Name: name, CPU: 2, Memory: 4 * gi, AllocCPU: allocCPU, AllocMemory: allocMem, Images: images}
	}
	tests := []struct {
		name  string
		nodes []*Node
		want  string
	}{
		{"none", nil, ""},
		{"ties go by name", []*Node{node("b", 0, 0), node("a", 0, 0)}, "a"},
		{"the most free capacity", []*Node{node("a", 8, 2*gi), node("b", 1, gi)}, "b"},
		{"the image outweighs balance", []*Node{node("a", 8, 2*gi, "img"), node("b", 0, 0)}, "a"},
		{"memory is not overcommitted", []*Node{node("a", 0, 4*gi-gi/8, "img"), node("b", 30, 3*gi)}, "b"},
		{"CPU is, sixteen times", []*Node{node("a", 31.5, 0)}, ""},
		{"a node without capacity takes nothing, as for replicas", []*Node{{Name: "a"}}, ""},
		{"ties on score go to the fewest job pods", []*Node{{Name: "a", CPU: 2, Memory: 4 * gi, JobPods: 2}, {Name: "b", CPU: 2, Memory: 4 * gi, JobPods: 1}}, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if n := place(tc.nodes, "img", 1, 256<<20); n != nil {
				got = n.Name
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestDecideSpreadsAndFills(t *testing.T) {
	nodes := []*Node{{Name: "a", CPU: 1, Memory: 1 << 30}, {Name: "b", CPU: 1, Memory: 1 << 30}}
	d := decide(Input{Job: api.Job{Name: "j", Spec: api.JobSpec{Image: "x", Completions: 6, Parallelism: 6, Resources: api.Resources{Memory: "400Mi"}}},
		Nodes: nodes, Now: t0})
	var placed []string
	for _, a := range d.Create {
		placed = append(placed, a.Node)
	}
	assert.Equal(t, []string{"a", "b", "a", "b"}, placed, "spread over the nodes, and no more than their memory holds")
	assert.Equal(t, 2, nodes[0].JobPods)
	assert.Equal(t, int64(800<<20), nodes[0].AllocMemory)
}
