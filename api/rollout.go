package api

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Rollout policy defaults, applied by RolloutPolicy.WithDefaults.
const (
	DefaultRolloutInterval        = 10 * time.Second
	DefaultRolloutStepDuration    = time.Minute
	DefaultRolloutMaxErrorRate    = 0.01
	DefaultRolloutMaxLatencyRatio = 2.0
	DefaultRolloutMinRequests     = 20
	DefaultRolloutLatencySlack    = 2 * time.Millisecond
	// The deadline defaults to this many step durations.
	DefaultRolloutDeadlineSteps = 5
)

// DefaultRolloutSteps are the canary percents of a policy that names none.
var DefaultRolloutSteps = []int{5, 25, 50, 100}

// Rollout policy bounds, checked by RolloutPolicy.Validate.
const (
	MaxRolloutSteps      = 20
	MaxRolloutChecks     = 10
	MaxRolloutQueryBytes = 4096
	MinRolloutInterval   = 100 * time.Millisecond
	MaxRolloutDuration   = 24 * time.Hour
	MaxRolloutMinReqs    = 1_000_000_000
	MaxRolloutLatency    = 1000.0
)

// RolloutPolicy makes a changed spec start a canary rollout instead of
// moving all traffic at once: the new revision earns its traffic step by
// step, judged every Interval on its own error rate and latency against the
// stable revision over the same window, and is rolled back on the first
// failed check. The rollout package runs the policy; see its doc.go.
type RolloutPolicy struct {
	// Steps are the canary's percents, strictly increasing, each 1-100.
	// After the last step passes the canary gets 100%. Default 5, 25, 50, 100.
	Steps []int `json:"steps,omitempty"`
	// Interval is how often the canary is judged, and so the longest a
	// failing canary keeps its share. Default 10s.
	Interval Duration `json:"interval"`
	// StepDuration is how long each step lasts before, with a passing
	// check, the canary moves to the next one. At least Interval. Default 1m.
	StepDuration Duration `json:"stepDuration"`
	// MaxErrorRate is the highest share of the canary's requests, 0-1, that
	// may end in a 5xx or a connection error. A pointer because 0 (no error
	// at all) is meaningful. Default 0.01.
	MaxErrorRate *float64 `json:"maxErrorRate,omitempty"`
	// MaxLatencyRatio is the highest canary p99 / stable p99 over the same
	// window, at least 1. Default 2.
	MaxLatencyRatio float64 `json:"maxLatencyRatio,omitempty"`
	// LatencySlack is how much slower than the stable revision the canary
	// may be whatever the ratio: below a few milliseconds a ratio measures
	// a fresh replica's warm-up and the node's noise more than the code.
	// At most 1m. Default 2ms; set 1ns to judge by the ratio alone.
	LatencySlack Duration `json:"latencySlack"`
	// MinRequests is how many canary requests a window needs to be judged;
	// a window with fewer neither passes nor fails. Default 20.
	MinRequests int `json:"minRequests,omitempty"`
	// Deadline is how long after its start a step may go unjudged (too few
	// requests, a missing PromQL result) before it fails. At least
	// StepDuration. Default 5 step durations.
	Deadline Duration `json:"deadline"`
	// PromQL are extra checks against a Prometheus: each query's value
	// must be at most its Max.
	PromQL []PromCheck `json:"promql,omitempty"`
}

// PromCheck is one PromQL query of a rollout's analysis. The query must
// return one number; the check fails when it is above Max.
type PromCheck struct {
	Query string  `json:"query"`
	Max   float64 `json:"max"`
}

// ErrorRateLimit is MaxErrorRate, or its default when unset.
func (p RolloutPolicy) ErrorRateLimit() float64 {
	if p.MaxErrorRate == nil {
		return DefaultRolloutMaxErrorRate
	}
	return *p.MaxErrorRate
}

// WithDefaults returns a copy of p with every zero field set to its
// default. The copy shares no slice or pointer with p.
func (p RolloutPolicy) WithDefaults() RolloutPolicy {
	if len(p.Steps) == 0 {
		p.Steps = slices.Clone(DefaultRolloutSteps)
	} else {
		p.Steps = slices.Clone(p.Steps)
	}
	if p.Interval.Duration == 0 {
		p.Interval = D(DefaultRolloutInterval)
	}
	if p.StepDuration.Duration == 0 {
		p.StepDuration = D(DefaultRolloutStepDuration)
	}
	rate := p.ErrorRateLimit()
	p.MaxErrorRate = &rate
	if p.MaxLatencyRatio == 0 {
		p.MaxLatencyRatio = DefaultRolloutMaxLatencyRatio
	}
	if p.MinRequests == 0 {
		p.MinRequests = DefaultRolloutMinRequests
	}
	if p.LatencySlack.Duration == 0 {
		p.LatencySlack = D(DefaultRolloutLatencySlack)
	}
	if p.Deadline.Duration == 0 {
		p.Deadline = D(DefaultRolloutDeadlineSteps * p.StepDuration.Duration)
	}
	p.PromQL = slices.Clone(p.PromQL)
	return p
}

// Validate checks a defaulted policy. Call WithDefaults first.
func (p RolloutPolicy) Validate() error {
	if len(p.Steps) == 0 || len(p.Steps) > MaxRolloutSteps {
		return invalid("rollout.steps", "needs 1-%d steps, has %d", MaxRolloutSteps, len(p.Steps))
	}
	for i, s := range p.Steps {
		if s < 1 || s > 100 {
			return invalid(fmt.Sprintf("rollout.steps[%d]", i), "%d is outside 1-100", s)
		}
		if i > 0 && s <= p.Steps[i-1] {
			return invalid(fmt.Sprintf("rollout.steps[%d]", i), "%d is not above the step before, %d", s, p.Steps[i-1])
		}
	}
	if d := p.Interval.Duration; d < MinRolloutInterval || d > time.Hour {
		return invalid("rollout.interval", "%s is outside %s-1h", d, MinRolloutInterval)
	}
	if d := p.StepDuration.Duration; d < p.Interval.Duration || d > MaxRolloutDuration {
		return invalid("rollout.stepDuration", "%s is outside interval (%s) to 24h", d, p.Interval.Duration)
	}
	if d := p.Deadline.Duration; d < p.StepDuration.Duration || d > MaxRolloutDuration {
		return invalid("rollout.deadline", "%s is outside stepDuration (%s) to 24h", d, p.StepDuration.Duration)
	}
	if r := p.ErrorRateLimit(); !(r >= 0 && r <= 1) { // also refuses NaN
		return invalid("rollout.maxErrorRate", "%g is outside 0-1", r)
	}
	if r := p.MaxLatencyRatio; !(r >= 1 && r <= MaxRolloutLatency) {
		return invalid("rollout.maxLatencyRatio", "%g is outside 1-%g", r, MaxRolloutLatency)
	}
	if d := p.LatencySlack.Duration; d < 0 || d > time.Minute {
		return invalid("rollout.latencySlack", "%s is outside 0-1m", d)
	}
	if p.MinRequests < 1 || p.MinRequests > MaxRolloutMinReqs {
		return invalid("rollout.minRequests", "%d is outside 1-%d", p.MinRequests, MaxRolloutMinReqs)
	}
	if len(p.PromQL) > MaxRolloutChecks {
		return invalid("rollout.promql", "has %d checks, at most %d", len(p.PromQL), MaxRolloutChecks)
	}
	for i, c := range p.PromQL {
		field := fmt.Sprintf("rollout.promql[%d]", i)
		switch {
		case strings.TrimSpace(c.Query) == "":
			return invalid(field+".query", "is required")
		case len(c.Query) > MaxRolloutQueryBytes:
			return invalid(field+".query", "is longer than %d bytes", MaxRolloutQueryBytes)
		case strings.ContainsRune(c.Query, 0):
			return invalid(field+".query", "contains a NUL byte")
		case math.IsNaN(c.Max) || math.IsInf(c.Max, 0):
			return invalid(field+".max", "must be a finite number")
		}
	}
	return nil
}
