package autoscaler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// queued is an observation of queued asynchronous work and nothing else:
// no request has reached a router.
func queued(n, ready int) Observation { return Observation{Queued: n, Ready: ready} }

func TestDeciderAsyncQueue(t *testing.T) {
	noInitial := func(s *api.FunctionSpec) { s.Scale.Initial = intp(0) }
	asyncTarget := func(target int) func(*api.FunctionSpec) {
		return func(s *api.FunctionSpec) {
			noInitial(s)
			s.Async = &api.AsyncPolicy{Target: target}
		}
	}
	scenarios := []scenario{
		{
			name: "queued work wakes a revision at zero before any request arrives",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: queued(0, 0), want: 0, wantReason: ReasonStable},
				{at: 12, obs: queued(1, 0), want: 1, wantReason: ReasonAsync},
			},
		},
		{
			name: "ceil(depth / async target) replicas",
			spec: asyncTarget(10),
			steps: []step{
				{at: 10, obs: queued(95, 0), want: 10, wantReason: ReasonAsync},
				{at: 12, obs: queued(101, 10), want: 11, wantReason: ReasonAsync},
				{at: 14, obs: queued(2000, 11), want: 200, wantReason: ReasonAsync},
			},
		},
		{
			name: "the default async target is the concurrency target capped by the hard limit",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Concurrency.HardLimit = 4
			},
			steps: []step{{at: 10, obs: queued(10, 0), want: 3, wantReason: ReasonAsync}},
		},
		{
			name: "capped by max scale",
			spec: func(s *api.FunctionSpec) {
				asyncTarget(10)(s)
				s.Scale.Max = 50
			},
			steps: []step{{at: 10, obs: queued(2000, 0), want: 50, wantReason: ReasonMax}},
		},
		{
			name: "a floor on the windows' count, not added to it",
			spec: asyncTarget(10),
			steps: []step{
				// stable: ceil(350/70) = 5 above ceil(30/10) = 3.
				{at: 10, obs: Observation{Stable: 350, Panic: 350, Ready: 5, LastDemand: at(10), Queued: 30}, want: 5, wantReason: ReasonStable},
				// the queue asks for more than the windows: 10.
				{at: 12, obs: Observation{Stable: 350, Panic: 350, Ready: 5, LastDemand: at(12), Queued: 100}, want: 10, wantReason: ReasonAsync},
			},
		},
		{
			name: "above the panic ratchet when the queue asks for more",
			spec: asyncTarget(1),
			steps: []step{
				{at: 10, obs: Observation{Stable: 10, Panic: 210, Ready: 1, LastDemand: at(10), Queued: 9}, want: 9, wantPanic: true, wantReason: ReasonAsync},
			},
		},
		{
			name: "rps mode: queued work counts the same",
			spec: func(s *api.FunctionSpec) {
				asyncTarget(5)(s)
				s.Concurrency.Metric = api.MetricRPS
			},
			steps: []step{{at: 10, obs: queued(12, 0), want: 3, wantReason: ReasonAsync}},
		},
		{
			name: "queued work holds the revision up; a drained queue starts the grace period",
			spec: asyncTarget(10),
			steps: []step{
				{at: 10, obs: queued(30, 0), want: 3, wantReason: ReasonAsync},
				// Still queued (being delivered) a minute later: no grace runs.
				{at: 70, obs: queued(25, 3), want: 3, wantReason: ReasonAsync},
				// Drained at 72: warm for the 30 s grace from the last queued work ...
				{at: 72, obs: queued(0, 1), want: 1, wantReason: ReasonKeepWarm},
				{at: 99.9, obs: queued(0, 1), want: 1, wantReason: ReasonKeepWarm},
				// ... then to zero.
				{at: 100, obs: queued(0, 1), want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "a drained queue goes through the scale-down delay",
			spec: func(s *api.FunctionSpec) {
				asyncTarget(10)(s)
				s.Scale.ScaleDownDelay = api.D(20 * time.Second)
			},
			steps: []step{
				{at: 10, obs: queued(100, 0), want: 10, wantReason: ReasonAsync},
				{at: 12, obs: queued(0, 10), want: 10, wantReason: ReasonDelay},
				// 20 s after the queue asked for 10, the down rate applies: 10 / 2.
				{at: 30.5, obs: queued(0, 10), want: 5, wantReason: ReasonStable},
			},
		},
		{
			name: "the activation scale applies to queued work at zero",
			spec: func(s *api.FunctionSpec) {
				asyncTarget(100)(s)
				s.Scale.ActivationScale = 3
			},
			steps: []step{{at: 10, obs: queued(1, 0), want: 3, wantReason: ReasonActivation}},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
}

func TestDeciderReportsAsyncDesired(t *testing.T) {
	d := NewDecider(testSpec(func(s *api.FunctionSpec) { s.Async = &api.AsyncPolicy{Target: 7} }), Start{At: t0})
	dec := d.Decide(at(1), queued(15, 0))
	assert.Equal(t, 3, dec.AsyncDesired)
	dec = d.Decide(at(2), queued(0, 3))
	assert.Zero(t, dec.AsyncDesired, "nothing queued, nothing asked for")
}

// The Scaler carries the queue's share into the observation until set
// again, and queued work is where the keep-alive windows count from.
func TestScalerCountsQueuedWork(t *testing.T) {
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	s := NewScaler(testSpec(func(s *api.FunctionSpec) {
		s.Scale.Initial = intp(0)
		s.Async = &api.AsyncPolicy{Target: 10}
	}), NewIdleTracker(DefaultHistogramRange), policy, Start{At: t0})

	res := s.Scale(at(5), 0)
	assert.Equal(t, 0, res.Decision.Desired, "nothing queued")

	s.SetQueued(25)
	res = s.Scale(at(10), 0)
	assert.Equal(t, 25, res.Observation.Queued)
	assert.Equal(t, 3, res.Decision.Desired)
	assert.Equal(t, at(10), res.IdleSince, "queued work is demand now")

	res = s.Scale(at(12), 3)
	assert.Equal(t, 25, res.Observation.Queued, "the share holds until set again")

	s.SetQueued(0)
	res = s.Scale(at(14), 3)
	assert.Zero(t, res.Observation.Queued)
	assert.Equal(t, at(12), res.IdleSince, "idle since the queue was last seen non-empty")

	s.SetQueued(-4)
	assert.Zero(t, s.Scale(at(16), 1).Observation.Queued, "a negative share is none")
}
