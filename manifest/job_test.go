package manifest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

const jobHead = "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: migrate}\n"

func TestParseJob(t *testing.T) {
	objs, err := parse(t, jobHead+`spec:
  image: migrate:v42
  args: [--to, "42"]
  env: {MODE: full}
  secrets: [{secret: db, key: password, env: DB_PASSWORD}]
  resources: {cpu: 0.5, memory: 64Mi}
  completions: 5
  parallelism: 2
  backoffLimit: 0
  activeDeadline: 10m
  ttlAfterFinished: 1h
`, Options{DefaultNamespace: "team-a"})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	o := objs[0]
	assert.Equal(t, KindJob, o.Kind)
	assert.Equal(t, Metadata{Name: "migrate", Namespace: "team-a"}, o.Metadata)
	assert.Equal(t, &api.JobSpec{
		Image: "migrate:v42", Args: []string{"--to", "42"}, Env: map[string]string{"MODE": "full"},
		Secrets:     []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}},
		Resources:   api.Resources{CPU: 0.5, Memory: "64Mi"},
		Completions: 5, Parallelism: 2, BackoffLimit: intp(0),
		ActiveDeadline: api.D(10 * time.Minute), TTLAfterFinished: api.D(time.Hour),
	}, o.Job)
}

func TestJobRoundTrip(t *testing.T) {
	job := api.Job{Name: "migrate", Namespace: "team-a",
		Spec:   api.JobSpec{Image: "migrate:v42", Args: []string{"a b", "c"}, Env: map[string]string{"K": "line one\nline two"}, BackoffLimit: intp(0)}.WithDefaults(),
		Status: api.JobStatus{Phase: api.JobComplete, Succeeded: 1}}
	obj := FromJob(job)
	for _, format := range []string{"yaml", "json"} {
		out, err := Render([]Object{obj}, format)
		require.NoError(t, err)
		assert.NotContains(t, string(out), "succeeded", "status is not rendered")
		back, err := Parse("export."+format, strings.NewReader(string(out)), Options{})
		require.NoError(t, err, "%s", out)
		require.Len(t, back, 1)
		back[0].Source = Source{}
		assert.Equal(t, obj, back[0], "%s", out)
	}
	// A bare manifest normalizes to what the API stores.
	bare, err := parse(t, jobHead+"spec: {image: 'migrate:v42', args: ['a b', c], env: {K: \"line one\\nline two\"}, backoffLimit: 0}\n", Options{DefaultNamespace: "team-a"})
	require.NoError(t, err)
	assert.Equal(t, Normalize(obj), Normalize(bare[0]))
	// FromJob copies: the manifest does not alias the job.
	obj.Job.Env["K"] = "changed"
	*obj.Job.BackoffLimit = 3
	assert.Equal(t, "line one\nline two", job.Spec.Env["K"])
	assert.Equal(t, 0, *job.Spec.BackoffLimit)
}

func TestParseJobHostile(t *testing.T) {
	for _, tc := range []struct {
		name, src, field, msg string
	}{
		{"missing spec", jobHead, "spec", "is required"},
		{"no image", jobHead + "spec: {completions: 1}\n", "spec.image", "required"},
		{"negative completions", jobHead + "spec: {image: x, completions: -1}\n", "spec.completions", "negative"},
		{"huge parallelism", jobHead + "spec: {image: x, parallelism: 100000000}\n", "spec.parallelism", "outside"},
		{"negative backoff", jobHead + "spec: {image: x, backoffLimit: -1}\n", "spec.backoffLimit", "negative"},
		{"negative deadline", jobHead + "spec: {image: x, activeDeadline: -1s}\n", "spec.activeDeadline", "negative"},
		{"negative ttl", jobHead + "spec: {image: x, ttlAfterFinished: -5m}\n", "spec.ttlAfterFinished", "negative"},
		{"bad duration", jobHead + "spec: {image: x, activeDeadline: soon}\n", "spec.activeDeadline", ""},
		{"completions not a number", jobHead + "spec: {image: x, completions: many}\n", "spec.completions", ""},
		{"bad memory", jobHead + "spec: {image: x, resources: {memory: lots}}\n", "spec.resources.memory", ""},
		{"inline secret value", jobHead + "spec: {image: x, secrets: [{name: A, value: b}]}\n", "spec.secrets", ""},
		{"status", jobHead + "spec: {image: x, status: {phase: Complete}}\n", "spec.status", "unknown field"},
		{"labels", "apiVersion: ebb.dev/v1\nkind: Job\nmetadata: {name: j, labels: {a: b}}\nspec: {image: x}\n", "metadata.labels", "no labels"},
		{"no name", "apiVersion: ebb.dev/v1\nkind: Job\nspec: {image: x}\n", "metadata.name", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			assert.Empty(t, objs)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.True(t, strings.HasPrefix(e.Field, tc.field), "field %q, want %q: %v", e.Field, tc.field, err)
			assert.Contains(t, e.Msg, tc.msg)
		})
	}
}
