package main

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// The fake API's cron triggers: validated and defaulted as the control
// plane does, with a scripted next time and a run per run-now.

func cronKey(r *http.Request) string {
	return nsOf(r) + "/" + r.PathValue("name") + "/" + r.PathValue("trigger")
}

func (f *fakeAPI) putCronTrigger(w http.ResponseWriter, r *http.Request) {
	var spec api.CronTriggerSpec
	if err := api.DecodeStrict(r.Body, &spec); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	if err := spec.Validate(); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cron == nil {
		f.cron = map[string]*api.CronTrigger{}
	}
	key := cronKey(r)
	old, exists := f.cron[key]
	tr := &api.CronTrigger{Name: r.PathValue("trigger"), Function: r.PathValue("name"), Namespace: nsOf(r),
		CronTriggerSpec: spec.WithDefaults(), CreatedAt: t0, UpdatedAt: t0,
		Status: api.CronTriggerStatus{NextScheduleTime: t0.Add(2 * 60 * 60 * 1e9), Runs: []api.CronRun{}}}
	status := 201
	if exists {
		tr.Status = old.Status
		status = 200
	}
	f.cron[key] = tr
	writeOK(w, status, tr)
}

func (f *fakeAPI) getCronTrigger(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tr, ok := f.cron[cronKey(r)]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, "cron trigger "+r.PathValue("trigger")+" does not exist")
		return
	}
	writeOK(w, 200, tr)
}

func (f *fakeAPI) listCronTriggers(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := api.CronTriggerList{Items: []api.CronTrigger{}}
	prefix := nsOf(r) + "/" + r.PathValue("name") + "/"
	for key, tr := range f.cron {
		if strings.HasPrefix(key, prefix) {
			list.Items = append(list.Items, *tr)
		}
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	writeOK(w, 200, list)
}

func (f *fakeAPI) deleteCronTrigger(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.cron[cronKey(r)]; !ok {
		writeErr(w, 404, api.CodeNotFound, "cron trigger "+r.PathValue("trigger")+" does not exist")
		return
	}
	delete(f.cron, cronKey(r))
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) runCronTrigger(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tr, ok := f.cron[cronKey(r)]
	if !ok {
		writeErr(w, 404, api.CodeNotFound, "cron trigger "+r.PathValue("trigger")+" does not exist")
		return
	}
	run := api.CronRun{Scheduled: t0.Add(60 * 1e9), FiredAt: t0.Add(60 * 1e9), InvocationID: "0123456789abcdef0123456789abcdef", Outcome: api.CronRunPending, Manual: true}
	tr.Status.Runs = append([]api.CronRun{run}, tr.Status.Runs...)
	writeOK(w, 202, run)
}

func TestCronCommands(t *testing.T) {
	c, f := newCLI(t)
	body := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(body, []byte(`{"full":true}`), 0o600))

	r := c.run(t, "cron", "create", "report", "nightly", "--schedule", "0 3 * * *", "--tz", "Europe/Paris",
		"--path", "/run", "--method", "put", "--data", "@"+body, "--header", "X-Team: ops", "--concurrency", "forbid",
		"--starting-deadline", "5m", "--failed-history", "0")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created cron trigger nightly of report (0 3 * * * Europe/Paris); next run 2025-03-01T14:00:00Z\n", r.stdout)
	tr := f.cron["default/report/nightly"]
	require.NotNil(t, tr)
	assert.Equal(t, api.CronRequest{Method: "PUT", Path: "/run", Header: http.Header{"X-Team": {"ops"}}, Body: `{"full":true}`}, tr.Request)
	assert.Equal(t, api.CronForbid, tr.ConcurrencyPolicy)
	assert.Equal(t, "5m0s", tr.StartingDeadline.String())
	assert.Equal(t, 0, *tr.FailedHistory)
	assert.Equal(t, api.DefaultCronSuccessful, *tr.SuccessfulHistory)

	r = c.run(t, "cron", "create", "report", "tick", "--schedule", "@every 2s")
	require.Equal(t, 0, r.code, r.stderr)
	r = c.run(t, "cron", "run-now", "report", "nightly")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "fired cron trigger nightly of report: invocation 0123456789abcdef0123456789abcdef\n", r.stdout)

	r = c.run(t, "cron", "list", "report")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "cron_list.stdout", r.stdout)
	r = c.run(t, "cron", "get", "report", "nightly")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "cron_get.stdout", r.stdout)
	r = c.run(t, "-o", "json", "cron", "get", "report", "nightly")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"invocationId": "0123456789abcdef0123456789abcdef"`)

	r = c.run(t, "cron", "delete", "report", "tick")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted cron trigger tick of report\n", r.stdout)
	assert.NotContains(t, f.cron, "default/report/tick")
	r = c.run(t, "cron", "delete", "report", "tick")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, "does not exist")

	for _, bad := range [][]string{
		{"cron", "create", "report", "x"},
		{"cron", "create", "report", "x", "--schedule", "61 * * * *"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--tz", "Mars/Base"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--concurrency", "sometimes"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--successful-history", "-1"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--starting-deadline", "-1s"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--header", "novalue"},
		{"cron", "create", "report", "x", "--schedule", "@daily", "--data", "@" + filepath.Join(t.TempDir(), "missing")},
		{"cron", "create", "report", "Bad_Name", "--schedule", "@daily"},
		{"cron", "get", "Bad_Fn", "x"},
		{"cron", "run-now", "report"},
	} {
		r = c.run(t, bad...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}
	assert.Len(t, f.cron, 1, "nothing bad reached the API")
}

// A CronTrigger manifest diffs against the live trigger and deletes it.
func TestCronTriggerManifest(t *testing.T) {
	c, f := newCLI(t)
	doc := "apiVersion: ebb.dev/v1\nkind: CronTrigger\nmetadata: {name: tick}\nspec: {function: report, schedule: '@every 2s', concurrencyPolicy: Forbid}\n"
	dir := writeFiles(t, map[string]string{"cron.yaml": doc})

	r := c.run(t, "diff", "-f", dir)
	assert.Equal(t, 1, r.code, "a trigger that does not exist is a change: %s", r.stderr)
	assert.Contains(t, r.stdout, "+kind: CronTrigger")

	require.Equal(t, 0, c.run(t, "cron", "create", "report", "tick", "--schedule", "@every 2s", "--concurrency", "Forbid").code)
	r = c.run(t, "diff", "-f", dir)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout, "defaults are no difference")

	changed := writeFiles(t, map[string]string{"cron.yaml": strings.Replace(doc, "2s", "5s", 1)})
	r = c.run(t, "diff", "-f", changed)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stdout, "-  schedule: '@every 2s'")
	assert.Contains(t, r.stdout, "+  schedule: '@every 5s'")

	r = c.run(t, "delete", "-f", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "crontrigger/tick deleted\n", r.stdout)
	assert.Empty(t, f.cron)
}
