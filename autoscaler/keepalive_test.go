package autoscaler

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestIdleHistogramBins(t *testing.T) {
	cases := []struct {
		d        time.Duration
		bin      int
		lo, hi   time.Duration
		outOfRng bool
	}{
		{0, 0, 0, time.Second, false},
		{1500 * time.Millisecond, 1, time.Second, 2 * time.Second, false},
		{15 * time.Second, 15, 15 * time.Second, 16 * time.Second, false},
		{16 * time.Second, 16, 16 * time.Second, 18 * time.Second, false},
		{31 * time.Second, 23, 30 * time.Second, 32 * time.Second, false},
		{10 * time.Minute, 16 + 5*8 + 1, 576 * time.Second, 640 * time.Second, false},
		{4*time.Hour - time.Second, 16 + 9*8 + 6, 14336 * time.Second, 15360 * time.Second, false},
		{4 * time.Hour, -1, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.d.String(), func(t *testing.T) {
			h := NewIdleHistogram(4 * time.Hour)
			h.Add(c.d)
			if c.outOfRng {
				assert.Equal(t, uint32(1), h.OutOfRange)
				return
			}
			require.Equal(t, c.bin, binOf(c.d))
			assert.Equal(t, uint32(1), h.Bins[c.bin])
			assert.Equal(t, c.lo, binLower(c.bin))
			assert.Equal(t, c.hi, binUpper(c.bin))
			assert.True(t, c.d >= binLower(c.bin) && c.d < binUpper(c.bin))
		})
	}
	// Every bin's edges line up with its neighbours' and every duration
	// lands in the bin whose edges contain it.
	for i := range numBins - 1 {
		assert.Equal(t, binUpper(i), binLower(i+1))
		assert.Equal(t, i, binOf(binLower(i)), "bin %d lower edge %s", i, binLower(i))
		assert.Equal(t, i, binOf(binUpper(i)-time.Millisecond), "bin %d just below upper edge", i)
	}
}

func TestIdleHistogramAges(t *testing.T) {
	h := NewIdleHistogram(4 * time.Hour)
	for range histogramCap - 1 {
		h.Add(10 * time.Minute)
	}
	h.Add(5 * time.Hour)
	// The cap was reached: every count halved.
	assert.Equal(t, uint32((histogramCap-1)/2), h.Bins[binOf(10*time.Minute)])
	assert.Equal(t, uint32(0), h.OutOfRange)
	assert.Less(t, h.total(), uint32(histogramCap))
}

func TestIdleTracker(t *testing.T) {
	tr := NewIdleTracker(4 * time.Hour)
	tr.Observe(at(0), at(1))
	tr.Observe(at(1), at(2))     // adjacent interval: no idle time
	tr.Observe(at(2.5), at(3.5)) // half a second apart: reporter noise
	tr.Observe(at(63.5), at(64)) // a minute idle
	tr.Observe(at(10), at(20))   // late, overlapping: no idle time, no rewind
	tr.Observe(at(664), at(665)) // ten minutes idle
	assert.Equal(t, at(665), tr.LastEnd)
	assert.Equal(t, uint32(2), tr.Histogram.total())
	assert.Equal(t, uint32(1), tr.Histogram.Bins[binOf(time.Minute)])
	assert.Equal(t, uint32(1), tr.Histogram.Bins[binOf(10*time.Minute)])
}

func scaled(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

func histogramOf(idle ...time.Duration) *IdleHistogram {
	h := NewIdleHistogram(DefaultHistogramRange)
	for _, d := range idle {
		h.Add(d)
	}
	return &h
}

func repeat(n int, d ...time.Duration) []time.Duration {
	var out []time.Duration
	for range n {
		out = append(out, d...)
	}
	return out
}

func TestHybridHistogramPlan(t *testing.T) {
	const grace = 30 * time.Second
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	cases := []struct {
		name  string
		idle  []time.Duration
		check func(t *testing.T, p Plan)
	}{
		{
			name: "no history: fallback keeps the grace period, then a pre-created task to 10 min",
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeFewSamples, p.Mode)
				assert.Equal(t, grace, p.KeepAlive)
				assert.Equal(t, grace, p.PreCreateFrom)
				assert.Equal(t, 10*time.Minute, p.PreCreateUntil)
				assert.Zero(t, p.WarmUntil)
			},
		},
		{
			name: "idle times within grace do not count as samples",
			idle: repeat(500, 3*time.Second, 20*time.Second),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeFewSamples, p.Mode)
				assert.Equal(t, 0, p.Samples)
			},
		},
		{
			name: "periodic every 5 min: release after grace, run again from the head of the next",
			idle: append(repeat(50, 5*time.Minute), repeat(200, 5*time.Second)...),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.Equal(t, 50, p.Samples)
				assert.Equal(t, 288*time.Second, p.Head)
				assert.Equal(t, 320*time.Second, p.Tail)
				assert.Equal(t, grace, p.KeepAlive)
				// 259.2 s .. 352 s: a window under 2 min, run through.
				assert.Equal(t, scaled(288*time.Second, 0.9), p.WarmFrom)
				assert.Equal(t, scaled(320*time.Second, 1.1), p.WarmUntil)
				assert.Zero(t, p.PreCreateUntil)
				assert.Greater(t, p.CV, 2.0)
			},
		},
		{
			name: "periodic every 10 min: the window with margins is over 2 min wide, pre-create",
			idle: repeat(50, 10*time.Minute),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.Zero(t, p.WarmUntil)
				assert.Equal(t, scaled(576*time.Second, 0.9), p.PreCreateFrom)
				assert.Equal(t, scaled(640*time.Second, 1.1), p.PreCreateUntil)
			},
		},
		{
			name: "a wide window: release after grace, pre-create over the window",
			idle: repeat(20, 5*time.Minute, 8*time.Minute, 12*time.Minute),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.Equal(t, 288*time.Second, p.Head)
				assert.Equal(t, 768*time.Second, p.Tail)
				assert.Equal(t, grace, p.KeepAlive)
				assert.Zero(t, p.WarmUntil)
				assert.Equal(t, scaled(288*time.Second, 0.9), p.PreCreateFrom)
				assert.Equal(t, scaled(768*time.Second, 1.1), p.PreCreateUntil)
			},
		},
		{
			name: "short idle periods: keep running to the tail plus margin",
			idle: repeat(20, 40*time.Second, 50*time.Second, 60*time.Second, 70*time.Second),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.Equal(t, 40*time.Second, p.Head)
				assert.Equal(t, 72*time.Second, p.Tail)
				assert.Equal(t, scaled(72*time.Second, 1.1), p.KeepAlive)
				assert.Zero(t, p.WarmUntil)
				assert.Zero(t, p.PreCreateUntil)
			},
		},
		{
			name: "head and tail percentiles ignore the outer 5% and 1%",
			idle: append(append(repeat(96, 20*time.Minute), 35*time.Second, 36*time.Second, 37*time.Second),
				3*time.Hour),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.Equal(t, 100, p.Samples)
				// 3 of 100 below: the 5th percentile is still the 20 min bin.
				assert.Equal(t, 1152*time.Second, p.Head)
				// 1 of 100 above: the 99th percentile is the 20 min bin's top.
				assert.Equal(t, 1280*time.Second, p.Tail)
			},
		},
		{
			name: "idle times spread evenly: too flat to predict, fallback",
			idle: func() []time.Duration {
				var out []time.Duration
				for i := binOf(grace); i < numBins && binLower(i) < DefaultHistogramRange; i++ {
					out = append(out, repeat(3, binLower(i))...)
				}
				return out
			}(),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeFlat, p.Mode)
				assert.Less(t, p.CV, 2.0)
				assert.Equal(t, grace, p.KeepAlive)
				assert.Equal(t, 10*time.Minute, p.PreCreateUntil)
			},
		},
		{
			name: "mostly idle for longer than the range: cold after grace, no pre-warm",
			idle: append(repeat(8, 6*time.Hour), repeat(4, 10*time.Minute)...),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeOutOfBounds, p.Mode)
				assert.Equal(t, 8, p.OutOfRange)
				assert.Equal(t, grace, p.KeepAlive)
				assert.Zero(t, p.WarmUntil)
				assert.Zero(t, p.PreCreateUntil)
			},
		},
		{
			name: "a long tail is capped by the histogram range",
			idle: append(repeat(10, 3*time.Hour+50*time.Minute), repeat(190, 2*time.Hour)...),
			check: func(t *testing.T, p Plan) {
				assert.Equal(t, ModeHistogram, p.Mode)
				assert.LessOrEqual(t, p.Tail, 15360*time.Second)
				assert.Equal(t, grace, p.KeepAlive)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, policy.Plan(histogramOf(c.idle...), grace))
		})
	}
}

func TestHybridConfig(t *testing.T) {
	_, err := NewHybridHistogram(HybridConfig{HeadPercentile: 99, TailPercentile: 5})
	assert.Error(t, err)
	_, err = NewHybridHistogram(HybridConfig{Margin: 1})
	assert.Error(t, err)
	_, err = NewHybridHistogram(HybridConfig{Range: 100 * time.Hour})
	assert.Error(t, err)
	p, err := NewHybridHistogram(HybridConfig{FallbackKeepAlive: 5 * time.Minute, FallbackPreWarm: time.Minute})
	require.NoError(t, err)
	plan := p.Plan(histogramOf(), 30*time.Second)
	assert.Equal(t, 5*time.Minute, plan.KeepAlive)
	assert.Zero(t, plan.PreCreateUntil, "a pre-warm ending before the keep-alive holds nothing")
	// Grace is a floor of every keep-alive.
	plan = p.Plan(histogramOf(), 10*time.Minute)
	assert.Equal(t, 10*time.Minute, plan.KeepAlive)
}

func TestFixedKeepAlive(t *testing.T) {
	p := FixedKeepAlive{KeepAlive: 10 * time.Minute}.Plan(histogramOf(repeat(100, time.Hour)...), 30*time.Second)
	assert.Equal(t, Plan{Mode: ModeFixed, KeepAlive: 10 * time.Minute}, p)
	assert.Equal(t, 30*time.Second, FixedKeepAlive{}.Plan(nil, 30*time.Second).KeepAlive)
}

func TestPlanWindows(t *testing.T) {
	p := Plan{KeepAlive: 30 * time.Second, PreCreateFrom: 9 * time.Minute, PreCreateUntil: 11 * time.Minute,
		WarmFrom: 10 * time.Minute, WarmUntil: 10*time.Minute + 30*time.Second}
	idle := at(100)
	assert.Equal(t, at(130), p.KeepWarmUntil(idle))
	cases := []struct {
		now       float64
		pre, warm bool
	}{{100, false, false}, {639, false, false}, {640, true, false}, {700, true, true}, {729, true, true}, {730, true, false}, {759, true, false}, {760, false, false}}
	for _, c := range cases {
		assert.Equal(t, c.pre, p.PreCreate(idle, at(c.now)), "pre-create at %g", c.now)
		assert.Equal(t, c.warm, p.Warm(idle, at(c.now)), "warm at %g", c.now)
	}
	assert.False(t, p.PreCreate(time.Time{}, at(640)), "never idle, never pre-created")
	assert.False(t, p.Warm(time.Time{}, at(700)), "never idle, never pre-warmed")
}

// TestScalerLearnsAPeriodicFunction drives a Scaler the way the Runner does
// with a function called once every five minutes: it first keeps the
// fallback windows, then learns the period, releases the replica after grace
// and starts one again shortly before the next call.
func TestScalerLearnsAPeriodicFunction(t *testing.T) {
	const period = 300
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	spec := testSpec(func(s *api.FunctionSpec) { s.Scale.Initial = intp(0) })
	tracker := NewIdleTracker(DefaultHistogramRange)
	s := NewScaler(spec, tracker, policy, Start{At: t0})
	ready := 0
	var first, last Result
	desiredAt := map[int]int{} // seconds into the period -> desired, for the last period
	preAt := map[int]int{}
	for sec := 0; sec <= 13*period; sec += 2 {
		now := at(float64(sec))
		if sec%period == 0 {
			// A 1 s request, through the activator when cold.
			if ready == 0 {
				s.Poke(now)
			}
			s.Record(api.RevisionStat{Revision: "fn-00001", Reporter: "r", Time: now.Add(time.Second),
				Interval: api.D(time.Second), AvgConcurrency: 1, MaxConcurrency: 1, Requests: 1})
		}
		last = s.Scale(now, ready)
		if sec == 100 {
			first = last
		}
		ready = last.Decision.Desired
		if sec >= 12*period {
			desiredAt[sec-12*period] = last.Decision.Desired
			preAt[sec-12*period] = last.PreCreated
		}
	}
	// Before it has ten idle times to go by, the fallback: the grace
	// period, then a pre-created task.
	assert.Equal(t, ModeFewSamples, first.Plan.Mode)
	assert.Equal(t, 0, first.Decision.Desired)
	assert.Equal(t, 1, first.PreCreated)
	assert.Equal(t, ModeHistogram, last.Plan.Mode)
	assert.Equal(t, 30*time.Second, last.Plan.KeepAlive)
	// Warm for the grace period after the call, then cold ...
	assert.Equal(t, 1, desiredAt[20])
	assert.Equal(t, 0, desiredAt[40])
	assert.Equal(t, 0, preAt[40])
	// ... and running again from 90% of the head of the idle times (the
	// 288 s bin: 259 s after the call ended) until the next call.
	assert.Equal(t, 0, desiredAt[250])
	assert.Equal(t, 1, desiredAt[262])
	assert.Equal(t, 1, desiredAt[298])
	assert.Equal(t, 0, preAt[280], "a running replica needs no pre-created task")
}

// TestScalerPreCreatesOverAWideWindow: idle times spread over minutes get a
// pre-created task, not a running replica, between head and tail.
func TestScalerPreCreatesOverAWideWindow(t *testing.T) {
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	spec := testSpec(func(s *api.FunctionSpec) { s.Scale.Initial = intp(0) })
	tracker := NewIdleTracker(DefaultHistogramRange)
	for range 20 {
		tracker.Histogram.Add(5 * time.Minute)
		tracker.Histogram.Add(12 * time.Minute)
	}
	s := NewScaler(spec, tracker, policy, Start{At: t0})
	s.Record(api.RevisionStat{Revision: "fn-00001", Reporter: "r", Time: at(1), Interval: api.D(time.Second), AvgConcurrency: 1, Requests: 1})
	cases := []struct {
		sec     float64
		desired int
		pre     int
	}{
		{sec: 2, desired: 1},
		{sec: 30, desired: 1},
		{sec: 31, desired: 0},
		{sec: 200, desired: 0},
		{sec: 1 + 0.9*288 + 1, desired: 0, pre: 1},
		{sec: 1 + 1.1*768 - 1, desired: 0, pre: 1},
		{sec: 1 + 1.1*768 + 1, desired: 0},
	}
	ready := 0
	for _, c := range cases {
		res := s.Scale(at(c.sec), ready)
		assert.Equal(t, c.desired, res.Decision.Desired, "desired at %g: %+v", c.sec, res.Plan)
		assert.Equal(t, c.pre, res.PreCreated, "pre-created at %g", c.sec)
		ready = res.Decision.Desired
	}
}

// TestScalerPreCreatesForARevisionDeployedWarmButNeverCalled: its replica
// goes after the grace period, and a pre-created task holds its place for
// the fallback pre-warm horizon after the deployment, so the first call
// does not pay for a full container create. A revision deployed at zero,
// or resumed by a restarted autoscaler, gets none.
func TestScalerPreCreatesForARevisionDeployedWarmButNeverCalled(t *testing.T) {
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	tests := []struct {
		name    string
		initial int
		resumed bool
		pre     map[float64]int // seconds after deployment → pre-created tasks
	}{
		{name: "deployed warm", initial: 1, pre: map[float64]int{10: 0, 40: 1, 599: 1, 601: 0}},
		{name: "deployed at zero", initial: 0, pre: map[float64]int{10: 0, 40: 0, 599: 0}},
		{name: "resumed after an autoscaler restart", initial: 1, resumed: true, pre: map[float64]int{40: 0, 599: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(func(s *api.FunctionSpec) { s.Scale.Initial = intp(tt.initial) })
			s := NewScaler(spec, NewIdleTracker(DefaultHistogramRange), policy, Start{At: t0, Resumed: tt.resumed})
			ready := 0
			secs := []float64{}
			for sec := range tt.pre {
				secs = append(secs, sec)
			}
			slices.Sort(secs)
			for _, sec := range secs {
				res := s.Scale(at(sec), ready)
				ready = res.Decision.Desired
				assert.Equal(t, tt.pre[sec], res.PreCreated, "pre-created tasks at %gs (desired %d)", sec, res.Decision.Desired)
				if res.PreCreated > 0 {
					assert.Zero(t, res.Decision.Desired, "a pre-created task only while no replica runs")
				}
			}
		})
	}
}

// TestScalerHoldsNoWarmTierForAnUnroutedRevision: the function's idle-time
// history predicts its next request, but that request goes to a routed
// revision. An unrouted one is neither kept warm by the plan, nor
// pre-warmed, nor given a pre-created task: it goes to zero a grace period
// after its last demand and stays there.
func TestScalerHoldsNoWarmTierForAnUnroutedRevision(t *testing.T) {
	policy, err := NewHybridHistogram(HybridConfig{})
	require.NoError(t, err)
	tests := []struct {
		name string
		idle []time.Duration
		// What a routed revision gets, by seconds after t0; the last
		// demand ends at 1 s.
		routed map[float64]Result
	}{
		{
			name:   "fallback: a pre-created task after grace",
			routed: map[float64]Result{40: {PreCreated: 1}, 300: {PreCreated: 1}},
		},
		{
			name: "short idle periods: kept running to the tail",
			idle: repeat(20, 40*time.Second, 50*time.Second, 60*time.Second, 70*time.Second),
			routed: map[float64]Result{40: {Decision: Decision{Desired: 1}}, 80: {Decision: Decision{Desired: 1}},
				100: {}},
		},
		{
			name:   "periodic: started again at the head of the next idle period",
			idle:   append(repeat(50, 5*time.Minute), repeat(200, 5*time.Second)...),
			routed: map[float64]Result{40: {}, 262: {Decision: Decision{Desired: 1}}},
		},
		{
			name:   "wide window: a pre-created task over it",
			idle:   repeat(20, 5*time.Minute, 12*time.Minute),
			routed: map[float64]Result{40: {}, 1 + 0.9*288 + 1: {PreCreated: 1}},
		},
	}
	for _, tt := range tests {
		for _, routed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/routed=%t", tt.name, routed), func(t *testing.T) {
				tracker := NewIdleTracker(DefaultHistogramRange)
				for _, d := range tt.idle {
					tracker.Histogram.Add(d)
				}
				s := NewScaler(testSpec(func(s *api.FunctionSpec) { s.Scale.Initial = intp(0) }), tracker, policy, Start{At: t0})
				s.SetRouted(routed)
				s.Record(api.RevisionStat{Revision: "fn-00001", Reporter: "r", Time: at(1), Interval: api.D(time.Second), AvgConcurrency: 1, Requests: 1})
				res := s.Scale(at(2), 0)
				require.Equal(t, 1, res.Decision.Desired)
				assert.Equal(t, routed, !res.KeepWarmUntil.IsZero(), "a keep-alive only while routed")
				ready := 1
				for _, sec := range slices.Sorted(maps.Keys(tt.routed)) {
					want := tt.routed[sec]
					if !routed {
						want = Result{}
					}
					res := s.Scale(at(sec), ready)
					ready = res.Decision.Desired
					assert.Equal(t, want.Decision.Desired, res.Decision.Desired, "desired at %gs (%s)", sec, res.Plan.Mode)
					assert.Equal(t, want.PreCreated, res.PreCreated, "pre-created at %gs (%s)", sec, res.Plan.Mode)
				}
			})
		}
	}
}
