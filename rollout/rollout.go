package rollout

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
)

// The rollout's types are the API's (api/rollout_state.go), so that what
// the control plane stores is what GET shows; these names keep this
// package's code short.
type (
	Phase       = api.RolloutPhase
	State       = api.RolloutState
	StepRecord  = api.RolloutStep
	Verdict     = api.RolloutVerdict
	Analysis    = api.RolloutAnalysis
	PromOutcome = api.RolloutPromOutcome
	Figures     = api.RolloutFigures
)

// The phases. Succeeded, RolledBack and Aborted are final.
const (
	Progressing = api.RolloutProgressing
	Paused      = api.RolloutPaused
	Succeeded   = api.RolloutSucceeded
	RolledBack  = api.RolloutRolledBack
	Aborted     = api.RolloutAborted
)

// The verdicts.
const (
	Pass         = api.VerdictPass
	Fail         = api.VerdictFail
	Inconclusive = api.VerdictInconclusive
)

// ErrTransition is wrapped by the error of an action the rollout's phase
// does not allow, such as resuming a rollout that succeeded.
var ErrTransition = errors.New("impossible rollout transition")

// Observation is what the runner saw over one window ending at At: the
// canary's and the stable revision's figures over the same window, and
// the value of each of the policy's PromQL checks, in the policy's order
// (NaN, or a short slice, for a query with no value).
type Observation struct {
	At     time.Time
	Canary Figures
	Stable Figures
	PromQL []float64
	// CanaryFailed, when set, says why the canary revision cannot serve
	// at all (its replicas cannot start or keep crashing, and none is
	// ready): the window fails whatever its figures, as requests to it
	// would only wait out their deadlines.
	CanaryFailed string
}

// MinRequestsForP99 is how many requests each revision needs in a window
// for its p99 to be compared: then at least ten requests lie above it, so
// it is a property of the revision rather than of the few slowest
// requests, which one scheduling hiccup or a new connection makes. With
// fewer the medians are compared: a canary slow throughout is slow at its
// median too. (At 100 requests, CI saw a healthy canary at 2.6× stable's
// p99 right after an ebbd restart.)
const MinRequestsForP99 = 1000

// Decision is what the runner must do now: if Set, give the canary
// Percent% of the traffic (0 sends all of it back to the stable revision,
// 100 all of it to the canary). Reason says why, whether or not Set.
type Decision struct {
	Set     bool   `json:"set"`
	Percent int    `json:"percent"`
	Reason  string `json:"reason"`
}

// Start begins a rollout of canary from stable under policy p, defaulted
// and validated here: the canary gets the first step's percent now.
func Start(now time.Time, p api.RolloutPolicy, stable, canary string) (State, Decision, error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return State{}, Decision{}, fmt.Errorf("start rollout of %s: %w", canary, err)
	}
	if stable == "" || canary == "" || stable == canary {
		return State{}, Decision{}, fmt.Errorf("start rollout: stable %q and canary %q must be two revisions", stable, canary)
	}
	st := State{Phase: Progressing, Policy: p, Stable: stable, Canary: canary, StartedAt: now}
	st, d := enterStep(st, now, 0, fmt.Sprintf("rollout of %s started", canary))
	return st, d, nil
}

// Step judges one observation and returns the rollout's next state and
// what to do now. Only a Progressing rollout moves; a failed check rolls
// back in this same call, so within one analysis interval of the window.
// An observation taken before the current step began is not judged: its
// window may belong to the step before.
func Step(now time.Time, st State, obs Observation) (State, Decision) {
	st = clone(st)
	if st.Phase != Progressing {
		return st, Decision{Reason: fmt.Sprintf("rollout is %s", st.Phase)}
	}
	p := st.Policy
	if st.Step < 0 || st.Step >= len(p.Steps) || len(st.Steps) == 0 {
		// Not a state Start and Step make; the safe way out is the stable revision.
		return finish(st, now, RolledBack, 0, fmt.Sprintf("invalid rollout state: step %d of %d, %d step records", st.Step, len(p.Steps), len(st.Steps)))
	}
	elapsed := now.Sub(st.StepStart)
	if obs.At.Before(st.StepStart) {
		return st, Decision{Reason: fmt.Sprintf("%s: observation from before the step began, not judged", stepName(st))}
	}
	a := analyze(p, obs)
	rec := &st.Steps[len(st.Steps)-1]
	rec.Checks++
	rec.Last = &a
	switch a.Verdict {
	case Fail:
		return finish(st, now, RolledBack, 0, fmt.Sprintf("%s failed: %s", stepName(st), a.Reason))
	case Inconclusive:
		if elapsed >= p.Deadline.Duration {
			return finish(st, now, RolledBack, 0, fmt.Sprintf("%s failed: still inconclusive at the %s deadline: %s", stepName(st), p.Deadline.Duration, a.Reason))
		}
		return st, Decision{Reason: fmt.Sprintf("%s: waiting: %s", stepName(st), a.Reason)}
	}
	rec.Passed++
	if elapsed < p.StepDuration.Duration {
		return st, Decision{Reason: fmt.Sprintf("%s passed a check: %s", stepName(st), a.Reason)}
	}
	if st.Step+1 < len(p.Steps) {
		return enterStep(st, now, st.Step+1, fmt.Sprintf("%s passed: %s", stepName(st), a.Reason))
	}
	return finish(st, now, Succeeded, 100, fmt.Sprintf("%s passed, the last: %s now has all traffic", stepName(st), st.Canary))
}

// Promote ends a live rollout now in the canary's favour: it gets 100%.
func Promote(now time.Time, st State, reason string) (State, Decision, error) {
	if err := live(st, "promote"); err != nil {
		return st, Decision{}, err
	}
	st, d := finish(clone(st), now, Succeeded, 100, "promoted: "+orDefault(reason, "by request"))
	return st, d, nil
}

// Abort ends a live rollout now in the stable revision's favour: the
// canary goes back to 0%.
func Abort(now time.Time, st State, reason string) (State, Decision, error) {
	if err := live(st, "abort"); err != nil {
		return st, Decision{}, err
	}
	st, d := finish(clone(st), now, Aborted, 0, "aborted: "+orDefault(reason, "by request"))
	return st, d, nil
}

// Pause holds a live rollout at its current percent: Step judges nothing
// until Resume. Pausing a paused rollout changes nothing.
func Pause(now time.Time, st State) (State, Decision, error) {
	if err := live(st, "pause"); err != nil {
		return st, Decision{}, err
	}
	st = clone(st)
	st.Phase = Paused
	return st, Decision{Reason: fmt.Sprintf("%s: paused at %d%%", stepName(st), st.Percent)}, nil
}

// Resume continues a paused rollout. The current step starts over at now,
// so the step lasts its full duration under analysis and the pause does
// not count toward its deadline. Resuming a progressing rollout changes
// nothing.
func Resume(now time.Time, st State) (State, Decision, error) {
	if err := live(st, "resume"); err != nil {
		return st, Decision{}, err
	}
	st = clone(st)
	if st.Phase == Progressing {
		return st, Decision{Reason: fmt.Sprintf("%s: already progressing", stepName(st))}, nil
	}
	st.Phase = Progressing
	st.StepStart = now
	return st, Decision{Reason: fmt.Sprintf("%s: resumed at %d%%", stepName(st), st.Percent)}, nil
}

func live(st State, action string) error {
	if st.Phase == Progressing || st.Phase == Paused {
		return nil
	}
	if st.Phase.Final() {
		return fmt.Errorf("%w: cannot %s a rollout that %s", ErrTransition, action, st.Phase)
	}
	return fmt.Errorf("%w: cannot %s a rollout in phase %q", ErrTransition, action, st.Phase)
}

func enterStep(st State, now time.Time, i int, why string) (State, Decision) {
	st.Step = i
	st.Percent = st.Policy.Steps[i]
	st.StepStart = now
	st.Steps = append(st.Steps, StepRecord{Percent: st.Percent, StartedAt: now})
	return st, Decision{Set: true, Percent: st.Percent, Reason: fmt.Sprintf("%s; %s gets %d%%", why, st.Canary, st.Percent)}
}

func finish(st State, now time.Time, phase Phase, percent int, reason string) (State, Decision) {
	set := st.Percent != percent
	st.Phase, st.Percent, st.FinishedAt, st.Reason = phase, percent, now, reason
	if percent == 0 {
		reason += fmt.Sprintf("; %s gets 100%% back", st.Stable)
	}
	return st, Decision{Set: set, Percent: percent, Reason: reason}
}

func stepName(st State) string {
	return fmt.Sprintf("step %d/%d (%d%%)", st.Step+1, len(st.Policy.Steps), st.Percent)
}

// clone copies the slices a step changes, so that callers may keep the
// state they passed in.
func clone(st State) State {
	st.Steps = append([]StepRecord(nil), st.Steps...)
	return st
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// analyze judges one window. Failures win over an inconclusive result: a
// canary failing on the little traffic it had is rolled back at once.
func analyze(p api.RolloutPolicy, obs Observation) Analysis {
	a := Analysis{At: obs.At, Canary: obs.Canary, Stable: obs.Stable, ErrorRate: obs.Canary.ErrorRate()}
	var waits []string
	compared := false
	for i, c := range p.PromQL { // all recorded before any verdict
		o := PromOutcome{Query: c.Query, Max: c.Max, Missing: true}
		if i < len(obs.PromQL) && !math.IsNaN(obs.PromQL[i]) {
			// Clamped, as JSON has no infinities: +Inf is above any max.
			o.Value, o.Missing = max(-math.MaxFloat64, min(obs.PromQL[i], math.MaxFloat64)), false
		}
		a.PromQL = append(a.PromQL, o)
	}

	if obs.CanaryFailed != "" {
		return fail(a, "the canary revision cannot serve: %s", obs.CanaryFailed)
	}
	enough := obs.Canary.Requests >= int64(p.MinRequests)
	maxRate := p.ErrorRateLimit()
	// Errors alone may fail a short window once they exceed what a full
	// one could hold, e.g. 5 errors of 5 requests with minRequests 20 and
	// maxErrorRate 0.1 (more than 2 of 20).
	errs := float64(max(obs.Canary.Errors5xx, 0) + max(obs.Canary.ConnErrors, 0))
	if a.ErrorRate > maxRate && (enough || errs > maxRate*float64(p.MinRequests)) {
		return fail(a, "error rate %.4g (%d 5xx + %d connection errors of %d requests) is above maxErrorRate %g",
			a.ErrorRate, obs.Canary.Errors5xx, obs.Canary.ConnErrors, obs.Canary.Requests, maxRate)
	}
	if !enough {
		waits = append(waits, fmt.Sprintf("%d canary requests, fewer than minRequests %d", obs.Canary.Requests, p.MinRequests))
	} else if obs.Stable.Requests >= int64(p.MinRequests) {
		q, canary, stable := "p99", obs.Canary.P99, obs.Stable.P99
		if min(obs.Canary.Requests, obs.Stable.Requests) < MinRequestsForP99 {
			q, canary, stable = "p50", obs.Canary.P50, obs.Stable.P50
		}
		if stable > 0 {
			compared = true
			a.LatencyQuantile = q
			a.LatencyRatio = float64(canary) / float64(stable)
			if a.LatencyRatio > p.MaxLatencyRatio && canary-stable > p.LatencySlack.Duration {
				return fail(a, "%s %s is %.3gx the stable %s %s, above maxLatencyRatio %g and more than latencySlack %s slower",
					q, canary, a.LatencyRatio, q, stable, p.MaxLatencyRatio, p.LatencySlack.Duration)
			}
		}
	}
	for i, o := range a.PromQL {
		switch {
		case o.Missing:
			waits = append(waits, fmt.Sprintf("promql[%d] has no value", i))
		case o.Value > o.Max:
			return fail(a, "promql[%d] %q is %g, above its max %g", i, o.Query, o.Value, o.Max)
		}
	}
	if len(waits) > 0 {
		a.Verdict, a.Reason = Inconclusive, strings.Join(waits, "; ")
		return a
	}
	a.Verdict = Pass
	a.Reason = fmt.Sprintf("error rate %.4g of %d requests", a.ErrorRate, obs.Canary.Requests)
	if compared {
		a.Reason += fmt.Sprintf(", %s %.3gx stable", a.LatencyQuantile, a.LatencyRatio)
	} else {
		a.Reason += fmt.Sprintf(", latency not compared: stable had %d requests", obs.Stable.Requests)
	}
	return a
}

func fail(a Analysis, format string, args ...any) Analysis {
	a.Verdict, a.Reason = Fail, fmt.Sprintf(format, args...)
	return a
}
