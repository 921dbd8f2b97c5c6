package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCronTriggerSpecValidate(t *testing.T) {
	neg := -1
	big := MaxCronHistory + 1
	tests := []struct {
		name  string
		spec  CronTriggerSpec
		field string // empty: valid
	}{
		{name: "five fields", spec: CronTriggerSpec{Schedule: "*/5 * * * *"}},
		{name: "every", spec: CronTriggerSpec{Schedule: "@every 2s"}},
		{name: "hourly in a zone", spec: CronTriggerSpec{Schedule: "@hourly", TimeZone: "Europe/Paris"}},
		{name: "full", spec: CronTriggerSpec{Schedule: "0 3 * * 1-5", ConcurrencyPolicy: CronForbid, StartingDeadline: D(time.Minute),
			Request: CronRequest{Method: "PUT", Path: "/jobs?x=1", Header: http.Header{"X-A": {"b"}}, Body: "{}"}}},
		{name: "empty schedule", spec: CronTriggerSpec{}, field: "schedule"},
		{name: "six fields", spec: CronTriggerSpec{Schedule: "0 * * * * *"}, field: "schedule"},
		{name: "garbage", spec: CronTriggerSpec{Schedule: "every day"}, field: "schedule"},
		{name: "out of range", spec: CronTriggerSpec{Schedule: "61 * * * *"}, field: "schedule"},
		{name: "never fires", spec: CronTriggerSpec{Schedule: "0 0 30 2 *"}, field: "schedule"},
		{name: "every too fast", spec: CronTriggerSpec{Schedule: "@every 100ms"}, field: "schedule"},
		{name: "every negative", spec: CronTriggerSpec{Schedule: "@every -1s"}, field: "schedule"},
		{name: "every fraction", spec: CronTriggerSpec{Schedule: "@every 1500ms"}, field: "schedule"},
		{name: "TZ prefix", spec: CronTriggerSpec{Schedule: "CRON_TZ=Asia/Tokyo * * * * *"}, field: "schedule"},
		{name: "long", spec: CronTriggerSpec{Schedule: strings.Repeat("1,", 200) + "1 * * * *"}, field: "schedule"},
		{name: "unknown zone", spec: CronTriggerSpec{Schedule: "@hourly", TimeZone: "Mars/Olympus"}, field: "timeZone"},
		{name: "Local zone", spec: CronTriggerSpec{Schedule: "@hourly", TimeZone: "Local"}, field: "timeZone"},
		{name: "path zone", spec: CronTriggerSpec{Schedule: "@hourly", TimeZone: "../../etc/passwd"}, field: "timeZone"},
		{name: "policy", spec: CronTriggerSpec{Schedule: "@hourly", ConcurrencyPolicy: "forbid"}, field: "concurrencyPolicy"},
		{name: "deadline under a second", spec: CronTriggerSpec{Schedule: "@hourly", StartingDeadline: D(time.Millisecond)}, field: "startingDeadline"},
		{name: "negative deadline", spec: CronTriggerSpec{Schedule: "@hourly", StartingDeadline: D(-time.Second)}, field: "startingDeadline"},
		{name: "a job and a request", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Path: "/x"}, Job: &JobSpec{Image: "a:1"}}, field: "job"},
		{name: "a job without an image", spec: CronTriggerSpec{Schedule: "@hourly", Job: &JobSpec{}}, field: "job.image"},
		{name: "a job with negative completions", spec: CronTriggerSpec{Schedule: "@hourly", Job: &JobSpec{Image: "a:1", Completions: -1}}, field: "job.completions"},
		{name: "negative successes", spec: CronTriggerSpec{Schedule: "@hourly", SuccessfulHistory: &neg}, field: "successfulHistory"},
		{name: "negative failures", spec: CronTriggerSpec{Schedule: "@hourly", FailedHistory: &neg}, field: "failedHistory"},
		{name: "huge failures", spec: CronTriggerSpec{Schedule: "@hourly", FailedHistory: &big}, field: "failedHistory"},
		{name: "method", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Method: "GE T"}}, field: "request.method"},
		{name: "relative path", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Path: "x"}}, field: "request.path"},
		{name: "authority path", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Path: "//evil/x"}}, field: "request.path"},
		{name: "path with CRLF", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Path: "/a\r\nHost: x"}}, field: "request.path"},
		{name: "header name", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Header: http.Header{"A B": {"c"}}}}, field: "request.header"},
		{name: "header value", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Header: http.Header{"A": {"b\r\nc: d"}}}}, field: "request.header"},
		{name: "host header", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Header: http.Header{"host": {"x"}}}}, field: "request.header"},
		{name: "body", spec: CronTriggerSpec{Schedule: "@hourly", Request: CronRequest{Body: strings.Repeat("x", MaxInvocationBody+1)}}, field: "request.body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				require.NoError(t, tt.spec.WithDefaults().Validate(), "the defaulted spec is valid too")
				return
			}
			var v *ValidationError
			require.ErrorAs(t, err, &v)
			assert.Equal(t, tt.field, v.Field)
		})
	}
}

func TestCronTriggerSpecDefaults(t *testing.T) {
	s := CronTriggerSpec{Schedule: " @daily "}.WithDefaults()
	assert.Equal(t, "@daily", s.Schedule)
	assert.Equal(t, "UTC", s.TimeZone)
	assert.Equal(t, CronRequest{Method: "POST", Path: "/"}, s.Request)
	assert.Equal(t, CronAllow, s.ConcurrencyPolicy)
	assert.Equal(t, DefaultCronStartingDeadline, s.StartingDeadline.Duration)
	assert.Equal(t, DefaultCronSuccessful, *s.SuccessfulHistory)
	assert.Equal(t, DefaultCronFailed, *s.FailedHistory)
	zero := 0
	s = CronTriggerSpec{Schedule: "@daily", FailedHistory: &zero}.WithDefaults()
	assert.Equal(t, 0, *s.FailedHistory, "0 keeps none, not the default")
}

func TestCronScheduleNext(t *testing.T) {
	at := time.Date(2026, 3, 28, 23, 30, 0, 0, time.UTC)
	tests := []struct {
		expr, zone string
		want       time.Time
	}{
		{"@every 2s", "", at.Add(2 * time.Second)},
		{"@hourly", "", time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC)},
		// 03:00 in Paris on the day summer time starts is 01:00 UTC.
		{"0 3 * * *", "Europe/Paris", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)},
		{"0 3 * * *", "UTC", time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.expr+" "+tt.zone, func(t *testing.T) {
			s, err := ParseCronSchedule(tt.expr, tt.zone)
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.Next(at))
		})
	}
}

// Hostile expressions never panic and are refused or parsed.
func TestParseCronScheduleHostile(t *testing.T) {
	for _, expr := range []string{"@every", "@every ", "@every 9999999999999h", "* * * * 8", "*/0 * * * *", "0-60/ * * * *",
		"@", "@yearly @yearly", "? ? ? ? ?", "1-0 * * * *", "\x00", "* * * * * * * *", "L * * * *", "0 0 0 0 0"} {
		assert.NotPanics(t, func() { _, _ = ParseCronSchedule(expr, "") }, expr)
	}
}

func TestCronJobSpecValid(t *testing.T) {
	spec := CronTriggerSpec{Schedule: "@every 5s", Job: &JobSpec{Image: "report:1"}}
	assert.NoError(t, spec.Validate())
	assert.NoError(t, spec.WithDefaults().Validate(), "the defaulted request is no request of its own")
	assert.Equal(t, "nightly-1800000000", CronJobName("nightly", time.Unix(1_800_000_000, 0)))
}
