package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// logsByName answers log requests with the name asked for, so a test sees
// which log name a route reads.
type logsByName struct{ got []LogRequest }

func (l *logsByName) Logs(_ context.Context, w io.Writer, req LogRequest) error {
	l.got = append(l.got, req)
	_, err := fmt.Fprintf(w, "lines of %s\n", req.Function)
	return err
}

func TestJobsAPI(t *testing.T) {
	a := newTestAPI(t)
	var job api.Job
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/jobs/batch", `{"image":"busybox","completions":5,"parallelism":2}`, &job))
	assert.Equal(t, "batch", job.Name)
	assert.Equal(t, api.DefaultNamespace, job.Namespace)
	assert.Equal(t, 5, job.Spec.Completions)
	assert.Equal(t, api.DefaultJobBackoffLimit, job.Spec.Backoff(), "defaults are filled in")

	// The same spec again is no change; another is refused.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/jobs/batch", `{"image":"busybox","completions":5,"parallelism":2}`, nil))
	var e api.ErrorBody
	require.Equal(t, http.StatusConflict, a.do("PUT", "/v1/jobs/batch", `{"image":"busybox"}`, &e))
	assert.Contains(t, e.Error.Message, "cannot change")

	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/default/jobs/batch", "", &job))
	assert.Equal(t, "busybox", job.Spec.Image)
	var list api.JobList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/jobs", "", &list))
	require.Len(t, list.Jobs, 1)

	logs := &logsByName{}
	a.srv.deps.Logs = logs
	req, err := http.NewRequest("GET", a.url+"/v1/jobs/batch/logs?tail=3", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "lines of job.batch.default\n", string(body))
	assert.Equal(t, []LogRequest{{Function: "job.batch.default", Tail: 3}}, logs.got)

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/jobs/batch", "", nil))
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/jobs/batch", "", &e))
	assert.Contains(t, e.Error.Message, `job "batch" does not exist`)
	require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/jobs/batch", "", nil))
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/jobs/batch/logs", "", nil))
}

func TestJobsBadInputNamesTheField(t *testing.T) {
	a := newTestAPI(t)
	for body, field := range map[string]string{
		`{"image":"x","completions":-1}`:         "completions",
		`{"image":"x","parallelism":-1}`:         "parallelism",
		`{"image":"x","backoffLimit":-1}`:        "backoffLimit",
		`{"image":"x","activeDeadline":"-1s"}`:   "activeDeadline",
		`{"image":"x","ttlAfterFinished":"-1s"}`: "ttlAfterFinished",
		`{}`:                                     "image",
		`{"image":"x","bogus":1}`:                "bogus",
	} {
		var e api.ErrorBody
		require.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/jobs/j", body, &e), body)
		assert.Contains(t, e.Error.Message, field, body)
	}
	require.Equal(t, http.StatusBadRequest, a.do("PUT", "/v1/jobs/Bad_Name", `{"image":"x"}`, nil))
	require.Equal(t, http.StatusNotFound, a.do("PUT", "/v1/namespaces/nope/jobs/j", `{"image":"x"}`, nil))
}

func TestJobsAreNamespaced(t *testing.T) {
	a := newTestAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/jobs/batch", `{"image":"x"}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/jobs/batch", `{"image":"y"}`, nil))
	var job api.Job
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/jobs/batch", "", &job))
	assert.Equal(t, "x", job.Spec.Image)
	assert.Equal(t, "team-a", job.Namespace)
	_, err := a.store.Get(context.Background(), store.JobKey("batch.team-a"))
	require.NoError(t, err)
	var list api.JobList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/jobs", "", &list))
	require.Len(t, list.Jobs, 1)
	assert.Equal(t, "x", list.Jobs[0].Spec.Image)

	// Deleting the namespace deletes its jobs, and only its.
	code := a.do("DELETE", "/v1/namespaces/team-a", "", nil)
	require.True(t, code == http.StatusNoContent || code == http.StatusOK || code == http.StatusAccepted, "delete namespace: %d", code)
	keys := a.keys(store.PrefixJobs)
	assert.Equal(t, []string{store.JobKey("batch")}, keys, strings.Join(keys, ","))
}
