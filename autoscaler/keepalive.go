package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The idle-time histogram has log-linear bins, as HDR histograms do: one
// second wide below 16 s, then every power of two split into eight. That is
// 12.5% resolution, inside the policy's 10% margins, over 1 s .. 4 h in 96
// counters (under 400 bytes per function), where the paper's one-minute bins
// over four hours would need 240 and could not see the seconds that matter
// next to a 30 s grace period.
const (
	linearBins  = 16 // [0,1) .. [15,16) seconds
	subBins     = 8  // per power of two from 16 s up
	firstOctave = 4  // 2^4 = 16 s
	octaves     = 10 // 16 s .. 16384 s, past the 4 h range
	numBins     = linearBins + subBins*octaves
)

// histogramCap bounds the samples a histogram holds: past it every count is
// halved, so old behaviour fades and a function whose pattern changes is
// re-learnt within a few hundred idle periods.
const histogramCap = 2048

// IdleHistogram counts a function's idle times: the gaps between one burst
// of demand ending and the next beginning. It is a value type with no
// pointers, cheap to copy into a status snapshot.
type IdleHistogram struct {
	Bins [numBins]uint32 `json:"bins"`
	// OutOfRange counts idle times longer than the histogram's range.
	OutOfRange uint32 `json:"outOfRange"`
	// Range is the longest idle time the bins hold; set by NewIdleHistogram.
	Range time.Duration `json:"range"`
	// Version counts changes, so a plan made from the histogram can be reused
	// until it changes.
	Version uint64 `json:"version"`
}

// NewIdleHistogram returns an empty histogram over (0, rng]; rng is capped at
// what the bins can hold (about 4.5 h).
func NewIdleHistogram(rng time.Duration) IdleHistogram {
	return IdleHistogram{Range: min(rng, binLower(numBins))}
}

// Add records one idle time.
func (h *IdleHistogram) Add(d time.Duration) {
	if d < 0 {
		return
	}
	h.Version++
	if d >= h.Range {
		h.OutOfRange++
	} else {
		h.Bins[binOf(d)]++
	}
	if h.total() >= histogramCap {
		for i := range h.Bins {
			h.Bins[i] /= 2
		}
		h.OutOfRange /= 2
	}
}

func (h *IdleHistogram) total() uint32 {
	n := h.OutOfRange
	for _, c := range h.Bins {
		n += c
	}
	return n
}

func binOf(d time.Duration) int {
	s := d.Seconds()
	if s < linearBins {
		return int(s)
	}
	k := int(math.Floor(math.Log2(s)))
	sub := int((s/math.Exp2(float64(k)) - 1) * subBins)
	b := linearBins + (k-firstOctave)*subBins + min(sub, subBins-1)
	return min(b, numBins-1)
}

// binEdges[i] is the lower edge of bin i; binEdges[numBins] ends the last.
// A table, because planning reads the edges on every decision.
var binEdges = func() (e [numBins + 1]time.Duration) {
	for i := range e {
		if i < linearBins {
			e[i] = time.Duration(i) * time.Second
			continue
		}
		k := firstOctave + (i-linearBins)/subBins
		sub := (i - linearBins) % subBins
		base := math.Exp2(float64(k))
		e[i] = time.Duration((base + base*float64(sub)/subBins) * float64(time.Second))
	}
	return e
}()

// binLower is the lower edge of bin i (i may be numBins, the end).
func binLower(i int) time.Duration { return binEdges[i] }

func binUpper(i int) time.Duration { return binLower(i + 1) }

// IdleTracker turns a function's demand into idle times. Feed it every
// interval that showed demand, from any revision of the function.
type IdleTracker struct {
	// LastEnd is the end of the newest demand seen.
	LastEnd   time.Time     `json:"lastEnd"`
	Histogram IdleHistogram `json:"histogram"`
}

// minIdle is the shortest gap counted as idle: reporters work in one-second
// intervals, so a shorter gap is just two neighbouring intervals.
const minIdle = 2 * time.Second

// NewIdleTracker returns a tracker whose histogram covers rng.
func NewIdleTracker(rng time.Duration) *IdleTracker {
	return &IdleTracker{Histogram: NewIdleHistogram(rng)}
}

// Observe records demand over [start, end]. When it begins at least minIdle
// after the previous demand ended, the gap is an idle time.
func (t *IdleTracker) Observe(start, end time.Time) {
	if !t.LastEnd.IsZero() && start.Sub(t.LastEnd) >= minIdle {
		t.Histogram.Add(start.Sub(t.LastEnd))
	}
	if end.After(t.LastEnd) {
		t.LastEnd = end
	}
}

// Plan modes, reported in Plan.Mode.
const (
	ModeHistogram   = "histogram"    // head and tail of the idle times set the windows
	ModeFewSamples  = "few-samples"  // not enough idle times yet: fallback
	ModeFlat        = "flat"         // idle times too spread to predict (low CV): fallback
	ModeOutOfBounds = "out-of-range" // most idle times are longer than the range
	ModeFixed       = "fixed"        // a fixed keep-alive, no histogram
)

// Plan is what the keep-alive policy decided for one function, with the
// inputs it decided from, for status. Durations count from the moment the
// revision went idle (its last demand). It has three tiers: a replica kept
// running after the last demand, a replica started again ahead of a
// predicted request, and a pre-created task (container and task created,
// process not started) held over a predicted window too wide to run through.
type Plan struct {
	Mode string `json:"mode"`
	// Samples is the number of idle times beyond the grace period, the only
	// ones a keep-alive decision can change; OutOfRange counts those beyond
	// the histogram's range; CV is the coefficient of variation of the bin
	// counts beyond grace.
	Samples    int     `json:"samples"`
	OutOfRange int     `json:"outOfRange"`
	CV         float64 `json:"cv"`
	// Head and Tail are the head and tail percentiles of those idle times.
	Head time.Duration `json:"head"`
	Tail time.Duration `json:"tail"`
	// KeepAlive is how long a replica keeps running after the last demand.
	KeepAlive time.Duration `json:"keepAlive"`
	// WarmFrom and WarmUntil bound when a replica runs ahead of a predicted
	// request although there is no demand; an empty window runs none.
	WarmFrom  time.Duration `json:"warmFrom"`
	WarmUntil time.Duration `json:"warmUntil"`
	// PreCreateFrom and PreCreateUntil bound when a pre-created task is held
	// while the revision has no replica; an empty window holds none.
	PreCreateFrom  time.Duration `json:"preCreateFrom"`
	PreCreateUntil time.Duration `json:"preCreateUntil"`
}

// KeepWarmUntil is when the plan lets a revision idle since idleSince go to zero.
func (p Plan) KeepWarmUntil(idleSince time.Time) time.Time { return idleSince.Add(p.KeepAlive) }

// Warm reports whether a revision idle since idleSince should run a replica
// at now in anticipation of a request.
func (p Plan) Warm(idleSince, now time.Time) bool {
	return inWindow(idleSince, now, p.WarmFrom, p.WarmUntil)
}

// PreCreate reports whether a revision idle since idleSince should hold a
// pre-created task at now.
func (p Plan) PreCreate(idleSince, now time.Time) bool {
	return inWindow(idleSince, now, p.PreCreateFrom, p.PreCreateUntil)
}

func inWindow(idleSince, now time.Time, from, until time.Duration) bool {
	if until <= from || idleSince.IsZero() {
		return false
	}
	idle := now.Sub(idleSince)
	return idle >= from && idle < until
}

// KeepAlivePolicy plans how long a function stays warm from its idle-time
// history. grace is the revision's scale-to-zero grace period: demand within
// it never finds the revision cold, so only longer idle times matter.
type KeepAlivePolicy interface {
	Plan(h *IdleHistogram, grace time.Duration) Plan
}

// FixedKeepAlive keeps every revision warm for KeepAlive after its last
// demand and never pre-warms: the industry's standard policy, and the
// baseline the hybrid policy is measured against.
type FixedKeepAlive struct {
	KeepAlive time.Duration
}

// Plan implements KeepAlivePolicy.
func (f FixedKeepAlive) Plan(_ *IdleHistogram, grace time.Duration) Plan {
	return Plan{Mode: ModeFixed, KeepAlive: max(f.KeepAlive, grace)}
}

// HybridConfig tunes the hybrid histogram policy. Zero fields take the
// defaults listed; the percentiles, margin, CV threshold and range are the
// paper's.
type HybridConfig struct {
	// HeadPercentile of idle times starts the pre-warm window. Default 5.
	HeadPercentile float64
	// TailPercentile of idle times ends the keep-alive or pre-warm window. Default 99.
	TailPercentile float64
	// Margin widens both windows: the head is cut by it, the tail grown. Default 0.1.
	Margin float64
	// Range is the longest idle time the histogram holds. Default 4h.
	Range time.Duration
	// MinSamples is how many idle times beyond grace the histogram needs
	// before it is trusted. Default 10.
	MinSamples int
	// MinCV is the coefficient of variation of the bin counts below which
	// the histogram is too flat to predict from. Default 2.
	MinCV float64
	// MaxOutOfRange is the fraction of idle times beyond Range above which
	// the function counts as rarely used: it goes cold after grace and is
	// not pre-warmed. Default 0.5.
	MaxOutOfRange float64
	// RunningUpTo is how much predicted time a replica may run without
	// demand: an idle period whose tail (with margin) is within it is bridged
	// by keeping the replica running; otherwise, if the window between head
	// and tail is within it, the replica is released after grace and started
	// again at the head; a wider window is covered by a pre-created task.
	// Default 2m.
	RunningUpTo time.Duration
	// FallbackKeepAlive keeps a replica running while the histogram cannot
	// be trusted (too few samples, or flat). Default 0: just the revision's
	// grace period, so that a function with no history scales to zero
	// exactly when its user said it would.
	FallbackKeepAlive time.Duration
	// FallbackPreWarm holds a pre-created task after the fallback keep-alive
	// until this long after the last demand, so that an unpredictable
	// function is never colder than under a 10-minute keep-alive. Default 10m.
	FallbackPreWarm time.Duration
	// MaxKeepAlive caps any keep-alive. Default 1h.
	MaxKeepAlive time.Duration
}

// Defaults of HybridConfig.
const (
	DefaultHeadPercentile  = 5.0
	DefaultTailPercentile  = 99.0
	DefaultMargin          = 0.1
	DefaultHistogramRange  = 4 * time.Hour
	DefaultMinSamples      = 10
	DefaultMinCV           = 2.0
	DefaultMaxOutOfRange   = 0.5
	DefaultRunningUpTo     = 2 * time.Minute
	DefaultFallbackPreWarm = 10 * time.Minute
	DefaultMaxKeepAlive    = time.Hour
)

// WithDefaults returns c with every zero field set to its default.
func (c HybridConfig) WithDefaults() HybridConfig {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.HeadPercentile, DefaultHeadPercentile)
	def(&c.TailPercentile, DefaultTailPercentile)
	def(&c.Margin, DefaultMargin)
	def(&c.MinCV, DefaultMinCV)
	def(&c.MaxOutOfRange, DefaultMaxOutOfRange)
	defD(&c.Range, DefaultHistogramRange)
	defD(&c.RunningUpTo, DefaultRunningUpTo)
	defD(&c.FallbackPreWarm, DefaultFallbackPreWarm)
	defD(&c.MaxKeepAlive, DefaultMaxKeepAlive)
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	return c
}

// Validate checks a defaulted config.
func (c HybridConfig) Validate() error {
	var errs []error
	if !(c.HeadPercentile > 0 && c.HeadPercentile < c.TailPercentile && c.TailPercentile <= 100) {
		errs = append(errs, fmt.Errorf("percentiles must satisfy 0 < head (%g) < tail (%g) <= 100", c.HeadPercentile, c.TailPercentile))
	}
	if c.Margin < 0 || c.Margin >= 1 {
		errs = append(errs, fmt.Errorf("margin %g is outside [0, 1)", c.Margin))
	}
	if c.Range <= 0 || c.Range > binLower(numBins) {
		errs = append(errs, fmt.Errorf("range %s is outside (0, %s]", c.Range, binLower(numBins)))
	}
	if c.MinSamples < 1 || c.MinCV < 0 || c.MaxOutOfRange <= 0 || c.MaxOutOfRange > 1 {
		errs = append(errs, errors.New("minSamples must be >= 1, minCV >= 0, maxOutOfRange in (0, 1]"))
	}
	if c.RunningUpTo < 0 || c.FallbackKeepAlive < 0 || c.FallbackPreWarm < 0 || c.MaxKeepAlive <= 0 {
		errs = append(errs, errors.New("durations must not be negative and maxKeepAlive must be positive"))
	}
	return errors.Join(errs...)
}

// HybridHistogram is the hybrid histogram policy of Shahrad et al.,
// "Serverless in the Wild" (USENIX ATC '20), adapted to ebb's two warm
// tiers. The paper unloads an application after each invocation and loads
// it again at the head of its idle-time distribution (the 5th percentile,
// less a 10% margin), keeping it until the tail (the 99th percentile plus
// 10%); it falls back to a fixed keep-alive while the histogram is not
// representative (too few samples, or a coefficient of variation of the
// bin counts below 2) and to a time-series forecast when most idle times
// exceed the 4-hour range.
//
// ebb differs in three ways. Demand within the grace period never meets a
// cold revision, so the percentiles are taken over idle times longer than
// grace only. ebb has a cheaper warm tier than a running replica, the
// pre-created task (container and task created, process not started: an
// 11 ms start instead of 59 ms, and no process to pay for), so the window
// between head and tail is covered by whichever is cheaper: a predicted
// idle period whose tail fits within RunningUpTo is bridged by keeping the
// replica running; a window from head to tail that fits within it gets the
// replica started again at its head, as the paper pre-warms; a wider window
// gets a pre-created task. The fallback keeps the replica for the grace
// period only, and then holds a pre-created task up to 10 minutes. And
// where the paper forecasts, ebb lets a function that is mostly idle for
// hours go cold after grace.
type HybridHistogram struct {
	cfg HybridConfig
}

// NewHybridHistogram returns the policy with cfg, defaulted and validated.
func NewHybridHistogram(cfg HybridConfig) (*HybridHistogram, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hybrid keep-alive config: %w", err)
	}
	return &HybridHistogram{cfg: cfg}, nil
}

// Config returns the defaulted config.
func (p *HybridHistogram) Config() HybridConfig { return p.cfg }

// Plan implements KeepAlivePolicy.
func (p *HybridHistogram) Plan(h *IdleHistogram, grace time.Duration) Plan {
	c := p.cfg
	// Bins that idle times beyond grace land in, up to the range.
	first := binOf(grace)
	if binUpper(first) <= grace {
		first++
	}
	last := first
	var n uint32
	for i := first; i < numBins && binLower(i) < h.Range; i++ {
		n += h.Bins[i]
		last = i
	}
	plan := Plan{Samples: int(n), OutOfRange: int(h.OutOfRange)}
	fallback := func(mode string) Plan {
		plan.Mode = mode
		plan.KeepAlive = clampD(c.FallbackKeepAlive, grace, c.MaxKeepAlive)
		if c.FallbackPreWarm > plan.KeepAlive {
			plan.PreCreateFrom, plan.PreCreateUntil = plan.KeepAlive, c.FallbackPreWarm
		}
		return plan
	}
	all := n + h.OutOfRange
	if all > 0 && float64(h.OutOfRange) > c.MaxOutOfRange*float64(all) && int(all) >= c.MinSamples {
		plan.Mode = ModeOutOfBounds
		plan.KeepAlive = grace
		return plan
	}
	if int(n) < c.MinSamples {
		return fallback(ModeFewSamples)
	}
	plan.CV = binCV(h.Bins[first:last+1], n)
	if plan.CV < c.MinCV {
		return fallback(ModeFlat)
	}
	plan.Mode = ModeHistogram
	plan.Head = binLower(percentileBin(h.Bins[:], first, last, n, c.HeadPercentile))
	plan.Tail = binUpper(percentileBin(h.Bins[:], first, last, n, c.TailPercentile))
	from := max(time.Duration(float64(plan.Head)*(1-c.Margin)), grace)
	until := time.Duration(float64(plan.Tail) * (1 + c.Margin))
	plan.KeepAlive = grace
	switch {
	case until <= c.RunningUpTo:
		// The next request comes soon after grace: keep running through.
		plan.KeepAlive = clampD(until, grace, c.MaxKeepAlive)
	case until-from <= c.RunningUpTo:
		// A narrow window later on: release, and start again at its head.
		plan.WarmFrom, plan.WarmUntil = from, until
	default:
		// A wide window: running through it costs too much; hold the cheap tier.
		plan.PreCreateFrom, plan.PreCreateUntil = from, until
	}
	return plan
}

// percentileBin is the bin in [first, last] where the cumulative count
// first reaches pct% of n.
func percentileBin(bins []uint32, first, last int, n uint32, pct float64) int {
	want := math.Ceil(pct / 100 * float64(n))
	var cum float64
	for i := first; i <= last; i++ {
		cum += float64(bins[i])
		if cum >= want {
			return i
		}
	}
	return last
}

// binCV is the coefficient of variation (standard deviation over mean) of
// bin counts summing to n.
func binCV(bins []uint32, n uint32) float64 {
	if n == 0 || len(bins) == 0 {
		return 0
	}
	mean := float64(n) / float64(len(bins))
	var ss float64
	for _, c := range bins {
		d := float64(c) - mean
		ss += d * d
	}
	return math.Sqrt(ss/float64(len(bins))) / mean
}

func clampD(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
