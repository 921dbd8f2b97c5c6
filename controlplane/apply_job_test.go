package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

const jobStream = `apiVersion: ebb.dev/v1
kind: Job
metadata: {name: migrate}
spec:
  image: hello:latest
  args: [--to, "42"]
  completions: 5
  parallelism: 2
`

// A Job document creates the job as PUT does; applying it again is
// unchanged and writes nothing; another spec fails on its own, for a
// job's spec cannot change; a dry run writes nothing.
func TestApplyJob(t *testing.T) {
	a := newTestAPI(t)

	code, resp := a.applyDoc("/v1/apply?dryRun=server", jobStream)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Job/migrate created"}, actions(resp))
	assert.Empty(t, a.keys(store.PrefixJobs), "a dry run writes nothing")

	code, resp = a.applyDoc("/v1/apply", jobStream)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Job/migrate created"}, actions(resp))
	var job api.Job
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/jobs/migrate", "", &job))
	assert.Equal(t, api.JobSpec{Image: "hello:latest", Args: []string{"--to", "42"}, Completions: 5, Parallelism: 2}.WithDefaults(), job.Spec)

	before, beforeRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	code, resp = a.applyDoc("/v1/apply", jobStream)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Job/migrate unchanged"}, actions(resp))
	after, afterRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, before, after, "the second apply wrote nothing")
	assert.Equal(t, beforeRev, afterRev)

	// The same spec by PUT is the same job.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/jobs/migrate", `{"image":"hello:latest","args":["--to","42"],"completions":5,"parallelism":2}`, nil))

	code, resp = a.applyDoc("/v1/apply", strings.Replace(jobStream, "completions: 5", "completions: 6", 1)+"---\n"+
		strings.Replace(jobStream, "name: migrate", "name: other", 1))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Job/migrate error:conflict", "Job/other created"}, actions(resp))
	assert.Contains(t, resp.Results[0].Error.Message, "cannot change")
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/jobs/migrate", "", &job))
	assert.Equal(t, 5, job.Spec.Completions, "the failing document left its job untouched")

	// Into a namespace that does not exist: that document fails.
	code, resp = a.applyDoc("/v1/apply", strings.Replace(jobStream, "{name: migrate}", "{name: lost, namespace: nowhere}", 1))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Job/lost error:not_found"}, actions(resp))
}

func TestApplyJobHostile(t *testing.T) {
	a := newTestAPI(t)
	for _, tc := range []struct{ name, doc string }{
		{"negative parallelism", "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: j}\nspec: {image: x, parallelism: -2}\n"},
		{"no image", "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: j}\nspec: {completions: 2}\n"},
		{"status in spec", "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: j}\nspec: {image: x, status: {phase: Complete}}\n"},
		{"bad name", "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: Bad_Name}\nspec: {image: x}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e api.ErrorBody
			code := a.doRaw("POST", "/v1/apply", "application/yaml", strings.NewReader(tc.doc), testToken, &e)
			assert.Equal(t, http.StatusBadRequest, code, "%+v", e)
			assert.NotEmpty(t, e.Error.Message)
			assert.Empty(t, a.keys(store.PrefixJobs))
		})
	}
}
