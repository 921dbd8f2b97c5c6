package api

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRolloutPolicyDefaults(t *testing.T) {
	spec, err := DecodeSpec([]byte(`{"image":"a","rollout":{}}`))
	require.NoError(t, err)
	p := spec.Rollout
	require.NotNil(t, p)
	assert.Equal(t, []int{5, 25, 50, 100}, p.Steps)
	assert.Equal(t, 10*time.Second, p.Interval.Duration)
	assert.Equal(t, time.Minute, p.StepDuration.Duration)
	assert.Equal(t, 5*time.Minute, p.Deadline.Duration)
	require.NotNil(t, p.MaxErrorRate)
	assert.Equal(t, 0.01, *p.MaxErrorRate)
	assert.Equal(t, 2.0, p.MaxLatencyRatio)
	assert.Equal(t, 20, p.MinRequests)

	none, err := DecodeSpec([]byte(`{"image":"a"}`))
	require.NoError(t, err)
	assert.Nil(t, none.Rollout, "no policy stays no policy")

	// The deadline follows a longer step, so a step duration alone is valid.
	long, err := DecodeSpec([]byte(`{"image":"a","rollout":{"stepDuration":"10m"}}`))
	require.NoError(t, err)
	assert.Equal(t, 50*time.Minute, long.Rollout.Deadline.Duration)
}

func TestRolloutPolicyZeroErrorRateIsKept(t *testing.T) {
	spec, err := DecodeSpec([]byte(`{"image":"a","rollout":{"maxErrorRate":0}}`))
	require.NoError(t, err)
	require.NotNil(t, spec.Rollout.MaxErrorRate)
	assert.Equal(t, 0.0, *spec.Rollout.MaxErrorRate, "0 means no error at all, not the default")
}

func TestRolloutPolicyRoundTrips(t *testing.T) {
	body := `{"image":"a","rollout":{"steps":[10,100],"interval":"1s","stepDuration":"5s","deadline":"20s",` +
		`"maxErrorRate":0.05,"maxLatencyRatio":3,"minRequests":7,"promql":[{"query":"sum(up)","max":1.5}]}}`
	spec, err := DecodeSpec([]byte(body))
	require.NoError(t, err)
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	again, err := DecodeSpec(b)
	require.NoError(t, err)
	assert.Equal(t, spec, again)
	assert.Equal(t, []PromCheck{{Query: "sum(up)", Max: 1.5}}, again.Rollout.PromQL)
}

func TestRolloutPolicyWithDefaultsDoesNotAlias(t *testing.T) {
	rate := 0.2
	in := FunctionSpec{Image: "a", Rollout: &RolloutPolicy{Steps: []int{1, 2}, MaxErrorRate: &rate, PromQL: []PromCheck{{Query: "q"}}}}
	out := in.WithDefaults()
	out.Rollout.Steps[0] = 50
	*out.Rollout.MaxErrorRate = 0.9
	out.Rollout.PromQL[0].Query = "changed"
	assert.Equal(t, []int{1, 2}, in.Rollout.Steps)
	assert.Equal(t, 0.2, rate)
	assert.Equal(t, "q", in.Rollout.PromQL[0].Query)
	assert.Equal(t, time.Duration(0), in.Rollout.Interval.Duration, "the caller's policy is untouched")
}

func TestRolloutPolicyRejects(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name  string
		p     RolloutPolicy
		field string
	}{
		{"a zero step", RolloutPolicy{Steps: []int{0, 50}}, "rollout.steps[0]"},
		{"a negative step", RolloutPolicy{Steps: []int{-5}}, "rollout.steps[0]"},
		{"a step above 100", RolloutPolicy{Steps: []int{5, 101}}, "rollout.steps[1]"},
		{"a repeated step", RolloutPolicy{Steps: []int{5, 5}}, "rollout.steps[1]"},
		{"decreasing steps", RolloutPolicy{Steps: []int{50, 25}}, "rollout.steps[1]"},
		{"too many steps", RolloutPolicy{Steps: manySteps(21)}, "rollout.steps"},
		{"a negative interval", RolloutPolicy{Interval: D(-time.Second)}, "rollout.interval"},
		{"a tiny interval", RolloutPolicy{Interval: D(time.Millisecond)}, "rollout.interval"},
		{"an interval above 1h", RolloutPolicy{Interval: D(2 * time.Hour), StepDuration: D(3 * time.Hour)}, "rollout.interval"},
		{"a step shorter than the interval", RolloutPolicy{Interval: D(time.Minute), StepDuration: D(time.Second)}, "rollout.stepDuration"},
		{"a negative step duration", RolloutPolicy{StepDuration: D(-time.Minute)}, "rollout.stepDuration"},
		{"a step above 24h", RolloutPolicy{StepDuration: D(25 * time.Hour), Deadline: D(25 * time.Hour)}, "rollout.stepDuration"},
		{"a deadline before the step ends", RolloutPolicy{StepDuration: D(time.Minute), Deadline: D(time.Second * 30)}, "rollout.deadline"},
		{"a negative deadline", RolloutPolicy{Deadline: D(-time.Minute)}, "rollout.deadline"},
		{"a negative error rate", RolloutPolicy{MaxErrorRate: f(-0.1)}, "rollout.maxErrorRate"},
		{"an error rate above 1", RolloutPolicy{MaxErrorRate: f(1.5)}, "rollout.maxErrorRate"},
		{"a NaN error rate", RolloutPolicy{MaxErrorRate: f(math.NaN())}, "rollout.maxErrorRate"},
		{"a latency ratio below 1", RolloutPolicy{MaxLatencyRatio: 0.5}, "rollout.maxLatencyRatio"},
		{"a negative latency ratio", RolloutPolicy{MaxLatencyRatio: -2}, "rollout.maxLatencyRatio"},
		{"an infinite latency ratio", RolloutPolicy{MaxLatencyRatio: math.Inf(1)}, "rollout.maxLatencyRatio"},
		{"a NaN latency ratio", RolloutPolicy{MaxLatencyRatio: math.NaN()}, "rollout.maxLatencyRatio"},
		{"a negative latency slack", RolloutPolicy{LatencySlack: D(-time.Millisecond)}, "rollout.latencySlack"},
		{"a latency slack over a minute", RolloutPolicy{LatencySlack: D(2 * time.Minute)}, "rollout.latencySlack"},
		{"negative min requests", RolloutPolicy{MinRequests: -1}, "rollout.minRequests"},
		{"huge min requests", RolloutPolicy{MinRequests: MaxRolloutMinReqs + 1}, "rollout.minRequests"},
		{"an empty query", RolloutPolicy{PromQL: []PromCheck{{Query: "  "}}}, "rollout.promql[0].query"},
		{"a NUL in a query", RolloutPolicy{PromQL: []PromCheck{{Query: "up\x00"}}}, "rollout.promql[0].query"},
		{"a huge query", RolloutPolicy{PromQL: []PromCheck{{Query: strings.Repeat("x", MaxRolloutQueryBytes+1)}}}, "rollout.promql[0].query"},
		{"a NaN max", RolloutPolicy{PromQL: []PromCheck{{Query: "up", Max: math.NaN()}}}, "rollout.promql[0].max"},
		{"an infinite max", RolloutPolicy{PromQL: []PromCheck{{Query: "up", Max: math.Inf(-1)}}}, "rollout.promql[0].max"},
		{"too many checks", RolloutPolicy{PromQL: make([]PromCheck, MaxRolloutChecks+1)}, "rollout.promql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := FunctionSpec{Image: "a", Rollout: &tt.p}.WithDefaults()
			err := spec.Validate()
			require.Error(t, err)
			var v *ValidationError
			require.ErrorAs(t, err, &v)
			assert.Equal(t, tt.field, v.Field, err.Error())
		})
	}
}

func TestRolloutPolicyRejectsHostileJSON(t *testing.T) {
	for _, body := range []string{
		`{"image":"a","rollout":{"steps":"5,25"}}`,
		`{"image":"a","rollout":{"interval":10}}`,
		`{"image":"a","rollout":{"interval":"soon"}}`,
		`{"image":"a","rollout":{"maxErrorRate":"1%"}}`,
		`{"image":"a","rollout":{"stepWeight":5}}`,
		`{"image":"a","rollout":{"steps":[5,1e400]}}`,
		`{"image":"a","rollout":{"minRequests":99999999999999999999}}`,
		`{"image":"a","rollout":{"promql":[{"query":"up","max":1,"min":0}]}}`,
		`{"image":"a","rollout":[]}`,
	} {
		_, err := DecodeSpec([]byte(body))
		assert.True(t, IsValidation(err), "%s: %v", body, err)
	}
}

func TestRolloutPolicyAcceptsBoundaries(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, p := range []RolloutPolicy{
		{Steps: []int{100}},
		{Steps: []int{1, 2, 3}},
		{Steps: manySteps(MaxRolloutSteps)},
		{Interval: D(MinRolloutInterval), StepDuration: D(MinRolloutInterval), Deadline: D(MinRolloutInterval)},
		{StepDuration: D(24 * time.Hour), Deadline: D(24 * time.Hour)},
		{MaxErrorRate: f(0)},
		{MaxErrorRate: f(1)},
		{MaxLatencyRatio: 1},
		{MinRequests: 1},
		{PromQL: []PromCheck{{Query: "rate(x[1m])", Max: -3}}},
	} {
		spec := FunctionSpec{Image: "a", Rollout: &p}.WithDefaults()
		assert.NoError(t, spec.Validate(), "%+v", p)
	}
}

func manySteps(n int) []int {
	steps := make([]int, n)
	for i := range steps {
		steps[i] = i + 1
	}
	return steps
}
