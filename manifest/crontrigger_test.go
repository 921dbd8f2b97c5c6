package manifest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

const cronHead = "apiVersion: ebb.dev/v1\nkind: CronTrigger\nmetadata: {name: nightly}\n"

func TestParseCronTrigger(t *testing.T) {
	objs, err := parse(t, cronHead+`spec:
  function: report
  schedule: "0 3 * * *"
  timeZone: Europe/Paris
  request:
    method: PUT
    path: /run
    header: {X-Team: [ops]}
    body: '{"full":true}'
  concurrencyPolicy: Forbid
  startingDeadline: 5m
  successfulHistory: 0
  suspend: true
`, Options{DefaultNamespace: "team-a"})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	o := objs[0]
	assert.Equal(t, KindCronTrigger, o.Kind)
	assert.Equal(t, Metadata{Name: "nightly", Namespace: "team-a"}, o.Metadata)
	assert.Equal(t, &CronTriggerSpec{Function: "report", CronTriggerSpec: api.CronTriggerSpec{
		Schedule: "0 3 * * *", TimeZone: "Europe/Paris",
		Request:           api.CronRequest{Method: "PUT", Path: "/run", Header: http.Header{"X-Team": {"ops"}}, Body: `{"full":true}`},
		ConcurrencyPolicy: api.CronForbid, StartingDeadline: api.D(5 * time.Minute), SuccessfulHistory: intp(0), Suspend: true,
	}}, o.CronTrigger)
}

func TestCronTriggerRoundTrip(t *testing.T) {
	tr := api.CronTrigger{Name: "nightly", Function: "report", Namespace: "team-a",
		CronTriggerSpec: api.CronTriggerSpec{Schedule: "@every 2s", Request: api.CronRequest{Body: "line one\nline two",
			Header: http.Header{"A": {"1", "2"}}}, FailedHistory: intp(0)}.WithDefaults(),
		Status: api.CronTriggerStatus{Missed: 3}}
	obj := FromCronTrigger(tr)
	for _, format := range []string{"yaml", "json"} {
		out, err := Render([]Object{obj}, format)
		require.NoError(t, err)
		assert.NotContains(t, string(out), "missed", "status is not rendered")
		back, err := Parse("export."+format, strings.NewReader(string(out)), Options{})
		require.NoError(t, err, "%s", out)
		require.Len(t, back, 1)
		back[0].Source = Source{}
		assert.Equal(t, obj, back[0], "%s", out)
	}
	// A bare manifest normalizes to what the API stores.
	bare, err := parse(t, cronHead+"spec: {function: report, schedule: '@every 2s', failedHistory: 0, request: {body: \"line one\\nline two\", header: {A: ['1', '2']}}}\n", Options{DefaultNamespace: "team-a"})
	require.NoError(t, err)
	assert.Equal(t, Normalize(obj), Normalize(bare[0]))
}

func TestParseCronTriggerHostile(t *testing.T) {
	for _, tc := range []struct {
		name, src, field, msg string
	}{
		{"missing spec", cronHead, "spec", "is required"},
		{"no function", cronHead + "spec: {schedule: '@daily'}\n", "spec.function", "is required"},
		{"bad function", cronHead + "spec: {function: Bad_Fn, schedule: '@daily'}\n", "spec.function", "DNS label"},
		{"bad schedule", cronHead + "spec: {function: f, schedule: '61 * * * *'}\n", "spec.schedule", "not a cron expression"},
		{"bad zone", cronHead + "spec: {function: f, schedule: '@daily', timeZone: Mars/Base}\n", "spec.timeZone", "IANA"},
		{"bad policy", cronHead + "spec: {function: f, schedule: '@daily', concurrencyPolicy: Never}\n", "spec.concurrencyPolicy", "Allow"},
		{"negative history", cronHead + "spec: {function: f, schedule: '@daily', failedHistory: -1}\n", "spec.failedHistory", "negative"},
		{"negative deadline", cronHead + "spec: {function: f, schedule: '@daily', startingDeadline: -1s}\n", "spec.startingDeadline", "negative"},
		{"header injection", cronHead + "spec: {function: f, schedule: '@daily', request: {header: {A: [\"x\\r\\nB: y\"]}}}\n", "spec.request.header", "line break"},
		{"unknown field", cronHead + "spec: {function: f, schedule: '@daily', status: {}}\n", "spec.status", "unknown field"},
		{"labels", "apiVersion: ebb.dev/v1\nkind: CronTrigger\nmetadata: {name: n, labels: {a: b}}\nspec: {function: f, schedule: '@daily'}\n", "metadata.labels", "no labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			assert.Empty(t, objs)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.field, e.Field)
			assert.Contains(t, e.Msg, tc.msg)
		})
	}
}
