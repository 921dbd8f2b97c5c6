package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// jobsAPI is a stand-in for the control plane's jobs routes: it keeps
// the jobs put, and serves one with the status a test sets.
type jobsAPI struct {
	mu   sync.Mutex
	jobs map[string]api.Job
	hits int
}

func newJobsCLI(t *testing.T) (cli, *jobsAPI) {
	j := &jobsAPI{jobs: map[string]api.Job{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/jobs/{name}", func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.hits++
		var spec api.JobSpec
		if err := api.DecodeStrict(r.Body, &spec); err != nil {
			writeErr(w, 400, api.CodeInvalid, err.Error())
			return
		}
		job := api.Job{Name: r.PathValue("name"), Namespace: "default", Spec: spec.WithDefaults(), CreatedAt: t0}
		j.jobs[job.Name] = job
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(job)
	})
	mux.HandleFunc("GET /v1/jobs/{name}", func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		job, ok := j.jobs[r.PathValue("name")]
		if !ok {
			writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("job %q does not exist", r.PathValue("name")))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(job)
	})
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		list := api.JobList{Jobs: []api.Job{}}
		for _, job := range j.jobs {
			list.Jobs = append(list.Jobs, job)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("DELETE /v1/jobs/{name}", func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		delete(j.jobs, r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/jobs/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "batch-0-abcde stdout: tail=%s\n", r.URL.Query().Get("tail"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return cli{env: map[string]string{"EBB_API": srv.URL, "EBB_TOKEN": "tok", "HOME": t.TempDir()}}, j
}

func TestJobsCLI(t *testing.T) {
	c, j := newJobsCLI(t)
	r := c.run(t, "jobs", "create", "batch", "--image", "worker:1", "--completions", "5", "--parallelism", "2",
		"--backoff-limit", "0", "--active-deadline", "10m", "--env", "MODE=fast", "--", "--once", "-v")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created job batch in namespace default\n", r.stdout)
	spec := j.jobs["batch"].Spec
	assert.Equal(t, 5, spec.Completions)
	assert.Equal(t, 2, spec.Parallelism)
	assert.Equal(t, 0, spec.Backoff(), "--backoff-limit 0 is sent, not left to the default")
	assert.Equal(t, 10*time.Minute, spec.ActiveDeadline.Duration)
	assert.Equal(t, []string{"--once", "-v"}, spec.Args)
	assert.Equal(t, map[string]string{"MODE": "fast"}, spec.Env)

	r = c.run(t, "jobs", "create", "other", "--image", "worker:1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, api.DefaultJobBackoffLimit, j.jobs["other"].Spec.Backoff())

	one, zero := 1, 0
	job := j.jobs["batch"]
	job.Status = api.JobStatus{Phase: api.JobFailed, Reason: api.JobReasonBackoffLimit, Succeeded: 1, Failed: 1,
		Waiting:   "waiting for the namespace quota: namespace default: replicas 3 of 3 used, a pod of job batch wants 1 more",
		StartedAt: t0, CompletedAt: t0.Add(3 * time.Second), Attempts: []api.JobAttempt{
			{Index: 0, Node: "n1", ExitCode: &zero, StartedAt: t0, FinishedAt: t0.Add(time.Second)},
			{Index: 1, Node: "n2", ExitCode: &one, StartedAt: t0, FinishedAt: t0.Add(3 * time.Second)},
		}}
	j.jobs["batch"] = job
	r = c.run(t, "jobs", "get", "batch")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Phase:        Failed (BackoffLimitExceeded)")
	assert.Contains(t, r.stdout, "Completions:  1/5 (parallelism 2, backoff limit 0)")
	assert.Contains(t, r.stdout, "Waiting:      waiting for the namespace quota: namespace default: replicas 3 of 3 used")
	assert.Regexp(t, `1\s+n2\s+1\s+-\s+3s`, r.stdout, "each attempt's exit code")

	r = c.run(t, "jobs", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `batch\s+Failed \(BackoffLimitExceeded\)\s+1/5\s+0\s+1`, r.stdout)
	assert.Regexp(t, `other\s+Pending\s+0/1`, r.stdout)

	r = c.run(t, "jobs", "logs", "batch", "--tail", "7")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "batch-0-abcde stdout: tail=7\n", r.stdout)

	r = c.run(t, "jobs", "delete", "batch")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, j.jobs, "batch")
	r = c.run(t, "jobs", "get", "batch")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, `job "batch" does not exist`)
}

func TestJobsCLIBadInput(t *testing.T) {
	c, j := newJobsCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "create", "x", "--image", "i", "--completions", "-1"}, "completions"},
		{[]string{"jobs", "create", "x", "--image", "i", "--backoff-limit", "-2"}, "backoffLimit"},
		{[]string{"jobs", "create", "x", "--image", "i", "--active-deadline", "-1s"}, "activeDeadline"},
		{[]string{"jobs", "create", "x"}, "--image is required"},
		{[]string{"jobs", "create", "x", "--image", "i", "stray"}, "after --"},
		{[]string{"jobs", "create", "Bad", "--image", "i"}, "job name"},
		{[]string{"jobs", "create"}, "missing NAME"},
		{[]string{"jobs", "get"}, "missing NAME"},
		{[]string{"jobs", "logs", "x", "--tail", "-1"}, "--tail -1: must not be negative"},
	} {
		r := c.run(t, tc.args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", tc.args, r.stderr)
		oneErrorLine(t, r, tc.want)
	}
	assert.Zero(t, j.hits, "bad input is refused before any request")
}
