package main

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/manifest"
)

// The fake API's jobs, as the control plane keeps them: created once,
// the same spec again unchanged, another a conflict.
func jobKey(ns, name string) string { return ns + "/" + name }

func (f *fakeAPI) applyJobLocked(o manifest.Object, dryRun bool) (string, *api.ErrorDetail) {
	if err := o.Job.Validate(); err != nil {
		return "", &api.ErrorDetail{Code: api.CodeInvalid, Message: err.Error()}
	}
	key := jobKey(o.Metadata.Namespace, o.Metadata.Name)
	spec := o.Job.WithDefaults()
	if old, ok := f.jobs[key]; ok {
		if reflect.DeepEqual(old.Spec, spec) {
			return api.ApplyUnchanged, nil
		}
		return "", &api.ErrorDetail{Code: api.CodeConflict, Message: fmt.Sprintf("job %s exists with another spec, which cannot change; delete it first", o.Metadata.Name)}
	}
	if !dryRun {
		if f.jobs == nil {
			f.jobs = map[string]api.Job{}
		}
		f.jobs[key] = api.Job{Name: o.Metadata.Name, Namespace: o.Metadata.Namespace, Spec: spec, CreatedAt: t0,
			Status: api.JobStatus{Phase: api.JobRunning, Active: 1}}
	}
	return api.ApplyCreated, nil
}

func (f *fakeAPI) getJob(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	job, ok := f.jobs[jobKey(namespaceOf(r), r.PathValue("name"))]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("job %q does not exist", r.PathValue("name")))
		return
	}
	writeOK(w, 200, job)
}

func (f *fakeAPI) deleteJob(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := jobKey(namespaceOf(r), r.PathValue("name"))
	if _, ok := f.jobs[key]; !ok {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("job %q does not exist", r.PathValue("name")))
		return
	}
	delete(f.jobs, key)
	w.WriteHeader(http.StatusNoContent)
}

const jobManifest = `apiVersion: ebb.dev/v1
kind: Job
metadata: {name: migrate}
spec:
  image: migrate:v42
  args: [--to, "42"]
  completions: 5
  parallelism: 2
  activeDeadline: 10m
`

// A Job document goes through apply, diff, export, delete -f and prune
// as the other kinds do, but for its spec, which cannot change.
func TestJobManifest(t *testing.T) {
	c, f := newCLI(t)
	dir := writeFiles(t, map[string]string{"job.yaml": jobManifest})

	r := c.run(t, "diff", "-f", dir)
	assert.Equal(t, 1, r.code, "a job that does not exist is a change: %s", r.stderr)
	golden(t, "diff_job_new", r.stdout)

	r = c.run(t, "apply", "-f", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job/migrate created\n", r.stdout)
	require.Contains(t, f.jobs, "default/migrate")
	assert.Equal(t, 5, f.jobs["default/migrate"].Spec.Completions)

	r = c.run(t, "apply", "-f", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job/migrate unchanged\n", r.stdout)
	r = c.run(t, "diff", "-f", dir)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout, "defaults and status are no difference")

	// Export writes the spec, not the status, and applies back unchanged.
	r = c.run(t, "export", "job", "migrate")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "export_job", r.stdout)
	c.stdin = r.stdout
	r = c.run(t, "apply", "-f", "-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job/migrate unchanged\n", r.stdout)
	c.stdin = ""

	// Another spec: diff shows it, apply refuses it and changes nothing.
	changed := writeFiles(t, map[string]string{"job.yaml": strings.Replace(jobManifest, "completions: 5", "completions: 6", 1)})
	r = c.run(t, "diff", "-f", changed)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stdout, "-  completions: 5")
	assert.Contains(t, r.stdout, "+  completions: 6")
	r = c.run(t, "apply", "-f", changed)
	assert.Equal(t, exitRejected, r.code)
	assert.Contains(t, r.stderr, "job/migrate failed")
	assert.Contains(t, r.stderr, "cannot change; delete it first")
	assert.Equal(t, 5, f.jobs["default/migrate"].Spec.Completions)

	// Prune deletes unnamed functions of its selector, never jobs.
	r = c.run(t, "apply", "-f", writeFiles(t, map[string]string{"fn.yaml": helloManifest}), "--prune", "--selector", "app=shop")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, f.jobs, "default/migrate")

	r = c.run(t, "delete", "-f", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job/migrate deleted\n", r.stdout)
	assert.Empty(t, f.jobs)
	r = c.run(t, "delete", "-f", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job/migrate not found\n", r.stdout)

	r = c.run(t, "export", "job", "migrate")
	assert.Equal(t, exitNotFound, r.code)
}

func TestJobManifestHostile(t *testing.T) {
	c, f := newCLI(t)
	for _, tc := range []struct{ name, doc, msg string }{
		{"negative completions", strings.Replace(jobManifest, "completions: 5", "completions: -5", 1), "spec.completions"},
		{"no image", strings.Replace(jobManifest, "  image: migrate:v42\n", "", 1), "spec.image"},
		{"status", jobManifest + "  status: {phase: Complete}\n", "spec.status"},
		{"labels", strings.Replace(jobManifest, "{name: migrate}", "{name: migrate, labels: {a: b}}", 1), "metadata.labels"},
		{"bad deadline", strings.Replace(jobManifest, "10m", "-10m", 1), "spec.activeDeadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, "apply", "-f", writeFiles(t, map[string]string{"job.yaml": tc.doc}))
			assert.NotEqual(t, 0, r.code)
			assert.Contains(t, r.stderr, tc.msg)
			assert.Empty(t, f.jobs, "nothing bad reached the API")
		})
	}
}
