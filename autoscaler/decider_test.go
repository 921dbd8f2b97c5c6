package autoscaler

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func intp(v int) *int { return &v }

// testSpec returns a defaulted spec after applying mod to the raw one.
func testSpec(mod func(*api.FunctionSpec)) api.FunctionSpec {
	s := api.FunctionSpec{Image: "img"}
	if mod != nil {
		mod(&s)
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s
}

// step is one decision in a scripted scenario: the observation at a time
// and what the decision must be. wantReason "" skips the reason check.
type step struct {
	at         float64
	obs        Observation
	want       int
	wantPanic  bool
	wantReason string
}

type scenario struct {
	name  string
	spec  func(*api.FunctionSpec)
	start Start
	steps []step
}

func runScenario(t *testing.T, sc scenario) {
	t.Helper()
	start := sc.start
	if start.At.IsZero() {
		start.At = t0
	}
	d := NewDecider(testSpec(sc.spec), start)
	for i, st := range sc.steps {
		dec := d.Decide(at(st.at), st.obs)
		msg := fmt.Sprintf("step %d at %gs: %+v", i, st.at, dec)
		assert.Equal(t, st.want, dec.Desired, msg)
		assert.Equal(t, st.wantPanic, dec.Panic, msg)
		if st.wantReason != "" {
			assert.Equal(t, st.wantReason, dec.Reason, msg)
		}
	}
}

// conc is an observation of a steady concurrency with ready replicas and
// demand seen just now.
func conc(stable, panic float64, ready int, lastDemand float64) Observation {
	return Observation{Stable: stable, Panic: panic, Ready: ready, LastDemand: at(lastDemand)}
}

func TestDeciderRules(t *testing.T) {
	noInitial := func(s *api.FunctionSpec) { s.Scale.Initial = intp(0) }
	scenarios := []scenario{
		{
			name: "stable: ceil(observed / (100 x 0.7))",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(70, 70, 1, 10), want: 1, wantReason: ReasonStable},
				{at: 12, obs: conc(71, 71, 2, 12), want: 2, wantReason: ReasonStable},
				{at: 14, obs: conc(140, 100, 2, 14), want: 2, wantReason: ReasonStable},
				{at: 16, obs: conc(350, 350, 4, 16), want: 5, wantReason: ReasonStable},
			},
		},
		{
			name: "target capped by the hard limit before utilization",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Concurrency.Target = 100
				s.Concurrency.HardLimit = 10
			},
			steps: []step{
				// target = min(100, 10) x 0.7 = 7
				{at: 10, obs: conc(50, 50, 8, 10), want: 8},
				{at: 12, obs: conc(49, 49, 8, 12), want: 7},
			},
		},
		{
			name: "rps mode: target 200 x 0.7 requests per second",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Concurrency.Metric = api.MetricRPS
			},
			steps: []step{
				{at: 10, obs: conc(140, 140, 1, 10), want: 1},
				{at: 12, obs: conc(700, 700, 5, 12), want: 5},
				{at: 14, obs: conc(701, 701, 5, 14), want: 6},
			},
		},
		{
			name: "rps mode ignores the concurrency hard limit",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Concurrency.Metric = api.MetricRPS
				s.Concurrency.HardLimit = 1
			},
			steps: []step{{at: 10, obs: conc(280, 280, 2, 10), want: 2}},
		},
		{
			name: "max scale-up rate bounds growth per decision",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.MaxScaleUpRate = 2
				s.Scale.PanicThresholdPercent = 1000 // keep panic out of it
			},
			steps: []step{
				{at: 10, obs: conc(700, 0, 1, 10), want: 2},
				{at: 12, obs: conc(700, 0, 2, 12), want: 4},
				{at: 14, obs: conc(700, 0, 4, 14), want: 8},
				{at: 16, obs: conc(700, 0, 8, 16), want: 10},
				// At zero the rate applies to one replica.
				{at: 18, obs: conc(700, 0, 0, 18), want: 2},
			},
		},
		{
			name: "max scale-up rate still grows by one when the rate rounds down",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.MaxScaleUpRate = 1.1
				s.Scale.PanicThresholdPercent = 1000
			},
			steps: []step{
				// ceil(1.1 x 2) = 3, not 2.
				{at: 10, obs: conc(700, 0, 2, 10), want: 3},
			},
		},
		{
			name: "max scale-down rate halves at most per decision",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(10, 10, 16, 10), want: 8},
				{at: 12, obs: conc(10, 10, 8, 12), want: 4},
				{at: 14, obs: conc(10, 10, 4, 14), want: 2},
				{at: 16, obs: conc(10, 10, 2, 16), want: 1},
				{at: 18, obs: conc(10, 10, 1, 18), want: 1},
			},
		},
		{
			name: "panic: entered at 200% of ready, ratchets up only, ends a stable window after the last crossing",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(50, 50, 1, 10), want: 1, wantPanic: false},
				// panic window wants 3 >= 2 x 1 ready: panic, take max(stable, panic).
				{at: 12, obs: conc(60, 210, 1, 12), want: 3, wantPanic: true, wantReason: ReasonPanic},
				// still over: 8 >= 2 x 3
				{at: 14, obs: conc(100, 560, 3, 14), want: 8, wantPanic: true, wantReason: ReasonPanic},
				// below threshold, lower demand: the count does not go down.
				{at: 16, obs: conc(100, 100, 8, 16), want: 8, wantPanic: true, wantReason: ReasonPanic},
				// 60 s after the last crossing (at 14) panic still holds ...
				{at: 74, obs: conc(70, 70, 8, 74), want: 8, wantPanic: true},
				// ... and it ends once a full stable window has passed.
				{at: 74.5, obs: conc(70, 70, 8, 74.5), want: 4, wantPanic: false, wantReason: ReasonStable},
			},
		},
		{
			name: "panic extends while the panic window stays over the threshold",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(10, 150, 1, 10), want: 3, wantPanic: true},
				{at: 50, obs: conc(10, 150, 1, 50), want: 3, wantPanic: true},
				{at: 100, obs: conc(10, 10, 3, 100), want: 3, wantPanic: true},
				{at: 111, obs: conc(10, 10, 3, 111), want: 1, wantPanic: false},
			},
		},
		{
			name: "panic keeps the stable count when it is higher",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(700, 150, 1, 10), want: 10, wantPanic: true},
			},
		},
		{
			name:  "a restarted decider holds the ready replicas in panic mode",
			spec:  noInitial,
			start: Start{Ready: 5, Resumed: true},
			steps: []step{
				{at: 2, obs: conc(0, 0, 5, 0), want: 5, wantPanic: true},
				// Out of panic, the down rate still applies: 5 / 2.
				{at: 61, obs: conc(7, 7, 5, 61), want: 2, wantPanic: false},
			},
		},
		{
			name: "activation scale from zero on a poke, and as a floor under traffic",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.ActivationScale = 3
			},
			steps: []step{
				{at: 10, obs: Observation{Poked: true}, want: 3, wantReason: ReasonActivation},
				{at: 12, obs: conc(1, 1, 3, 12), want: 3},
				{at: 14, obs: conc(350, 350, 3, 14), want: 5},
			},
		},
		{
			name: "buffered requests at zero size the first decision",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Concurrency.Target = 10 // target 7
			},
			steps: []step{
				{at: 10, obs: Observation{Buffered: 50, Poked: true}, want: 8, wantPanic: true},
			},
		},
		{
			name: "initial scale is a floor until reached once",
			spec: func(s *api.FunctionSpec) { s.Scale.Initial = intp(3) },
			steps: []step{
				{at: 0, obs: Observation{}, want: 3, wantReason: ReasonInitial},
				{at: 40, obs: Observation{Ready: 2}, want: 3, wantReason: ReasonInitial},
				// Reached: from here the normal rules apply; no demand since
				// birth and the grace is over, so straight to zero.
				{at: 42, obs: Observation{Ready: 3}, want: 0, wantReason: ReasonToZero},
				{at: 44, obs: Observation{Ready: 0}, want: 0},
			},
		},
		{
			name: "default initial scale 1 is kept for the grace period after birth",
			steps: []step{
				{at: 0, obs: Observation{}, want: 1, wantReason: ReasonInitial},
				{at: 2, obs: Observation{Ready: 1}, want: 1, wantReason: ReasonKeepWarm},
				{at: 29, obs: Observation{Ready: 1}, want: 1},
				{at: 30, obs: Observation{Ready: 1}, want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "initial scale 0 stays at zero without demand",
			spec: noInitial,
			steps: []step{
				{at: 0, obs: Observation{}, want: 0},
				{at: 10, obs: Observation{}, want: 0},
			},
		},
		{
			name:  "a resumed revision does not apply its initial scale again",
			spec:  func(s *api.FunctionSpec) { s.Scale.Initial = intp(5) },
			start: Start{Resumed: true},
			steps: []step{{at: 0, obs: Observation{}, want: 0}},
		},
		{
			name: "min and max scale bound everything",
			spec: func(s *api.FunctionSpec) {
				s.Scale.Min = 2
				s.Scale.Max = 4
				s.Scale.Initial = intp(0)
			},
			steps: []step{
				{at: 10, obs: conc(0, 0, 0, 0), want: 2, wantReason: ReasonMin},
				{at: 12, obs: conc(700, 700, 2, 12), want: 4, wantPanic: true, wantReason: ReasonMax},
				{at: 500, obs: conc(0, 0, 2, 12), want: 2, wantReason: ReasonMin},
			},
		},
		{
			// Bug 4: as in Knative, min scale applies only while a route
			// (a percent or a tag) reaches the revision. The grace runs
			// from when the routes left it.
			name: "an unrouted revision ignores min scale and goes to zero a grace after the routes left",
			spec: func(s *api.FunctionSpec) { s.Scale.Min = 1 },
			steps: []step{
				{at: 0, obs: Observation{}, want: 1, wantReason: ReasonMin},
				{at: 2, obs: Observation{Ready: 1}, want: 1, wantReason: ReasonMin},
				{at: 500, obs: Observation{Ready: 1}, want: 1, wantReason: ReasonMin},
				{at: 502, obs: Observation{Ready: 1, Unrouted: true}, want: 1, wantReason: ReasonKeepWarm},
				{at: 531, obs: Observation{Ready: 1, Unrouted: true}, want: 1, wantReason: ReasonKeepWarm},
				{at: 532, obs: Observation{Ready: 1, Unrouted: true}, want: 0, wantReason: ReasonToZero},
				{at: 600, obs: Observation{Unrouted: true}, want: 0},
				// Routed again (a rollback): min scale holds it once more.
				{at: 700, obs: Observation{}, want: 1, wantReason: ReasonMin},
			},
		},
		{
			name: "an unrouted revision still scales for what reaches it, and its grace runs from that",
			spec: func(s *api.FunctionSpec) { s.Scale.Min = 2 },
			steps: []step{
				{at: 10, obs: Observation{Stable: 100, Panic: 100, Ready: 2, LastDemand: at(10), Unrouted: true}, want: 2, wantReason: ReasonStable},
				{at: 39, obs: Observation{Ready: 2, LastDemand: at(10), Unrouted: true}, want: 1},
				{at: 40, obs: Observation{Ready: 1, LastDemand: at(10), Unrouted: true}, want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "a new revision no route reaches yet gets its initial scale, as in Knative, but not its min",
			spec: func(s *api.FunctionSpec) {
				s.Scale.Min = 1
				s.Scale.Initial = intp(2)
			},
			steps: []step{
				{at: 0, obs: Observation{Unrouted: true}, want: 2, wantReason: ReasonInitial},
				{at: 1, obs: Observation{Ready: 1, Unrouted: true}, want: 2, wantReason: ReasonInitial},
				{at: 2, obs: Observation{Ready: 2, Unrouted: true}, want: 1},
				{at: 30, obs: Observation{Ready: 1, Unrouted: true}, want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "an unrouted revision that never reached its initial scale (a crash loop) lets it go after grace",
			steps: []step{
				{at: 0, obs: Observation{}, want: 1, wantReason: ReasonInitial},
				{at: 100, obs: Observation{}, want: 1, wantReason: ReasonInitial},
				{at: 102, obs: Observation{Unrouted: true}, want: 1, wantReason: ReasonInitial},
				{at: 131, obs: Observation{Unrouted: true}, want: 1, wantReason: ReasonInitial},
				{at: 132, obs: Observation{Unrouted: true}, want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "grace: zero only after 30 s without demand",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(5, 5, 1, 10), want: 1},
				// The stable window still averages demand, but none arrived
				// for 29 s: keep one.
				{at: 39, obs: conc(3, 0, 1, 10), want: 1, wantReason: ReasonStable},
				{at: 40, obs: conc(2.5, 0, 1, 10), want: 0, wantReason: ReasonToZero},
				{at: 42, obs: conc(2, 0, 0, 10), want: 0},
			},
		},
		{
			name: "grace holds one replica while the windows read zero",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(1, 1, 1, 10), want: 1},
				{at: 30, obs: conc(0, 0, 1, 10), want: 1, wantReason: ReasonKeepWarm},
				{at: 40, obs: conc(0, 0, 1, 10), want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "scale to zero goes straight down, past the down rate and out of panic",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(100, 700, 2, 10), want: 10, wantPanic: true},
				{at: 40, obs: conc(50, 0, 10, 10), want: 0, wantPanic: false, wantReason: ReasonToZero},
			},
		},
		{
			name: "no scale to zero while a request is buffered",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(1, 1, 1, 10), want: 1},
				{at: 100, obs: Observation{Ready: 1, Buffered: 1, LastDemand: at(10)}, want: 1},
				{at: 129, obs: Observation{Ready: 1, LastDemand: at(100)}, want: 1, wantReason: ReasonKeepWarm},
				{at: 130, obs: Observation{Ready: 1, LastDemand: at(100)}, want: 0},
			},
		},
		{
			name: "retention longer than grace keeps the last replica",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.ScaleToZeroRetention = api.D(90 * time.Second)
			},
			steps: []step{
				{at: 10, obs: conc(1, 1, 1, 10), want: 1},
				{at: 60, obs: conc(0, 0, 1, 10), want: 1, wantReason: ReasonKeepWarm},
				{at: 99, obs: conc(0, 0, 1, 10), want: 1},
				{at: 100, obs: conc(0, 0, 1, 10), want: 0},
			},
		},
		{
			name: "keep-alive from the policy delays zero but never wakes a cold revision",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: conc(1, 1, 1, 10), want: 1},
				{at: 100, obs: Observation{Ready: 1, LastDemand: at(10), KeepWarmUntil: at(200)}, want: 1, wantReason: ReasonKeepWarm},
				{at: 200, obs: Observation{Ready: 1, LastDemand: at(10), KeepWarmUntil: at(200)}, want: 0},
				{at: 202, obs: Observation{Ready: 0, LastDemand: at(10), KeepWarmUntil: at(500)}, want: 0},
			},
		},
		{
			name: "pre-warm from the policy wakes a revision at zero, and only then",
			spec: noInitial,
			steps: []step{
				{at: 98, obs: Observation{}, want: 0},
				{at: 100, obs: Observation{PreWarm: true}, want: 1, wantReason: ReasonPreWarm},
				{at: 102, obs: Observation{PreWarm: true, Ready: 1}, want: 1, wantReason: ReasonPreWarm},
				// The window ends with no demand: straight back to zero.
				{at: 104, obs: Observation{Ready: 1}, want: 0, wantReason: ReasonToZero},
			},
		},
		{
			name: "pre-warm does not hold a revision with demand to one replica",
			spec: noInitial,
			steps: []step{
				{at: 10, obs: Observation{PreWarm: true, Stable: 200, Panic: 200, Ready: 3, LastDemand: at(10)}, want: 3},
			},
		},
		{
			name: "scale-down delay: the maximum over the delay window",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.ScaleDownDelay = api.D(20 * time.Second)
			},
			steps: []step{
				{at: 10, obs: conc(350, 350, 5, 10), want: 5},
				{at: 12, obs: conc(70, 70, 5, 12), want: 5, wantReason: ReasonDelay},
				{at: 29, obs: conc(70, 70, 5, 29), want: 5, wantReason: ReasonDelay},
				// 20 s after the 5 was decided it leaves the window; what is
				// left is 2 (1 wanted, but the down rate from 5 allows 2).
				{at: 30, obs: conc(70, 70, 5, 30), want: 2, wantReason: ReasonStable},
				{at: 32, obs: conc(140, 140, 2, 32), want: 2},
				// Scale-up is never delayed.
				{at: 34, obs: conc(490, 140, 2, 34), want: 7},
			},
		},
		{
			name: "scale-down delay also delays scale to zero",
			spec: func(s *api.FunctionSpec) {
				noInitial(s)
				s.Scale.ScaleDownDelay = api.D(60 * time.Second)
			},
			steps: []step{
				{at: 10, obs: conc(1, 1, 1, 10), want: 1},
				{at: 38, obs: conc(0, 0, 1, 10), want: 1, wantReason: ReasonKeepWarm},
				// Grace is over at 40, but the 1 decided at 38 is held for
				// the 60 s delay window.
				{at: 40, obs: conc(0, 0, 1, 10), want: 1, wantReason: ReasonDelay},
				{at: 97, obs: conc(0, 0, 1, 10), want: 1, wantReason: ReasonDelay},
				{at: 98, obs: conc(0, 0, 1, 10), want: 0, wantReason: ReasonToZero},
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
}

func TestWindows(t *testing.T) {
	cases := []struct {
		stable      time.Duration
		percent     float64
		wantStable  time.Duration
		wantPanicky time.Duration
	}{
		{60 * time.Second, 10, 60 * time.Second, 6 * time.Second},
		{6 * time.Second, 10, 6 * time.Second, time.Second}, // 0.6 s floored to 1 s
		{6 * time.Second, 1, 6 * time.Second, time.Second},  // 60 ms floored to 1 s
		{100 * time.Second, 25, 100 * time.Second, 25 * time.Second},
	}
	for _, c := range cases {
		s := testSpec(func(s *api.FunctionSpec) {
			s.Scale.StableWindow = api.D(c.stable)
			s.Scale.PanicWindowPercent = c.percent
		})
		st, p := Windows(s.Scale)
		assert.Equal(t, c.wantStable, st)
		assert.Equal(t, c.wantPanicky, p)
	}
}

func TestTarget(t *testing.T) {
	cases := []struct {
		name string
		c    api.Concurrency
		want float64
	}{
		{"defaults", api.Concurrency{}, 70},
		{"hard limit above target", api.Concurrency{HardLimit: 500}, 70},
		{"hard limit below target", api.Concurrency{HardLimit: 10}, 7},
		{"utilization 1", api.Concurrency{Target: 10, TargetUtilization: 1}, 10},
		{"rps", api.Concurrency{Metric: api.MetricRPS}, 140},
		{"rps custom", api.Concurrency{Metric: api.MetricRPS, RPSTarget: 50, TargetUtilization: 0.5}, 25},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := testSpec(func(s *api.FunctionSpec) { s.Concurrency = c.c })
			assert.InDelta(t, c.want, Target(spec.Concurrency), 1e-9)
		})
	}
}

func TestDeciderIsDeterministic(t *testing.T) {
	spec := testSpec(nil)
	run := func() []Decision {
		d := NewDecider(spec, Start{At: t0})
		var out []Decision
		for i := range 200 {
			v := float64((i * 37) % 400)
			out = append(out, d.Decide(at(float64(2*i)), conc(v, float64((i*91)%700), (i*13)%9, float64(2*i))))
		}
		return out
	}
	require.Equal(t, run(), run())
}
