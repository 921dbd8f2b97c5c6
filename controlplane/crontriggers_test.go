package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/cron"
	"github.com/ebbrun/ebb/queue/queuetest"
	"github.com/ebbrun/ebb/store"
)

// cronQueue is queuetest.Memory whose Enqueue fails while down.
type cronQueue struct {
	*queuetest.Memory
	mu   sync.Mutex
	down bool
}

func (q *cronQueue) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	q.mu.Lock()
	down := q.down
	q.mu.Unlock()
	if down {
		return api.Invocation{}, false, errors.New("queue down")
	}
	return q.Memory.Enqueue(ctx, inv)
}

// invs are function hello's invocations.
func (q *cronQueue) invs(t *testing.T) []api.Invocation {
	t.Helper()
	invs, err := q.List(t.Context(), "hello", 0)
	require.NoError(t, err)
	return invs
}

func TestCronTriggerLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	q := &cronQueue{Memory: queuetest.NewMemory()}
	a.srv.deps.Queue = q
	now := time.Unix(1_800_000_000, 0).UTC()
	a.srv.deps.Now = func() time.Time { return now }
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))

	var tr api.CronTrigger
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello/crontriggers/nightly",
		`{"schedule":"0 3 * * *","timeZone":"Europe/Paris","request":{"path":"/report","body":"go"},"concurrencyPolicy":"Forbid"}`, &tr))
	assert.Equal(t, "nightly", tr.Name)
	assert.Equal(t, "hello", tr.Function)
	assert.Equal(t, api.CronRequest{Method: "POST", Path: "/report", Body: "go"}, tr.Request, "defaults filled")
	assert.Equal(t, api.CronForbid, tr.ConcurrencyPolicy)
	assert.Equal(t, time.Date(2027, 1, 16, 2, 0, 0, 0, time.UTC), tr.Status.NextScheduleTime, "03:00 in Paris")
	assert.Equal(t, []api.CronRun{}, tr.Status.Runs)

	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/crontriggers/nightly", `{"schedule":"@hourly"}`, &tr))
	assert.Equal(t, "@hourly", tr.Schedule)
	assert.Equal(t, now, tr.CreatedAt)

	var run api.CronRun
	require.Equal(t, http.StatusAccepted, a.do("POST", "/v1/functions/hello/crontriggers/nightly/run", ``, &run))
	assert.True(t, run.Manual)
	assert.Equal(t, api.CronRunPending, run.Outcome)
	require.Len(t, q.invs(t), 1)
	assert.Equal(t, run.InvocationID, q.invs(t)[0].ID)
	assert.Equal(t, "cron/nightly/1800000000", q.invs(t)[0].IdempotencyKey)
	assert.Equal(t, http.StatusConflict, a.do("POST", "/v1/functions/hello/crontriggers/nightly/run", ``, nil), "one run per second")
	assert.Equal(t, http.StatusNotFound, a.do("POST", "/v1/functions/hello/crontriggers/none/run", ``, nil))

	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/crontriggers/nightly", ``, &tr))
	require.Len(t, tr.Status.Runs, 1)
	assert.Equal(t, run.InvocationID, tr.Status.Runs[0].InvocationID)

	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello/crontriggers/every", `{"schedule":"@every 2s"}`, nil))
	var list api.CronTriggerList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/crontriggers", ``, &list))
	require.Len(t, list.Items, 2)
	assert.Equal(t, []string{"every", "nightly"}, []string{list.Items[0].Name, list.Items[1].Name})
	assert.Len(t, list.Items[1].Status.Runs, 1)
	assert.Empty(t, list.Items[0].Status.Runs)

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello/crontriggers/nightly", ``, nil))
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/crontriggers/nightly", ``, nil))
	assert.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/functions/hello/crontriggers/nightly", ``, nil))
	kvs, _, err := a.store.List(t.Context(), store.CronRunsPrefix("hello", "nightly"))
	require.NoError(t, err)
	assert.Empty(t, kvs, "the runs go with their trigger")

	// The function's delete takes its triggers and runs.
	require.Equal(t, http.StatusAccepted, a.do("POST", "/v1/functions/hello/crontriggers/every/run", ``, nil))
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello", ``, nil))
	for _, prefix := range []string{store.PrefixCronTriggers, store.PrefixCronRuns} {
		kvs, _, err := a.store.List(t.Context(), prefix)
		require.NoError(t, err)
		assert.Empty(t, kvs, prefix)
	}
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/crontriggers", ``, nil))
}

// A run-now whose enqueue fails is claimed all the same (202, as the run
// is durable); the cron runner finds it unmarked and enqueues it under
// the id the answer gave.
func TestCronRunNowRecoversThroughTheRunner(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	q := &cronQueue{Memory: queuetest.NewMemory(), down: true}
	a.srv.deps.Queue = q
	now := time.Unix(1_800_000_000, 0).UTC()
	a.srv.deps.Now = func() time.Time { return now }
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@hourly"}`, nil))
	var run api.CronRun
	require.Equal(t, http.StatusAccepted, a.do("POST", "/v1/functions/hello/crontriggers/t/run", ``, &run))
	assert.Empty(t, q.invs(t))

	q.mu.Lock()
	q.down = false
	q.mu.Unlock()
	r, err := cron.New(cron.Config{}, cron.Deps{Store: a.store, Queue: q})
	require.NoError(t, err)
	r.Tick(t.Context(), now.Add(time.Second))
	require.Len(t, q.invs(t), 1)
	assert.Equal(t, run.InvocationID, q.invs(t)[0].ID)
	var tr api.CronTrigger
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/crontriggers/t", ``, &tr))
	require.Len(t, tr.Status.Runs, 1)
	assert.Equal(t, q.invs(t)[0].ID, tr.Status.Runs[0].InvocationID)
	assert.True(t, tr.Status.Runs[0].Manual)
}

func TestCronTriggerNamespaced(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, nil))
	var tr api.CronTrigger
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/functions/hello/crontriggers/t1", `{"schedule":"@daily"}`, &tr))
	assert.Equal(t, "team-a", tr.Namespace)
	_, err := a.store.Get(t.Context(), store.CronTriggerKey(api.QualifiedName("team-a", "hello"), "t1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/crontriggers/t1", ``, nil), "not in default")
}

func TestCronTriggerBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string // in the message
	}{
		{"bad expression", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"61 * * * *"}`, 400, "schedule"},
		{"no schedule", "PUT", "/v1/functions/hello/crontriggers/t", `{}`, 400, "schedule"},
		{"unknown zone", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","timeZone":"Nowhere/Land"}`, 400, "timeZone"},
		{"negative deadline", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","startingDeadline":"-1s"}`, 400, "startingDeadline"},
		{"negative history", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","successfulHistory":-1}`, 400, "successfulHistory"},
		{"negative failures", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","failedHistory":-3}`, 400, "failedHistory"},
		{"policy", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","concurrencyPolicy":"Sometimes"}`, 400, "concurrencyPolicy"},
		{"header injection", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","request":{"header":{"X":["a\r\nb: c"]}}}`, 400, "request.header"},
		{"big body", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","request":{"body":"` + strings.Repeat("x", api.MaxInvocationBody+1) + `"}}`, 400, "request.body"},
		{"huge JSON", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","request":{"body":"` + strings.Repeat("x", maxCronTriggerJSON) + `"}}`, 413, ""},
		{"unknown field", "PUT", "/v1/functions/hello/crontriggers/t", `{"schedule":"@daily","status":{}}`, 400, "status"},
		{"not JSON", "PUT", "/v1/functions/hello/crontriggers/t", `schedule: "@daily"`, 400, ""},
		{"bad trigger name", "PUT", "/v1/functions/hello/crontriggers/Bad_Name", `{"schedule":"@daily"}`, 400, "cron trigger name"},
		{"escaped slash in name", "GET", "/v1/functions/hello/crontriggers/a%2Fb", ``, 400, "cron trigger name"},
		{"long trigger name", "GET", "/v1/functions/hello/crontriggers/" + strings.Repeat("a", 64), ``, 400, "cron trigger name"},
		{"no function", "PUT", "/v1/functions/ghost/crontriggers/t", `{"schedule":"@daily"}`, 404, "ghost"},
		{"no function list", "GET", "/v1/functions/ghost/crontriggers", ``, 404, "ghost"},
		{"no trigger", "GET", "/v1/functions/hello/crontriggers/none", ``, 404, "none"},
		{"run-now without a queue", "POST", "/v1/functions/hello/crontriggers/none/run", ``, 501, "queue"},
		{"no namespace", "GET", "/v1/namespaces/nope/functions/hello/crontriggers", ``, 404, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			require.Equal(t, tt.status, a.do(tt.method, tt.path, tt.body, &e))
			assert.Contains(t, e.Error.Message, tt.field)
		})
	}
	var list api.CronTriggerList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/crontriggers", ``, &list))
	assert.Empty(t, list.Items, "nothing bad was stored")
}

// A CronTrigger document is created, then unchanged, then configured, as
// the PUT would; a dry run writes nothing; one for a missing function
// fails on its own.
func TestApplyCronTrigger(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	doc := "apiVersion: ebb.dev/v1\nkind: CronTrigger\nmetadata: {name: tick}\nspec: {function: hello, schedule: '@every 2s', request: {path: /x}}\n"
	ghost := "---\napiVersion: ebb.dev/v1\nkind: CronTrigger\nmetadata: {name: tock}\nspec: {function: ghost, schedule: '@daily'}\n"

	code, resp := a.applyDoc("/v1/apply?dryRun=server", doc)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"CronTrigger/tick created"}, actions(resp))
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/crontriggers/tick", ``, nil), "a dry run writes nothing")

	code, resp = a.applyDoc("/v1/apply", doc+ghost)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"CronTrigger/tick created", "CronTrigger/tock error:not_found"}, actions(resp))
	kv, err := a.store.Get(t.Context(), store.CronTriggerKey("hello", "tick"))
	require.NoError(t, err)

	_, resp = a.applyDoc("/v1/apply", doc)
	assert.Equal(t, []string{"CronTrigger/tick unchanged"}, actions(resp))
	again, err := a.store.Get(t.Context(), store.CronTriggerKey("hello", "tick"))
	require.NoError(t, err)
	assert.Equal(t, kv.Version, again.Version, "unchanged writes nothing")

	_, resp = a.applyDoc("/v1/apply", strings.Replace(doc, "/x", "/y", 1))
	assert.Equal(t, []string{"CronTrigger/tick configured"}, actions(resp))
	var tr api.CronTrigger
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/crontriggers/tick", ``, &tr))
	assert.Equal(t, "/y", tr.Request.Path)
}
