package api

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJobSpecValidate(t *testing.T) {
	neg := -1
	tests := []struct {
		name  string
		spec  JobSpec
		field string // "" means valid
	}{
		{"minimal", JobSpec{Image: "busybox"}, ""},
		{"no image", JobSpec{}, "image"},
		{"negative completions", JobSpec{Image: "x", Completions: -1}, "completions"},
		{"negative parallelism", JobSpec{Image: "x", Parallelism: -2}, "parallelism"},
		{"negative backoffLimit", JobSpec{Image: "x", BackoffLimit: &neg}, "backoffLimit"},
		{"negative activeDeadline", JobSpec{Image: "x", ActiveDeadline: D(-time.Second)}, "activeDeadline"},
		{"negative ttl", JobSpec{Image: "x", TTLAfterFinished: D(-time.Second)}, "ttlAfterFinished"},
		{"bad env", JobSpec{Image: "x", Env: map[string]string{"1X": "y"}}, "env"},
		{"negative cpu", JobSpec{Image: "x", Resources: Resources{CPU: -1}}, "resources.cpu"},
		{"inline secret", JobSpec{Image: "x", Secrets: []Secret{{Name: "a", Value: "b"}}}, "secrets[0].value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var v *ValidationError
			require.True(t, errors.As(err, &v), "want a ValidationError, got %v", err)
			assert.Equal(t, tc.field, v.Field)
		})
	}
}

func TestDecodeJobSpecDefaults(t *testing.T) {
	spec, err := DecodeJobSpec([]byte(`{"image":"busybox","backoffLimit":0}`))
	require.NoError(t, err)
	assert.Equal(t, 1, spec.Completions)
	assert.Equal(t, 1, spec.Parallelism)
	assert.Equal(t, 0, spec.Backoff(), "an explicit 0 stays 0")
	assert.Equal(t, DefaultMemory, spec.Resources.Memory)

	spec, err = DecodeJobSpec([]byte(`{"image":"busybox"}`))
	require.NoError(t, err)
	assert.Equal(t, DefaultJobBackoffLimit, spec.Backoff())

	_, err = DecodeJobSpec([]byte(`{"image":"busybox","completions":-3}`))
	require.True(t, IsValidation(err))
	assert.Contains(t, err.Error(), "completions")
}

func TestJobLogName(t *testing.T) {
	assert.Equal(t, "job.batch.default", JobLogName("", "batch"))
	assert.Equal(t, "job.batch.team-a", JobLogName("team-a", "batch"))
	require.NoError(t, ValidateJobLogName("function", "job.batch.team-a"))
	for _, bad := range []string{"batch", "job.batch", "job..x", "job.Batch.x", "jobs.batch.x"} {
		assert.Error(t, ValidateJobLogName("function", bad), bad)
	}
	// No function's qualified name is a job's log name.
	assert.Error(t, ValidateQualifiedName("function", JobLogName("x", "y")))
}
