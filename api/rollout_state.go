package api

import "time"

// RolloutPhase is where a rollout is in its life.
type RolloutPhase string

// The phases. Succeeded, RolledBack and Aborted are final.
const (
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutPaused      RolloutPhase = "Paused"
	RolloutSucceeded   RolloutPhase = "Succeeded"
	RolloutRolledBack  RolloutPhase = "RolledBack"
	RolloutAborted     RolloutPhase = "Aborted"
)

// Final reports whether no step or action can change a rollout in phase p.
func (p RolloutPhase) Final() bool {
	return p == RolloutSucceeded || p == RolloutRolledBack || p == RolloutAborted
}

// Rollout is a canary rollout as the API shows it: GET
// .../functions/{fn}/rollouts/{id}. Its ID is the canary revision's name,
// as a rollout starts only for a new revision.
type Rollout struct {
	ID        string `json:"id"`
	Function  string `json:"function"`
	Namespace string `json:"namespace"`
	RolloutState
}

// RolloutList is GET .../functions/{fn}/rollouts: newest first.
type RolloutList struct {
	Items []Rollout `json:"items"`
}

// RolloutAction is the body of POST .../rollouts/{id}/{action}, where the
// action is promote, pause, resume or abort. Reason is recorded with a
// promote or an abort.
type RolloutAction struct {
	Reason string `json:"reason,omitempty"`
}

// MaxRolloutReason bounds RolloutAction.Reason, in bytes.
const MaxRolloutReason = 1024

// The actions POST .../rollouts/{id}/{action} takes.
const (
	RolloutPromote = "promote"
	RolloutPause   = "pause"
	RolloutResume  = "resume"
	RolloutAbort   = "abort"
)

// RolloutState is a rollout's progress, as the rollout package's state
// machine makes it and the control plane stores it. It carries the policy
// it started under, so a later change of the function's policy does not
// change a rollout under way.
type RolloutState struct {
	Phase  RolloutPhase  `json:"phase"`
	Policy RolloutPolicy `json:"policy"`
	// Stable is the revision serving the rest of the traffic, and the one
	// a rollback returns to; Canary is the revision being rolled out.
	Stable string `json:"stable"`
	Canary string `json:"canary"`
	// Step indexes Policy.Steps; Percent is the canary's share now.
	Step      int       `json:"step"`
	Percent   int       `json:"percent"`
	StartedAt time.Time `json:"startedAt"`
	StepStart time.Time `json:"stepStart"`
	// Steps records each step reached, in order.
	Steps []RolloutStep `json:"steps"`
	// FinishedAt and Reason are set when the rollout reaches a final phase.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Reason     string    `json:"reason,omitempty"`
}

// RolloutStep is one step's history: how often it was judged, and its last
// analysis with the figures it was judged on.
type RolloutStep struct {
	Percent   int              `json:"percent"`
	StartedAt time.Time        `json:"startedAt"`
	Checks    int              `json:"checks"`
	Passed    int              `json:"passed"`
	Last      *RolloutAnalysis `json:"last,omitempty"`
}

// RolloutVerdict is the outcome of one analysis.
type RolloutVerdict string

// The verdicts. Inconclusive neither passes nor fails: the window had too
// few canary requests, or a PromQL check had no value.
const (
	VerdictPass         RolloutVerdict = "Pass"
	VerdictFail         RolloutVerdict = "Fail"
	VerdictInconclusive RolloutVerdict = "Inconclusive"
)

// RolloutAnalysis is one judgement of the canary and the figures it rests on.
type RolloutAnalysis struct {
	At      time.Time      `json:"at"`
	Verdict RolloutVerdict `json:"verdict"`
	Reason  string         `json:"reason"`
	Canary  RolloutFigures `json:"canary"`
	Stable  RolloutFigures `json:"stable"`
	// ErrorRate is the canary's (5xx + connection errors) / requests.
	ErrorRate float64 `json:"errorRate"`
	// LatencyRatio is the canary's latency over the stable revision's at
	// LatencyQuantile: p99, or p50 while either revision had fewer than
	// 1000 requests in the window (below that a p99 rests on a handful of
	// the slowest requests).
	// 0 and "" when not compared (fewer than minRequests of either).
	LatencyRatio    float64              `json:"latencyRatio,omitempty"`
	LatencyQuantile string               `json:"latencyQuantile,omitempty"`
	PromQL          []RolloutPromOutcome `json:"promql,omitempty"`
}

// RolloutPromOutcome is one PromQL check's value against its maximum.
type RolloutPromOutcome struct {
	Query   string  `json:"query"`
	Max     float64 `json:"max"`
	Value   float64 `json:"value"`
	Missing bool    `json:"missing,omitempty"`
}

// RolloutFigures are one revision's figures over an observation window, as
// the router measures them.
type RolloutFigures struct {
	// Requests counts every request routed to the revision, including
	// those answered with a 5xx and those that failed to connect.
	Requests int64 `json:"requests"`
	// Errors5xx counts the revision's own 5xx answers.
	Errors5xx int64 `json:"errors5xx"`
	// ConnErrors counts requests that never reached a replica.
	ConnErrors int64         `json:"connErrors"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
}

// ErrorRate is (5xx + connection errors) / requests, 0 with no requests.
// Should a counter of errors run ahead of Requests, errors are taken as
// the total, so the rate never exceeds 1.
func (f RolloutFigures) ErrorRate() float64 {
	errs := max(f.Errors5xx, 0) + max(f.ConnErrors, 0)
	total := max(f.Requests, errs)
	if total <= 0 {
		return 0
	}
	return float64(errs) / float64(total)
}
