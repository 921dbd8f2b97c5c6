package promql

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/rollout"
)

// fakeQuerier answers each query from a table, after delay.
type fakeQuerier struct {
	answers map[string]answer
	delay   time.Duration

	mu   sync.Mutex
	asks []ask
}

type answer struct {
	v   float64
	err error
}

type ask struct {
	query string
	at    time.Time
}

func (f *fakeQuerier) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	f.mu.Lock()
	f.asks = append(f.asks, ask{query, at})
	f.mu.Unlock()
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return math.NaN(), ctx.Err()
	}
	a, ok := f.answers[query]
	if !ok {
		return math.NaN(), errors.New("unexpected query " + query)
	}
	return a.v, a.err
}

func TestCheck(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	q := &fakeQuerier{answers: map[string]answer{
		`errors{r="hello-00002"}[10s]`: {v: 0.02},
		`latency{r="hello-00001"}`:     {v: 120},
		`absent{f="hello"}`:            {v: math.NaN()},
		`broken{ns="shop"}`:            {v: math.NaN(), err: errors.New(`query "broken": bad_data: parse error`)},
		`zero`:                         {v: 0},
	}}
	checks := []api.PromCheck{
		{Query: `errors{r="{{canary}}"}[{{interval}}]`, Max: 0.01},
		{Query: `latency{r="{{ stable }}"}`, Max: 500},
		{Query: `absent{f="{{function}}"}`, Max: 1},
		{Query: `broken{ns="{{namespace}}"}`, Max: 1},
		{Query: `nope{r="{{revision}}"}`, Max: 1},
		{Query: `zero`, Max: 0},
	}

	values, err := Checker{Querier: q}.Check(t.Context(), at, checks, testVars)

	require.Len(t, values, len(checks), "one value per check, in the policy's order")
	assert.Equal(t, 0.02, values[0])
	assert.Equal(t, 120.0, values[1])
	assert.True(t, math.IsNaN(values[2]), "no value is NaN")
	assert.True(t, math.IsNaN(values[3]), "an error is NaN")
	assert.True(t, math.IsNaN(values[4]), "a query that cannot be expanded is NaN")
	assert.Equal(t, 0.0, values[5])

	require.Error(t, err)
	assert.Contains(t, err.Error(), `promql check 3: query "broken": bad_data: parse error`)
	assert.Contains(t, err.Error(), `promql check 4: expand query: unknown template variable "revision"`)
	assert.NotContains(t, err.Error(), "check 2", "no value is not an error")
	assert.Len(t, q.asks, 5, "the query that could not be expanded is not sent")
	for _, a := range q.asks {
		assert.Equal(t, at, a.at)
	}
}

func TestCheckAllGood(t *testing.T) {
	q := &fakeQuerier{answers: map[string]answer{`a`: {v: 1}, `b`: {v: 2}}}
	values, err := Checker{Querier: q}.Check(t.Context(), time.Time{}, []api.PromCheck{{Query: "a"}, {Query: "b"}}, testVars)
	require.NoError(t, err)
	assert.Equal(t, []float64{1, 2}, values)

	values, err = Checker{Querier: q}.Check(t.Context(), time.Time{}, nil, testVars)
	require.NoError(t, err)
	assert.Empty(t, values, "a policy with no checks asks nothing")
}

// The checks of one window run at once, so ten slow queries delay the
// window by one query's time, not ten.
func TestCheckRunsQueriesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQuerier{answers: map[string]answer{}, delay: 3 * time.Second}
		var checks []api.PromCheck
		for i := range api.MaxRolloutChecks {
			query := string(rune('a' + i))
			q.answers[query] = answer{v: float64(i)}
			checks = append(checks, api.PromCheck{Query: query})
		}
		start := time.Now()
		values, err := Checker{Querier: q}.Check(t.Context(), time.Time{}, checks, testVars)
		require.NoError(t, err)
		assert.Equal(t, 3*time.Second, time.Since(start))
		for i, v := range values {
			assert.Equal(t, float64(i), v)
		}
	})
}

func TestCheckCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQuerier{answers: map[string]answer{`a`: {v: 1}}, delay: time.Hour}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		values, err := Checker{Querier: q}.Check(ctx, time.Time{}, []api.PromCheck{{Query: "a"}}, testVars)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		require.Len(t, values, 1)
		assert.True(t, math.IsNaN(values[0]))
	})
}

// Check's values are rollout.Observation.PromQL as the core reads it: no
// value waits, a value above its max rolls back.
func TestCheckFeedsTheRolloutCore(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	policy := api.RolloutPolicy{
		Interval: api.D(10 * time.Second),
		PromQL: []api.PromCheck{
			{Query: `errors{r="{{canary}}"}`, Max: 0.01},
			{Query: `latency{r="{{canary}}"}`, Max: 0.3},
		},
	}
	st, _, err := rollout.Start(t0, policy, "hello-00001", "hello-00002")
	require.NoError(t, err)
	busy := rollout.Figures{Requests: 1000, P99: 10 * time.Millisecond}
	q := &fakeQuerier{answers: map[string]answer{}}
	check := func(at time.Time, errs, latency float64) rollout.Observation {
		q.answers[`errors{r="hello-00002"}`] = answer{v: errs}
		q.answers[`latency{r="hello-00002"}`] = answer{v: latency}
		values, err := Checker{Querier: q}.Check(t.Context(), at, policy.PromQL, testVars)
		require.NoError(t, err)
		return rollout.Observation{At: at, Canary: busy, Stable: busy, PromQL: values}
	}

	at := t0.Add(10 * time.Second)
	st, d := rollout.Step(at, st, check(at, math.NaN(), 0.1))
	assert.Equal(t, rollout.Progressing, st.Phase)
	assert.False(t, d.Set)
	assert.Contains(t, d.Reason, "promql[0] has no value")
	assert.Equal(t, rollout.Inconclusive, st.Steps[0].Last.Verdict)

	at = t0.Add(20 * time.Second)
	st, d = rollout.Step(at, st, check(at, 0, 0.5))
	assert.Equal(t, rollout.RolledBack, st.Phase)
	assert.Equal(t, rollout.Decision{Set: true, Percent: 0, Reason: d.Reason}, d)
	assert.Contains(t, d.Reason, `promql[1] "latency{r=\"{{canary}}\"}" is 0.5, above its max 0.3`)
}
