package revstats

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Counter is one revision's load in one component.
type Counter struct {
	revision string

	inflight atomic.Int64
	peak     atomic.Int64
	requests atomic.Int64
	buffered atomic.Int64
	// outcomes is nil in components that do not count how requests end.
	outcomes *Outcomes

	// Sampler state, guarded by the Recorder's lock.
	sum     float64
	samples int
	quiet   bool
}

// NewCounter returns a counter for revision.
func NewCounter(revision string) *Counter { return &Counter{revision: revision} }

// NewOutcomeCounter returns a counter for revision that also counts how
// its requests end (Outcomes), for the component that sees every request
// first: the router. The activator must not, since its requests came
// through a router that counts them.
func NewOutcomeCounter(revision string) *Counter {
	return &Counter{revision: revision, outcomes: new(Outcomes)}
}

// Outcomes is where the revision's request outcomes are counted; nil (which
// counts nothing) for a counter made by NewCounter.
func (c *Counter) Outcomes() *Outcomes { return c.outcomes }

// Revision is the revision counted.
func (c *Counter) Revision() string { return c.revision }

// Start counts a request arriving and entering service (or a buffer).
func (c *Counter) Start() {
	c.requests.Add(1)
	n := c.inflight.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// End counts a request leaving.
func (c *Counter) End() { c.inflight.Add(-1) }

// Buffer adds delta to the number of requests waiting for capacity.
func (c *Counter) Buffer(delta int64) { c.buffered.Add(delta) }

// InFlight is the current concurrency, buffered requests included.
func (c *Counter) InFlight() int64 { return c.inflight.Load() }

// Buffered is the current number of waiting requests.
func (c *Counter) Buffered() int64 { return c.buffered.Load() }

// Sink receives the reports. The autoscaler implements it, in process or
// over the network.
type Sink interface {
	Report(stats []api.RevisionStat)
}

// Config sets a Recorder's clock.
type Config struct {
	// Reporter names this component in every stat.
	Reporter string
	// SampleInterval is how often in-flight counts are sampled. Default 10ms.
	SampleInterval time.Duration
	// ReportInterval is how often stats are sent. Default 1s.
	ReportInterval time.Duration
}

// Recorder samples the counters it tracks and reports them.
type Recorder struct {
	cfg Config

	mu       sync.Mutex
	counters map[*Counter]struct{}
}

// NewRecorder returns a Recorder; zero intervals take their defaults.
func NewRecorder(cfg Config) (*Recorder, error) {
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = 10 * time.Millisecond
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = time.Second
	}
	if cfg.SampleInterval < 0 || cfg.ReportInterval < cfg.SampleInterval {
		return nil, errors.New("revstats: need 0 < SampleInterval <= ReportInterval")
	}
	return &Recorder{cfg: cfg, counters: make(map[*Counter]struct{})}, nil
}

// Track starts reporting c.
func (r *Recorder) Track(c *Counter) {
	r.mu.Lock()
	r.counters[c] = struct{}{}
	r.mu.Unlock()
}

// Untrack stops reporting c.
func (r *Recorder) Untrack(c *Counter) {
	r.mu.Lock()
	delete(r.counters, c)
	r.mu.Unlock()
}

// Run samples and reports to sink until ctx ends. A nil sink only samples.
func (r *Recorder) Run(ctx context.Context, sink Sink) error {
	sample := time.NewTicker(r.cfg.SampleInterval)
	defer sample.Stop()
	report := time.NewTicker(r.cfg.ReportInterval)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sample.C:
			r.Sample()
		case now := <-report.C:
			stats := r.Collect(now)
			if sink != nil && len(stats) > 0 {
				sink.Report(stats)
			}
		}
	}
}

// Sample records every tracked counter's in-flight count.
func (r *Recorder) Sample() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.counters {
		if v := c.inflight.Load(); v > 0 {
			c.sum += float64(v)
		}
		c.samples++
	}
}

// Collect ends the current interval and returns a stat for every revision
// that saw load in it, plus one all-zero stat when a revision goes quiet,
// so the autoscaler hears that demand stopped. A counter that counts
// outcomes puts those of the interval in the stat's Outcomes, which stay
// nil when no request ended in it.
func (r *Recorder) Collect(now time.Time) []api.RevisionStat {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.RevisionStat
	for c := range r.counters {
		cur := c.inflight.Load()
		avg := float64(cur)
		if c.samples > 0 {
			avg = c.sum / float64(c.samples)
		}
		peak := c.peak.Swap(cur)
		requests := c.requests.Swap(0)
		buffered := c.buffered.Load()
		outcomes := c.outcomes.take()
		c.sum, c.samples = 0, 0
		// Outcomes alone make a stat worth sending: a request the router
		// handed to the activator ends in the router without entering its
		// in-flight count.
		active := requests > 0 || peak > 0 || avg > 0 || buffered > 0 || outcomes != nil
		if !active && c.quiet {
			continue
		}
		c.quiet = !active
		out = append(out, api.RevisionStat{
			Revision:       c.revision,
			Reporter:       r.cfg.Reporter,
			Time:           now,
			AvgConcurrency: avg,
			MaxConcurrency: float64(max(peak, cur)),
			Requests:       float64(requests),
			Buffered:       int(buffered),
			Interval:       api.D(r.cfg.ReportInterval),
			Outcomes:       outcomes,
		})
	}
	return out
}

// Codes counts responses by status code without locks: a few slots are
// claimed by the codes seen first, the last one collects the rest.
type Codes struct {
	slots [8]struct {
		code atomic.Int32
		n    atomic.Uint64
	}
}

// Inc counts one response with code.
func (c *Codes) Inc(code int) {
	last := len(c.slots) - 1
	for i := 0; i < last; i++ {
		s := &c.slots[i]
		got := s.code.Load()
		if got == 0 && s.code.CompareAndSwap(0, int32(code)) {
			got = int32(code)
		} else if got == 0 {
			got = s.code.Load()
		}
		if got == int32(code) {
			s.n.Add(1)
			return
		}
	}
	c.slots[last].n.Add(1)
}

// Each calls f for every code counted; code 0 stands for the overflow slot.
func (c *Codes) Each(f func(code int, n uint64)) {
	last := len(c.slots) - 1
	for i := 0; i < last; i++ {
		if code := c.slots[i].code.Load(); code != 0 {
			f(int(code), c.slots[i].n.Load())
		}
	}
	if n := c.slots[last].n.Load(); n > 0 {
		f(0, n)
	}
}
