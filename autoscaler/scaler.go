package autoscaler

import (
	"time"

	"github.com/ebbrun/ebb/api"
)

// Scaler sizes one revision: it owns the revision's Metrics and Decider,
// shares its function's IdleTracker with the function's other revisions, and
// asks a KeepAlivePolicy how long to stay warm. Like its parts it is pure and
// has one owner; the Runner and the trace replay both drive it.
type Scaler struct {
	spec    api.FunctionSpec
	metrics *Metrics
	decider *Decider
	idle    *IdleTracker
	policy  KeepAlivePolicy
	poked   bool
	// unrouted: no route reaches the revision (SetRouted).
	unrouted bool
	// queued is the revision's share of its function's queued
	// asynchronous invocations (SetQueued).
	queued int
	// plan is the policy's last plan, made from histogram version planFor.
	plan    Plan
	planFor uint64
	planned bool
	// deployedWarm is when a revision deployed with replicas (initial
	// scale above zero) started, zero otherwise. Until its first demand it
	// is the revision's only sign of use; see Scale.
	deployedWarm time.Time
}

// NewScaler returns a scaler for a revision with a defaulted spec. idle is
// the function's tracker, shared by its revisions.
func NewScaler(spec api.FunctionSpec, idle *IdleTracker, policy KeepAlivePolicy, start Start) *Scaler {
	stable, _ := Windows(spec.Scale)
	s := &Scaler{
		spec:    spec,
		metrics: NewMetrics(stable),
		decider: NewDecider(spec, start),
		idle:    idle,
		policy:  policy,
	}
	switch {
	case start.Resumed:
		s.deployedWarm = start.Memory.DeployedWarm
	case spec.Scale.Initial != nil && *spec.Scale.Initial > 0:
		s.deployedWarm = start.At
	}
	return s
}

// Memory is what the scaler would need again after a restart (Start.Memory).
func (s *Scaler) Memory() Memory {
	return Memory{LastDemand: s.decider.State().LastDemand, DeployedWarm: s.deployedWarm}
}

// Spec is the revision's defaulted spec.
func (s *Scaler) Spec() api.FunctionSpec { return s.spec }

// Record adds one reporter's stat for the revision.
func (s *Scaler) Record(st api.RevisionStat) {
	s.metrics.Record(st)
	if HasDemand(st) {
		interval := st.Interval.Duration
		if interval <= 0 {
			interval = time.Second
		}
		s.idle.Observe(st.Time.Add(-interval), st.Time)
	}
}

// SetRouted says whether a route (a traffic percent or a tag) reaches the
// revision; a new Scaler assumes one does. An unrouted revision ignores min
// scale and gets none of the keep-alive policy's warm tiers: the requests
// its function's history predicts go to the routed revisions.
func (s *Scaler) SetRouted(routed bool) { s.unrouted = !routed }

// SetQueued says how many of its function's asynchronous invocations,
// queued or being delivered, fall to the revision; it holds until set
// again. Queued work is demand (Observation.Queued).
func (s *Scaler) SetQueued(n int) { s.queued = max(n, 0) }

// Poke records an activation request at now: a request waits for capacity.
// The next Scale counts it as demand even before any stat says so.
func (s *Scaler) Poke(now time.Time) {
	s.poked = true
	s.idle.Observe(now, now)
}

// Result is one scaling step: what was observed, what the policy planned,
// and what to run.
type Result struct {
	Observation Observation  `json:"observation"`
	Decision    Decision     `json:"decision"`
	Plan        Plan         `json:"plan"`
	State       DeciderState `json:"state"`
	// IdleSince is the revision's last demand, the origin of the plan's windows.
	IdleSince time.Time `json:"idleSince"`
	// KeepWarmUntil is when the plan lets the revision go idle.
	KeepWarmUntil time.Time `json:"keepWarmUntil"`
	// PreCreated is the number of pre-created tasks to hold (0 or 1).
	PreCreated int `json:"preCreated"`
}

// Scale decides the revision's size at now, with ready replicas running.
func (s *Scaler) Scale(now time.Time, ready int) Result {
	obs := s.metrics.Observe(now, s.spec, ready)
	obs.Poked, s.poked = s.poked, false
	obs.Unrouted = s.unrouted
	obs.Queued = s.queued
	idleSince := obs.LastDemand
	if last := s.decider.State().LastDemand; last.After(idleSince) {
		idleSince = last
	}
	if obs.Poked || obs.Buffered > 0 || obs.Queued > 0 {
		idleSince = now
	}
	// A plan is a pure function of the histogram and the spec: make it again
	// only when the histogram has changed.
	if h := &s.idle.Histogram; !s.planned || s.planFor != h.Version {
		s.plan = s.policy.Plan(h, s.spec.Scale.ScaleToZeroGrace.Duration)
		s.planFor, s.planned = h.Version, true
	}
	plan := s.plan
	res := Result{Plan: plan, IdleSince: idleSince}
	warmTiers := !s.unrouted
	if warmTiers && !idleSince.IsZero() {
		obs.KeepWarmUntil = plan.KeepWarmUntil(idleSince)
		obs.PreWarm = plan.Warm(idleSince, now)
		res.KeepWarmUntil = obs.KeepWarmUntil
	}
	res.Observation = obs
	res.Decision = s.decider.Decide(now, obs)
	res.State = s.decider.State()
	if warmTiers && res.Decision.Desired == 0 && (plan.PreCreate(idleSince, now) || s.neverCalled(idleSince, now, plan)) {
		res.PreCreated = 1
	}
	return res
}

// neverCalled says whether a revision deployed warm has not been called
// yet and is within the plan's pre-warm horizon of its deployment. Its
// replica went away unused after the grace period, and its first call
// should still start from a pre-created task, not pay for a full container
// create: deploying is the strongest sign that a call is coming.
func (s *Scaler) neverCalled(idleSince, now time.Time, plan Plan) bool {
	return idleSince.IsZero() && !s.deployedWarm.IsZero() && plan.PreCreateUntil > 0 &&
		now.Sub(s.deployedWarm) < plan.PreCreateUntil
}
