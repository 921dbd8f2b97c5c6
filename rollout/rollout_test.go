package rollout

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func rate(v float64) *float64 { return &v }

// testPolicy judges every 10s, keeps each step 30s and gives a step short
// of 20 requests until 60s.
func testPolicy() api.RolloutPolicy {
	return api.RolloutPolicy{
		Steps:           []int{5, 25, 50, 100},
		Interval:        api.D(10 * time.Second),
		StepDuration:    api.D(30 * time.Second),
		Deadline:        api.D(60 * time.Second),
		MaxErrorRate:    rate(0.01),
		MaxLatencyRatio: 2,
		MinRequests:     20,
	}
}

// revision is how a simulated revision behaves: the share of its requests
// that fail (5xx, connection errors) and its latency.
type revision struct {
	errRate, connRate float64
	p50, p99          time.Duration
}

var (
	healthy = revision{p50: 20 * time.Millisecond, p99: 100 * time.Millisecond}
	broken  = revision{errRate: 0.3, p50: 20 * time.Millisecond, p99: 100 * time.Millisecond}
	slow    = revision{p50: 100 * time.Millisecond, p99: 500 * time.Millisecond}
	refused = revision{connRate: 0.3, p50: 20 * time.Millisecond, p99: 100 * time.Millisecond}
)

func (r revision) figures(requests float64) Figures {
	n := int64(requests)
	return Figures{
		Requests:   n,
		Errors5xx:  int64(math.Round(float64(n) * r.errRate)),
		ConnErrors: int64(math.Round(float64(n) * r.connRate)),
		P50:        r.p50,
		P99:        r.p99,
	}
}

// load simulates rps requests a second split by the rollout's percent,
// seen over one interval ending at now.
func load(rps float64, canary, stable revision) func(time.Time, State) Observation {
	return func(now time.Time, st State) Observation {
		n := rps * st.Policy.Interval.Seconds()
		return Observation{
			At:     now,
			Canary: canary.figures(n * float64(st.Percent) / 100),
			Stable: stable.figures(n * float64(100-st.Percent) / 100),
		}
	}
}

// trace runs Step every interval from a started rollout until it ends or
// ticks run out, and returns the final state and every decision that set
// a percent, with the time it was made.
type set struct {
	at      time.Duration
	percent int
}

func trace(t *testing.T, st State, from time.Time, ticks int, observe func(time.Time, State) Observation) (State, []set, Decision) {
	t.Helper()
	var sets []set
	var d Decision
	now := from
	for range ticks {
		now = now.Add(st.Policy.Interval.Duration)
		st, d = Step(now, st, observe(now, st))
		if d.Set {
			sets = append(sets, set{now.Sub(t0), d.Percent})
		}
		if st.Phase.Final() {
			break
		}
	}
	return st, sets, d
}

func start(t *testing.T, p api.RolloutPolicy) State {
	t.Helper()
	st, d, err := Start(t0, p, "fn-00001", "fn-00002")
	require.NoError(t, err)
	require.Equal(t, Decision{Set: true, Percent: p.Steps[0], Reason: d.Reason}, d)
	assert.Contains(t, d.Reason, "fn-00002 gets")
	return st
}

func TestHealthyCanarySucceeds(t *testing.T) {
	st, sets, last := trace(t, start(t, testPolicy()), t0, 100, load(200, healthy, healthy))

	assert.Equal(t, Succeeded, st.Phase)
	assert.Equal(t, []set{{30 * time.Second, 25}, {60 * time.Second, 50}, {90 * time.Second, 100}}, sets)
	assert.Equal(t, 100, st.Percent)
	assert.Equal(t, t0.Add(120*time.Second), st.FinishedAt)
	assert.False(t, last.Set, "the canary already has 100% at the last step")
	assert.Contains(t, st.Reason, "step 4/4 (100%) passed, the last")
	require.Len(t, st.Steps, 4)
	for i, rec := range st.Steps {
		assert.Equal(t, testPolicy().Steps[i], rec.Percent)
		assert.Equal(t, 3, rec.Checks, "a 30s step is judged at 10s, 20s and 30s")
		assert.Equal(t, 3, rec.Passed)
		require.NotNil(t, rec.Last)
		assert.Equal(t, Pass, rec.Last.Verdict)
	}
	assert.InDelta(t, 1.0, st.Steps[1].Last.LatencyRatio, 1e-9)
	assert.Equal(t, int64(500), st.Steps[1].Last.Canary.Requests, "25% of 200 req/s over 10s")
	assert.Zero(t, st.Steps[3].Last.LatencyRatio, "at 100% the stable revision has nothing to compare with")
}

func TestLastStepBelow100PromotesToAll(t *testing.T) {
	p := testPolicy()
	p.Steps = []int{10, 50}
	st, sets, last := trace(t, start(t, p), t0, 100, load(200, healthy, healthy))
	assert.Equal(t, Succeeded, st.Phase)
	assert.Equal(t, []set{{30 * time.Second, 50}, {60 * time.Second, 100}}, sets)
	assert.Equal(t, Decision{Set: true, Percent: 100, Reason: last.Reason}, last)
}

func TestFailingCanaryRollsBackAtTheFirstCheck(t *testing.T) {
	tests := []struct {
		name   string
		canary revision
		want   []string
	}{
		{"30% 5xx", broken, []string{"error rate 0.3", "300 5xx + 0 connection errors of 1000 requests", "above maxErrorRate 0.01"}},
		{"30% connection errors", refused, []string{"error rate 0.3", "0 5xx + 300 connection errors of 1000 requests"}},
		{"p99 5x stable", slow, []string{"p99 500ms is 5x the stable p99 100ms", "above maxLatencyRatio 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			p.Steps = []int{50, 100} // enough canary traffic for round figures
			st, sets, last := trace(t, start(t, p), t0, 100, load(200, tt.canary, healthy))

			assert.Equal(t, RolledBack, st.Phase)
			assert.Equal(t, []set{{10 * time.Second, 0}}, sets, "rolled back by the first check, one interval in")
			assert.Equal(t, 0, st.Percent)
			assert.Equal(t, t0.Add(10*time.Second), st.FinishedAt)
			assert.Contains(t, last.Reason, "fn-00001 gets 100% back")
			for _, w := range tt.want {
				assert.Contains(t, st.Reason, w)
			}
			require.Len(t, st.Steps, 1)
			assert.Equal(t, Fail, st.Steps[0].Last.Verdict)
			assert.Equal(t, 1, st.Steps[0].Checks)
			assert.Equal(t, 0, st.Steps[0].Passed)
		})
	}
}

func TestBrokenCanaryAtAFivePercentStep(t *testing.T) {
	// The acceptance case: 200 req/s, 5% to a canary failing 30% of its
	// requests. Clients see at most 5% x 30% of one interval's requests.
	st, sets, _ := trace(t, start(t, testPolicy()), t0, 100, load(200, broken, healthy))
	assert.Equal(t, RolledBack, st.Phase)
	assert.Equal(t, []set{{10 * time.Second, 0}}, sets)
	assert.Equal(t, int64(30), st.Steps[0].Last.Canary.Errors5xx, "30% of 5% of 2000 requests")
}

func TestTooFewRequestsWaitsThenFailsAtTheDeadline(t *testing.T) {
	// 5% of 20 req/s is 10 requests a window, short of 20.
	st, sets, last := trace(t, start(t, testPolicy()), t0, 100, load(20, healthy, healthy))
	assert.Equal(t, RolledBack, st.Phase)
	assert.Equal(t, []set{{60 * time.Second, 0}}, sets, "no verdict before the 60s deadline")
	assert.Contains(t, st.Reason, "still inconclusive at the 1m0s deadline: 10 canary requests, fewer than minRequests 20")
	assert.Equal(t, Decision{Set: true, Percent: 0, Reason: last.Reason}, last)
	assert.Equal(t, 6, st.Steps[0].Checks)
	assert.Equal(t, 0, st.Steps[0].Passed)

	// Before the deadline every check waits and nothing moves.
	st = start(t, testPolicy())
	for i := 1; i < 6; i++ {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		var d Decision
		st, d = Step(now, st, load(20, healthy, healthy)(now, st))
		assert.Equal(t, Progressing, st.Phase)
		assert.False(t, d.Set)
		assert.Contains(t, d.Reason, "waiting: 10 canary requests")
		assert.Equal(t, Inconclusive, st.Steps[0].Last.Verdict)
	}
}

func TestTooFewRequestsThenTrafficPasses(t *testing.T) {
	rps := 20.0
	observe := func(now time.Time, st State) Observation {
		if now.Sub(t0) >= 40*time.Second {
			rps = 200
		}
		return load(rps, healthy, healthy)(now, st)
	}
	st, sets, _ := trace(t, start(t, testPolicy()), t0, 100, observe)
	assert.Equal(t, Succeeded, st.Phase)
	assert.Equal(t, set{40 * time.Second, 25}, sets[0], "the step passes at its first judged check past 30s")
	assert.Equal(t, 4, st.Steps[0].Checks)
	assert.Equal(t, 1, st.Steps[0].Passed)
}

func TestShortWindowWhoseErrorsAloneFail(t *testing.T) {
	p := testPolicy()
	p.MaxErrorRate = rate(0.1) // a full window of 20 may hold 2 errors
	st := start(t, p)
	for _, tt := range []struct {
		obs   Figures
		phase Phase
	}{
		{Figures{Requests: 5, Errors5xx: 2}, Progressing}, // 2 of 20 could still pass
		{Figures{Requests: 5, Errors5xx: 2, ConnErrors: 1}, RolledBack},
	} {
		got, _ := Step(t0.Add(10*time.Second), st, Observation{At: t0.Add(10 * time.Second), Canary: tt.obs})
		assert.Equal(t, tt.phase, got.Phase, "%+v", tt.obs)
	}
}

func TestThresholdBoundaries(t *testing.T) {
	// Each revision's latency is the same at every quantile, so the
	// boundaries hold whichever one the window's size compares.
	window := func(requests, errs int64, canary time.Duration) Observation {
		return Observation{
			At:     t0.Add(10 * time.Second),
			Canary: Figures{Requests: requests, Errors5xx: errs, P50: canary, P99: canary},
			Stable: Figures{Requests: 1000, P50: 100 * time.Millisecond, P99: 100 * time.Millisecond},
		}
	}
	tests := []struct {
		name    string
		maxRate float64
		ratio   float64
		minReq  int
		obs     Observation
		verdict Verdict
		slack   time.Duration // 0: the default
	}{
		{"zero error rate, no error", 0, 2, 20, window(100, 0, 0), Pass, 0},
		{"zero error rate, one error", 0, 2, 20, window(100, 1, 0), Fail, 0},
		{"zero error rate, one error in a short window", 0, 2, 20, window(3, 1, 0), Fail, 0},
		{"error rate exactly at max", 0.01, 2, 20, window(100, 1, 0), Pass, 0},
		{"error rate just above max", 0.01, 2, 20, window(100, 2, 0), Fail, 0},
		{"error rate 1 allows everything", 1, 2, 20, window(100, 100, 0), Pass, 0},
		{"latency ratio exactly at max", 0.01, 2, 20, window(100, 0, 200*time.Millisecond), Pass, 0},
		{"latency ratio just above max", 0.01, 2, 20, window(100, 0, 201*time.Millisecond), Fail, 0},
		{"latency ratio 1, equal p99", 0.01, 1, 20, window(100, 0, 100*time.Millisecond), Pass, 0},
		{"latency ratio 1, 1ms slower: within latencySlack", 0.01, 1, 20, window(100, 0, 101*time.Millisecond), Pass, 0},
		{"latency ratio 1, 3ms slower", 0.01, 1, 20, window(100, 0, 103*time.Millisecond), Fail, 0},
		{"latency ratio 1, 1ms slower, latencySlack 1ns", 0.01, 1, 20, window(100, 0, 101*time.Millisecond), Fail, time.Nanosecond},
		{"10x at microseconds: within latencySlack", 0.01, 2, 20, Observation{
			At:     t0.Add(10 * time.Second),
			Canary: Figures{Requests: 100, P99: 1 * time.Millisecond},
			Stable: Figures{Requests: 1000, P99: 100 * time.Microsecond},
		}, Pass, 0},
		{"min requests exactly met", 0.01, 2, 20, window(20, 0, 0), Pass, 0},
		{"one request short", 0.01, 2, 20, window(19, 0, 0), Inconclusive, 0},
		{"min requests 1", 0.01, 2, 1, window(1, 0, 0), Pass, 0},
		{"no requests at all", 0.01, 2, 1, window(0, 0, 0), Inconclusive, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			p.MaxErrorRate, p.MaxLatencyRatio, p.MinRequests = rate(tt.maxRate), tt.ratio, tt.minReq
			p.LatencySlack = api.D(tt.slack)
			st, _ := Step(tt.obs.At, start(t, p), tt.obs)
			require.Len(t, st.Steps, 1)
			assert.Equal(t, tt.verdict, st.Steps[0].Last.Verdict, st.Steps[0].Last.Reason)
		})
	}
}

func TestStableWithNoTrafficYet(t *testing.T) {
	// A stable revision with no requests in the window (scaled to zero,
	// or never routed) gives no latency baseline: only the canary's own
	// figures are judged.
	st := start(t, testPolicy())
	obs := Observation{At: t0.Add(10 * time.Second), Canary: Figures{Requests: 100, P99: 5 * time.Second}}
	st, d := Step(obs.At, st, obs)
	assert.Equal(t, Progressing, st.Phase)
	assert.Equal(t, Pass, st.Steps[0].Last.Verdict)
	assert.Zero(t, st.Steps[0].Last.LatencyRatio)
	assert.Contains(t, d.Reason, "latency not compared: stable had 0 requests")

	// Nor does a stable revision with requests but a p99 of 0.
	obs.Stable = Figures{Requests: 100}
	st, _ = Step(obs.At, st, obs)
	assert.Equal(t, Pass, st.Steps[0].Last.Verdict)
}

func TestPromQLChecks(t *testing.T) {
	p := testPolicy()
	p.Steps = []int{50, 100}
	p.PromQL = []api.PromCheck{{Query: "sum(rate(errors[1m]))", Max: 5}, {Query: "queue_depth", Max: 0}}
	tests := []struct {
		name    string
		values  []float64
		verdict Verdict
		reason  string
	}{
		{"both within", []float64{5, 0}, Pass, "error rate 0"},
		{"first above", []float64{5.5, 0}, Fail, `promql[0] "sum(rate(errors[1m]))" is 5.5, above its max 5`},
		{"second above", []float64{0, 1}, Fail, `promql[1] "queue_depth" is 1, above its max 0`},
		{"one missing", []float64{1}, Inconclusive, "promql[1] has no value"},
		{"one NaN", []float64{math.NaN(), 0}, Inconclusive, "promql[0] has no value"},
		{"+Inf", []float64{math.Inf(1), 0}, Fail, "promql[0]"},
		{"-Inf", []float64{math.Inf(-1), 0}, Pass, "error rate 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := load(200, healthy, healthy)(t0.Add(10*time.Second), start(t, p))
			obs.PromQL = tt.values
			st, _ := Step(obs.At, start(t, p), obs)
			a := st.Steps[0].Last
			assert.Equal(t, tt.verdict, a.Verdict)
			assert.Contains(t, a.Reason, tt.reason)
			require.Len(t, a.PromQL, 2, "every check is recorded, whatever the verdict")
			_, err := json.Marshal(st)
			assert.NoError(t, err, "a NaN value must not make the state unstorable")
		})
	}

	// A failure on the router's figures still records the PromQL values.
	obs := load(200, broken, healthy)(t0.Add(10*time.Second), start(t, p))
	obs.PromQL = []float64{1, 0}
	st, _ := Step(obs.At, start(t, p), obs)
	assert.Equal(t, Fail, st.Steps[0].Last.Verdict)
	assert.Equal(t, []PromOutcome{{Query: p.PromQL[0].Query, Max: 5, Value: 1}, {Query: "queue_depth"}}, st.Steps[0].Last.PromQL)

	// A query that never answers fails the step at its deadline.
	observe := func(now time.Time, st State) Observation {
		obs := load(200, healthy, healthy)(now, st)
		obs.PromQL = []float64{1}
		return obs
	}
	st, sets, _ := trace(t, start(t, p), t0, 100, observe)
	assert.Equal(t, RolledBack, st.Phase)
	assert.Equal(t, []set{{60 * time.Second, 0}}, sets)
	assert.Contains(t, st.Reason, "promql[1] has no value")
}

func TestPauseStopsAdvancingAndResumeContinues(t *testing.T) {
	st := start(t, testPolicy())
	st, _ = Step(t0.Add(10*time.Second), st, load(200, healthy, healthy)(t0.Add(10*time.Second), st))

	st, d, err := Pause(t0.Add(15*time.Second), st)
	require.NoError(t, err)
	assert.Equal(t, Paused, st.Phase)
	assert.Equal(t, Decision{Reason: "step 1/4 (5%): paused at 5%"}, d)

	// Long past the step's duration and deadline, with a failing canary:
	// a paused rollout judges nothing and moves nothing.
	paused, sets, _ := trace(t, st, t0.Add(15*time.Second), 30, load(200, broken, healthy))
	assert.Empty(t, sets)
	assert.Equal(t, st, paused)

	again, d, err := Pause(t0.Add(20*time.Second), st)
	require.NoError(t, err, "pausing a paused rollout changes nothing")
	assert.Equal(t, st, again)
	assert.False(t, d.Set)

	resumeAt := t0.Add(10 * time.Minute)
	st, d, err = Resume(resumeAt, st)
	require.NoError(t, err)
	assert.Equal(t, Progressing, st.Phase)
	assert.False(t, d.Set)
	assert.Equal(t, resumeAt, st.StepStart, "the step starts over")

	st, sets, _ = trace(t, st, resumeAt, 100, load(200, healthy, healthy))
	assert.Equal(t, Succeeded, st.Phase)
	assert.Equal(t, []set{{10*time.Minute + 30*time.Second, 25}, {10*time.Minute + 60*time.Second, 50}, {10*time.Minute + 90*time.Second, 100}}, sets)
	assert.Equal(t, 4, st.Steps[0].Checks, "one check before the pause, three after")

	_, _, err = Resume(resumeAt, start(t, testPolicy()))
	assert.NoError(t, err, "resuming a progressing rollout changes nothing")
}

func TestAbortGoesBackToStable(t *testing.T) {
	progressing := start(t, testPolicy())
	progressing, _ = Step(t0.Add(30*time.Second), progressing, load(200, healthy, healthy)(t0.Add(30*time.Second), progressing))
	require.Equal(t, 25, progressing.Percent)
	paused, _, err := Pause(t0.Add(31*time.Second), progressing)
	require.NoError(t, err)

	for name, st := range map[string]State{"progressing": progressing, "paused": paused} {
		t.Run(name, func(t *testing.T) {
			got, d, err := Abort(t0.Add(40*time.Second), st, "bad build")
			require.NoError(t, err)
			assert.Equal(t, Aborted, got.Phase)
			assert.Equal(t, 0, got.Percent)
			assert.Equal(t, "aborted: bad build", got.Reason)
			assert.Equal(t, Decision{Set: true, Percent: 0, Reason: "aborted: bad build; fn-00001 gets 100% back"}, d)
			assert.Equal(t, t0.Add(40*time.Second), got.FinishedAt)
		})
	}
	got, _, err := Abort(t0, progressing, "")
	require.NoError(t, err)
	assert.Equal(t, "aborted: by request", got.Reason)
}

func TestPromoteJumpsTo100(t *testing.T) {
	st := start(t, testPolicy())
	got, d, err := Promote(t0.Add(5*time.Second), st, "")
	require.NoError(t, err)
	assert.Equal(t, Succeeded, got.Phase)
	assert.Equal(t, 100, got.Percent)
	assert.Equal(t, Decision{Set: true, Percent: 100, Reason: "promoted: by request"}, d)

	paused, _, err := Pause(t0, st)
	require.NoError(t, err)
	got, _, err = Promote(t0.Add(5*time.Second), paused, "looks good")
	require.NoError(t, err)
	assert.Equal(t, Succeeded, got.Phase)
	assert.Equal(t, "promoted: looks good", got.Reason)
}

func TestImpossibleTransitions(t *testing.T) {
	live := start(t, testPolicy())
	succeeded, _, err := Promote(t0, live, "")
	require.NoError(t, err)
	aborted, _, err := Abort(t0, live, "")
	require.NoError(t, err)
	rolledBack, _, _ := trace(t, live, t0, 1, load(200, broken, healthy))
	require.Equal(t, RolledBack, rolledBack.Phase)

	actions := map[string]func(State) (State, Decision, error){
		"promote": func(s State) (State, Decision, error) { return Promote(t0, s, "") },
		"abort":   func(s State) (State, Decision, error) { return Abort(t0, s, "") },
		"pause":   func(s State) (State, Decision, error) { return Pause(t0, s) },
		"resume":  func(s State) (State, Decision, error) { return Resume(t0, s) },
	}
	for _, st := range []State{succeeded, aborted, rolledBack, {Phase: "Bogus"}, {}} {
		for name, act := range actions {
			got, d, err := act(st)
			require.ErrorIs(t, err, ErrTransition, "%s a rollout that %s", name, st.Phase)
			assert.Contains(t, err.Error(), "cannot "+name)
			assert.Equal(t, st, got)
			assert.False(t, d.Set)
		}
		got, d := Step(t0.Add(time.Hour), st, load(200, broken, healthy)(t0.Add(time.Hour), st))
		assert.Equal(t, st, got, "a final rollout ignores observations")
		assert.False(t, d.Set)
	}
}

func TestInvalidStateRollsBack(t *testing.T) {
	for _, st := range []State{
		{Phase: Progressing, Policy: testPolicy(), Stable: "a-1", Canary: "a-2", Percent: 5},
		{Phase: Progressing, Policy: testPolicy(), Stable: "a-1", Canary: "a-2", Step: 7, Steps: []StepRecord{{}}},
		{Phase: Progressing, Stable: "a-1", Canary: "a-2", Steps: []StepRecord{{}}},
	} {
		got, d := Step(t0, st, Observation{At: t0})
		assert.Equal(t, RolledBack, got.Phase)
		assert.Equal(t, 0, d.Percent)
		assert.Contains(t, got.Reason, "invalid rollout state")
	}
}

func TestCanaryP99OfZeroComparesAsZero(t *testing.T) {
	obs := Observation{At: t0.Add(10 * time.Second), Canary: Figures{Requests: 1000}, Stable: Figures{Requests: 1000, P99: time.Second}}
	st, d := Step(obs.At, start(t, testPolicy()), obs)
	assert.Equal(t, Pass, st.Steps[0].Last.Verdict)
	assert.Contains(t, d.Reason, "p99 0x stable")
}

func TestObservationFromBeforeTheStepIsNotJudged(t *testing.T) {
	st := start(t, testPolicy())
	st, _ = Step(t0.Add(30*time.Second), st, load(200, healthy, healthy)(t0.Add(30*time.Second), st))
	require.Equal(t, 25, st.Percent)
	// A window ending before the 25% step began, even a failing one.
	late := load(200, broken, healthy)(t0.Add(29*time.Second), st)
	got, d := Step(t0.Add(31*time.Second), st, late)
	assert.Equal(t, Progressing, got.Phase)
	assert.False(t, d.Set)
	assert.Contains(t, d.Reason, "not judged")
	assert.Zero(t, got.Steps[1].Checks)
}

func TestStepLeavesItsInputAlone(t *testing.T) {
	st := start(t, testPolicy())
	before, err := json.Marshal(st)
	require.NoError(t, err)
	_, _ = Step(t0.Add(10*time.Second), st, load(200, healthy, healthy)(t0.Add(10*time.Second), st))
	after, err := json.Marshal(st)
	require.NoError(t, err)
	assert.JSONEq(t, string(before), string(after))
}

func TestStateRoundTripsThroughJSON(t *testing.T) {
	st, _, _ := trace(t, start(t, testPolicy()), t0, 5, load(200, healthy, healthy))
	b, err := json.Marshal(st)
	require.NoError(t, err)
	var back State
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, st, back)
}

func TestStartRefuses(t *testing.T) {
	bad := testPolicy()
	bad.Steps = []int{50, 10}
	_, _, err := Start(t0, bad, "a-1", "a-2")
	assert.True(t, api.IsValidation(err), "%v", err)

	for _, revs := range [][2]string{{"", "a-2"}, {"a-1", ""}, {"a-1", "a-1"}} {
		_, _, err := Start(t0, testPolicy(), revs[0], revs[1])
		assert.Error(t, err, "%q", revs)
	}

	// A zero policy is the defaulted one.
	st, d, err := Start(t0, api.RolloutPolicy{}, "a-1", "a-2")
	require.NoError(t, err)
	assert.Equal(t, 5, d.Percent)
	assert.Equal(t, api.DefaultRolloutSteps, st.Policy.Steps)
}

func TestErrorRate(t *testing.T) {
	for _, tt := range []struct {
		f    Figures
		want float64
	}{
		{Figures{}, 0},
		{Figures{Requests: 10}, 0},
		{Figures{Requests: 10, Errors5xx: 1, ConnErrors: 1}, 0.2},
		{Figures{Requests: 1, ConnErrors: 3}, 1},
		{Figures{ConnErrors: 3}, 1},
		{Figures{Requests: -5, Errors5xx: -1}, 0},
	} {
		assert.InDelta(t, tt.want, tt.f.ErrorRate(), 1e-9, "%+v", tt.f)
	}
}

// With fewer than MinRequestsForP99 requests in a window a p99 rests on a
// few of the slowest requests, so the medians are compared: one slow request does not
// fail a healthy canary, a canary slow throughout still fails.
func TestFewRequestsCompareMedians(t *testing.T) {
	p := testPolicy()
	st := start(t, p)
	for _, tt := range []struct {
		name     string
		canary   Figures
		verdict  Verdict
		quantile string
		reason   string
	}{
		{"one slow request of 30", Figures{Requests: 30, P50: 20 * time.Millisecond, P99: 900 * time.Millisecond}, Pass, "p50", "p50 1x stable"},
		{"slow throughout", Figures{Requests: 30, P50: 100 * time.Millisecond, P99: 120 * time.Millisecond}, Fail, "p50", "p50 100ms is 5x the stable p50 20ms"},
		{"a slow tail in 200 requests", Figures{Requests: 200, P50: 20 * time.Millisecond, P99: 900 * time.Millisecond}, Pass, "p50", "p50 1x stable"},
		{"enough for a p99", Figures{Requests: 1500, P50: 20 * time.Millisecond, P99: 900 * time.Millisecond}, Fail, "p99", "p99 900ms is 9x the stable p99 100ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stable := Figures{Requests: 6000, P50: 20 * time.Millisecond, P99: 100 * time.Millisecond}
			next, _ := Step(t0.Add(10*time.Second), st, Observation{At: t0.Add(10 * time.Second), Canary: tt.canary, Stable: stable})
			last := next.Steps[0].Last
			require.NotNil(t, last)
			assert.Equal(t, tt.verdict, last.Verdict)
			assert.Equal(t, tt.quantile, last.LatencyQuantile)
			assert.Contains(t, last.Reason, tt.reason)
		})
	}
}

// A canary that cannot serve at all fails its window at once, without
// waiting for requests that would only time out.
func TestFailedCanaryRollsBackAtOnce(t *testing.T) {
	st := start(t, testPolicy())
	next, d := Step(t0.Add(10*time.Second), st, Observation{At: t0.Add(10 * time.Second), CanaryFailed: "CrashLoop: exit status 1"})
	assert.Equal(t, RolledBack, next.Phase)
	assert.Equal(t, Decision{Set: true, Percent: 0, Reason: d.Reason}, d)
	assert.Contains(t, next.Reason, "the canary revision cannot serve: CrashLoop: exit status 1")
}
