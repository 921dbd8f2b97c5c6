package autoscaler

import (
	"math"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Observation is what the decider sees of a revision at one instant.
type Observation struct {
	// Stable and Panic are the scaling metric (concurrency, or requests per
	// second in RPS mode) summed across reporters and averaged over the
	// stable and the panic window.
	Stable float64 `json:"stable"`
	Panic  float64 `json:"panic"`
	// Ready is the number of ready replicas.
	Ready int `json:"ready"`
	// Buffered is the number of requests waiting in activators right now.
	Buffered int `json:"buffered"`
	// Poked is true when an activator asked for capacity since the last
	// decision: a request is waiting even if no stat has said so yet.
	Poked bool `json:"poked,omitempty"`
	// LastDemand is when a request was last seen arriving, in flight or
	// buffered; zero if never.
	LastDemand time.Time `json:"lastDemand"`
	// KeepWarmUntil, from the keep-alive policy, holds a warm revision above
	// zero until then. It only ever delays scale to zero; it never wakes a
	// revision that is already at zero.
	KeepWarmUntil time.Time `json:"keepWarmUntil"`
	// PreWarm, from the keep-alive policy, predicts a request soon: run one
	// replica now, even at zero and without demand.
	PreWarm bool `json:"preWarm,omitempty"`
	// Unrouted says no route reaches the revision: no traffic percent and no
	// tag. As in Knative, min scale does not apply to it, so an old revision
	// goes to zero a grace period after the routes left it (or after its
	// last demand, if later). The zero value, routed, is also what an
	// unknown routing means: min scale is never dropped on missing news.
	Unrouted bool `json:"unrouted,omitempty"`
	// Queued is the revision's share of its function's asynchronous
	// invocations that are queued or being delivered (queue.Depth): work
	// that exists now even if no request has reached a router yet. It is
	// demand, like a buffered request, and sizes the revision to at least
	// ceil(Queued / the spec's async target).
	Queued int `json:"queued,omitempty"`
}

// Decision is the decider's answer for one instant.
type Decision struct {
	// Desired is the replica count to run.
	Desired int `json:"desired"`
	// Panic is true while the decider is in panic mode.
	Panic bool `json:"panic"`
	// StableDesired and PanicDesired are ceil(observed/target) per window,
	// after the scale rate limits and the activation scale, before panic
	// ratcheting, the delay window and the bounds.
	StableDesired int `json:"stableDesired"`
	PanicDesired  int `json:"panicDesired"`
	// AsyncDesired is ceil(Queued / async target), the count the queued
	// asynchronous work asks for; 0 when nothing is queued.
	AsyncDesired int `json:"asyncDesired,omitempty"`
	// Target is the per-replica target of the metric.
	Target float64 `json:"target"`
	// Reason names the rule that settled Desired (see the Reason constants).
	Reason string `json:"reason"`
	// ZeroAt is the earliest time the revision may go to zero if no demand
	// arrives before then; zero when it may not go to zero at all.
	ZeroAt time.Time `json:"zeroAt"`
}

// Reasons reported in Decision.Reason, in the order the rules apply: the
// last rule that changed the count names it.
const (
	ReasonStable     = "stable"        // ceil(stable/target)
	ReasonPanic      = "panic"         // panic mode holds the highest count seen
	ReasonActivation = "activation"    // demand at zero: at least the activation scale
	ReasonAsync      = "async-queue"   // ceil(queued/async target), above the windows' count
	ReasonKeepWarm   = "keep-warm"     // no demand, but grace, retention or keep-alive not over
	ReasonPreWarm    = "pre-warm"      // no demand, but the keep-alive policy predicts a request
	ReasonToZero     = "scale-to-zero" // no demand for long enough
	ReasonDelay      = "scale-down-delay"
	ReasonInitial    = "initial-scale" // initial scale not reached yet
	ReasonMin        = "min-scale"
	ReasonMax        = "max-scale"
	// ReasonQuota is set by the runner, after the decider: the namespace's
	// quota cut the count (runner_quota.go).
	ReasonQuota = "namespace-quota"
)

// DeciderState is the decider's memory between decisions, exported so that
// status can show it.
type DeciderState struct {
	// PanicSince is the last time the panic window crossed the threshold;
	// zero when not in panic mode.
	PanicSince time.Time `json:"panicSince"`
	// MaxPanic is the highest count decided during this panic.
	MaxPanic int `json:"maxPanic"`
	// InitialReached is set once the revision has had its initial scale ready.
	InitialReached bool `json:"initialReached"`
	// Born is when the decider started; it counts as demand for the grace
	// period, so a new revision is not killed before it could be used.
	Born time.Time `json:"born"`
	// LastDemand is the newest demand the decider has seen.
	LastDemand time.Time `json:"lastDemand"`
	// LastDesired is the previous decision's count.
	LastDesired int `json:"lastDesired"`
	// UnroutedSince is the first decision of the current stretch without a
	// route; zero while routed. The grace period runs from it at the
	// earliest, so that requests a router sent just before the routes
	// changed find the revision up.
	UnroutedSince time.Time `json:"unroutedSince,omitzero"`
}

// Start describes the revision when a decider is created for it.
type Start struct {
	// At is the creation time.
	At time.Time
	// Ready is the number of replicas already ready. Above one, the decider
	// starts in panic mode holding them, as Knative's does: a restarted
	// autoscaler has lost its metric history and must not read the silence
	// as a reason to scale down.
	Ready int
	// Desired is the count last decided for the revision, when one is on
	// record: a revision that was warm stays warm through its grace period.
	Desired int
	// Resumed says the revision was scaled before (a decision for it is on
	// record), so the initial scale is not applied again.
	Resumed bool
	// Memory is what the revision's Scaler remembered before a restart
	// (Scaler.Memory); zero for a new revision.
	Memory Memory
}

// Memory is what a Scaler needs, besides its function's IdleTracker, to
// hold the same warm tiers after an autoscaler restart: where its
// keep-alive windows count from.
type Memory struct {
	// LastDemand is the revision's newest demand; zero if never called.
	LastDemand time.Time
	// DeployedWarm is when a revision deployed with replicas (initial scale
	// above zero) started; zero otherwise.
	DeployedWarm time.Time
}

// Decider sizes one revision with Knative's KPA algorithm plus ebb's
// scale-to-zero rules. Decide is deterministic: the same spec, start and
// sequence of (now, observation) give the same decisions. It holds no lock
// and does no I/O; its single owner calls it.
type Decider struct {
	spec   api.FunctionSpec
	target float64
	// asyncTarget is the queued invocations one replica is sized for.
	asyncTarget int
	stable      time.Duration
	delay       maxWindow
	st          DeciderState
}

// NewDecider returns a decider for a revision with spec, which must already
// have its defaults applied (api.FunctionSpec.WithDefaults).
func NewDecider(spec api.FunctionSpec, start Start) *Decider {
	stable, _ := Windows(spec.Scale)
	d := &Decider{
		spec:        spec,
		target:      Target(spec.Concurrency),
		asyncTarget: spec.AsyncTarget(),
		stable:      stable,
		delay:       maxWindow{length: spec.Scale.ScaleDownDelay.Duration},
		st: DeciderState{Born: start.At, InitialReached: start.Resumed || initialScale(spec.Scale) == 0,
			LastDemand: start.Memory.LastDemand},
	}
	if start.Ready > 1 {
		d.st.PanicSince, d.st.MaxPanic = start.At, start.Ready
	}
	d.st.LastDesired = max(start.Ready, start.Desired)
	return d
}

// Spec is the defaulted spec the decider runs with.
func (d *Decider) Spec() api.FunctionSpec { return d.spec }

// State returns a copy of the decider's memory.
func (d *Decider) State() DeciderState { return d.st }

// Windows returns the stable window and the panic window of a scale spec:
// the panic window is PanicWindowPercent of the stable window, at least one
// second (one bucket).
func Windows(s api.Scale) (stable, panicWindow time.Duration) {
	stable = s.StableWindow.Duration
	panicWindow = time.Duration(float64(stable) * s.PanicWindowPercent / 100)
	panicWindow = panicWindow.Truncate(bucketWidth)
	if panicWindow < bucketWidth {
		panicWindow = bucketWidth
	}
	return stable, panicWindow
}

// Target is the per-replica value the decider aims for. For concurrency it
// is Knative's: the target, capped by the hard limit when there is one,
// times the target utilization. For RPS it is RPSTarget times utilization.
func Target(c api.Concurrency) float64 {
	const floor = 0.01 // Knative's TargetMin: never divide by zero
	if c.Metric == api.MetricRPS {
		return math.Max(floor, float64(c.RPSTarget)*c.TargetUtilization)
	}
	t := float64(c.Target)
	if c.HardLimit > 0 && float64(c.HardLimit) < t {
		t = float64(c.HardLimit)
	}
	return math.Max(floor, t*c.TargetUtilization)
}

func initialScale(s api.Scale) int {
	if s.Initial == nil {
		return api.DefaultInitialScale
	}
	return *s.Initial
}

// Decide returns the desired scale at now.
func (d *Decider) Decide(now time.Time, obs Observation) Decision {
	s := d.spec.Scale
	dec := Decision{Target: d.target, Reason: ReasonStable}

	initial := initialScale(s)
	if !d.st.InitialReached && obs.Ready >= initial {
		d.st.InitialReached = true
	}

	switch {
	case !obs.Unrouted:
		d.st.UnroutedSince = time.Time{}
	case d.st.UnroutedSince.IsZero():
		d.st.UnroutedSince = now
	}

	// Queued asynchronous work is demand now too: a function at zero is
	// woken for it before the invoker's first delivery reaches a router.
	demandNow := obs.Buffered > 0 || obs.Poked || obs.Queued > 0
	if obs.LastDemand.After(d.st.LastDemand) {
		d.st.LastDemand = obs.LastDemand
	}
	if demandNow {
		d.st.LastDemand = now
	}

	// Knative divides by at least one ready replica, so that the rate limits
	// and the panic threshold mean something at zero.
	readyF := math.Max(1, float64(obs.Ready))
	maxUp := math.Ceil(s.MaxScaleUpRate * readyF)
	maxDown := math.Floor(readyF / s.MaxScaleDownRate)

	// Buffered requests are demand that exists now, before any stat has
	// averaged it in: count them in the panic window so that a burst at zero
	// is sized in one decision instead of one replica at a time.
	panicValue := obs.Panic
	if float64(obs.Buffered) > panicValue && d.spec.Concurrency.Metric != api.MetricRPS {
		panicValue = float64(obs.Buffered)
	}
	dspc := math.Ceil(obs.Stable / d.target)
	dppc := math.Ceil(panicValue / d.target)
	stableDesired := int(math.Min(math.Max(dspc, maxDown), maxUp))
	panicDesired := int(math.Min(math.Max(dppc, maxDown), maxUp))
	if as := s.ActivationScale; as > 1 {
		if dspc > 0 && stableDesired < as {
			stableDesired = as
		}
		if dppc > 0 && panicDesired < as {
			panicDesired = as
		}
	}
	dec.StableDesired, dec.PanicDesired = stableDesired, panicDesired

	// Panic mode: entered when the panic window wants threshold× the ready
	// replicas, extended while it still does, left a full stable window after
	// it last did. While in it the count only ratchets up.
	over := dppc/readyF >= s.PanicThresholdPercent/100
	switch {
	case over:
		d.st.PanicSince = now
	case !d.st.PanicSince.IsZero() && now.Sub(d.st.PanicSince) > d.stable:
		d.st.PanicSince, d.st.MaxPanic = time.Time{}, 0
	}
	desired := stableDesired
	if !d.st.PanicSince.IsZero() {
		desired = max(desired, panicDesired)
		if desired > d.st.MaxPanic {
			d.st.MaxPanic = desired
		}
		if d.st.MaxPanic > desired {
			desired = d.st.MaxPanic
		}
		dec.Reason = ReasonPanic
	}

	// Queued asynchronous work sizes the revision as KEDA's queue scalers
	// do: ceil(depth/target) replicas, whatever the windows say. It is a
	// floor on the windows' count, not added to it: the deliveries in
	// flight are in both. It goes through the scale-down delay and max
	// scale below like any count.
	if obs.Queued > 0 {
		dec.AsyncDesired = (obs.Queued + d.asyncTarget - 1) / d.asyncTarget
		if dec.AsyncDesired > desired {
			desired = dec.AsyncDesired
			dec.Reason = ReasonAsync
		}
	}

	if demandNow && desired < max(s.ActivationScale, 1) {
		desired = max(s.ActivationScale, 1)
		dec.Reason = ReasonActivation
	}

	// Scale to zero: only with no request buffered or on its way, and only
	// after grace, retention and the keep-alive policy have all run out since
	// the last demand. Until then a warm revision keeps one replica, however
	// the windows read: they drain over the stable window, which would make
	// scale to zero wait a minute longer than the grace the user set.
	// Min scale holds only a revision a route reaches. The initial scale
	// holds a new revision until reached, routed or not, as in Knative; an
	// unrouted one for a grace period only, so that an old revision that
	// never became ready (a crash loop) does not hold it forever.
	grace := max(s.ScaleToZeroGrace.Duration, s.ScaleToZeroRetention.Duration)
	minFloor := s.Min
	if obs.Unrouted {
		minFloor = 0
	}
	floor := minFloor
	if !d.st.InitialReached && (!obs.Unrouted || now.Before(d.st.UnroutedSince.Add(grace))) {
		floor = max(floor, initial)
	}
	if floor == 0 {
		idleFrom := d.st.LastDemand
		if d.st.Born.After(idleFrom) {
			idleFrom = d.st.Born
		}
		if d.st.UnroutedSince.After(idleFrom) {
			idleFrom = d.st.UnroutedSince
		}
		zeroAt := idleFrom.Add(grace)
		if obs.KeepWarmUntil.After(zeroAt) {
			zeroAt = obs.KeepWarmUntil
		}
		dec.ZeroAt = zeroAt
		warm := obs.Ready > 0 || d.st.LastDesired > 0
		switch {
		case !demandNow && !now.Before(zeroAt):
			if desired > 0 || warm {
				dec.Reason = ReasonToZero
			}
			desired = 0
			d.st.PanicSince, d.st.MaxPanic = time.Time{}, 0
		case desired == 0 && warm:
			desired = 1
			dec.Reason = ReasonKeepWarm
		}
		if obs.PreWarm && desired == 0 {
			desired = 1
			dec.Reason = ReasonPreWarm
		}
	}

	// Scale-down delay: the count is the highest decided over the delay
	// window, so a lower count (zero included) applies only once it has held
	// for the whole window.
	if d.delay.length > 0 {
		d.delay.record(now, desired)
		if held := d.delay.max(); held > desired {
			desired = held
			dec.Reason = ReasonDelay
		}
	}

	if desired < floor {
		desired = floor
		dec.Reason = ReasonMin
		if floor > minFloor {
			dec.Reason = ReasonInitial
		}
	}
	if s.Max > 0 && desired > s.Max {
		desired = s.Max
		dec.Reason = ReasonMax
	}

	d.st.LastDesired = desired
	dec.Desired = desired
	dec.Panic = !d.st.PanicSince.IsZero()
	return dec
}

// maxWindow is the maximum of the values recorded over the last length of
// time: a monotonic deque, so record and max are amortized O(1).
type maxWindow struct {
	length  time.Duration
	entries []windowEntry
}

type windowEntry struct {
	at time.Time
	v  int
}

func (w *maxWindow) record(now time.Time, v int) {
	// Anything recorded at or before now-length has left the window.
	cut := 0
	for cut < len(w.entries) && !w.entries[cut].at.After(now.Add(-w.length)) {
		cut++
	}
	w.entries = w.entries[cut:]
	// A newer, larger value makes older smaller ones irrelevant.
	for len(w.entries) > 0 && w.entries[len(w.entries)-1].v <= v {
		w.entries = w.entries[:len(w.entries)-1]
	}
	w.entries = append(w.entries, windowEntry{at: now, v: v})
}

func (w *maxWindow) max() int {
	if len(w.entries) == 0 {
		return 0
	}
	return w.entries[0].v
}
