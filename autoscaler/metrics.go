package autoscaler

import (
	"time"

	"github.com/ebbrun/ebb/api"
)

// Metrics aggregates the api.RevisionStats of one revision, from every router
// and activator that reports it, into per-second buckets that the Decider's
// windows average over. It is not safe for concurrent use: one owner feeds it
// and reads it, and time only moves through the arguments.
type Metrics struct {
	// concurrency holds, per second, the sum over reporters of the average
	// in-flight plus buffered requests during that second.
	concurrency *timedBuckets
	// requests holds, per second, the sum over reporters of arrivals.
	requests  *timedBuckets
	reporters map[string]reporter
	// lastDemand is the end of the newest interval that showed any demand.
	lastDemand time.Time
}

// reporter is what Metrics remembers of one router or activator.
type reporter struct {
	// at is the end of its newest interval: every second before it is
	// complete as far as this reporter is concerned.
	at       time.Time
	buffered int
	staleAge time.Duration
}

// minStaleAge is the least time a reporter stays fresh after its last
// report. An activator that stops reporting (it crashed, or it is
// partitioned away) must not pin a revision up forever, and a router that
// stops because it has nothing to report must not hold the windows back.
const minStaleAge = 3 * time.Second

// NewMetrics returns empty metrics that keep history for window, the longest
// window the decider averages over (its stable window).
func NewMetrics(window time.Duration) *Metrics {
	return &Metrics{
		concurrency: newTimedBuckets(window),
		requests:    newTimedBuckets(window),
		reporters:   map[string]reporter{},
	}
}

// Record adds one reporter's stat. The stat covers (Time-Interval, Time]; its
// figures are spread over the seconds that interval overlaps, in proportion
// to the overlap, so reporters with any interval and any phase add up to the
// right per-second totals. A zero Interval counts as one second.
func (m *Metrics) Record(st api.RevisionStat) {
	interval := st.Interval.Duration
	if interval <= 0 {
		interval = time.Second
	}
	end := st.Time
	start := end.Add(-interval)
	if st.AvgConcurrency > 0 {
		// Concurrency-seconds per bucket: the average concurrency over the
		// interval times the part of each second the interval covers.
		spread(m.concurrency, start, end, func(overlap time.Duration) float64 {
			return st.AvgConcurrency * overlap.Seconds()
		})
	}
	if st.Requests > 0 {
		spread(m.requests, start, end, func(overlap time.Duration) float64 {
			return st.Requests * float64(overlap) / float64(interval)
		})
	}
	stale := max(3*interval, minStaleAge)
	if prev, ok := m.reporters[st.Reporter]; !ok || !st.Time.Before(prev.at) {
		m.reporters[st.Reporter] = reporter{at: st.Time, buffered: st.Buffered, staleAge: stale}
	}
	if HasDemand(st) && end.After(m.lastDemand) {
		m.lastDemand = end
	}
}

// HasDemand reports whether a stat shows any request arriving, in flight or
// buffered.
func HasDemand(st api.RevisionStat) bool {
	return st.AvgConcurrency > 0 || st.MaxConcurrency > 0 || st.Requests > 0 || st.Buffered > 0
}

// spread adds value(overlap) to every bucket that [start, end) overlaps.
func spread(b *timedBuckets, start, end time.Time, value func(overlap time.Duration) float64) {
	// Anything older than the ring is dropped by add anyway; clamping first
	// bounds the loop for a reporter that sends an absurd interval.
	ring := time.Duration(b.size) * bucketWidth
	if end.Sub(start) > ring+bucketWidth {
		start = end.Add(-ring - bucketWidth)
	}
	for s := secondOf(start); ; s++ {
		bStart := time.Unix(0, s*int64(bucketWidth))
		bEnd := bStart.Add(bucketWidth)
		if !bStart.Before(end) {
			return
		}
		lo, hi := start, end
		if bStart.After(lo) {
			lo = bStart
		}
		if bEnd.Before(hi) {
			hi = bEnd
		}
		if hi.After(lo) {
			b.add(s, value(hi.Sub(lo)))
		}
	}
}

// Concurrency is the average total concurrency over the window ending at
// the watermark (see Watermark).
func (m *Metrics) Concurrency(now time.Time, window time.Duration) float64 {
	return m.concurrency.average(m.Watermark(now), window)
}

// RPS is the average total requests per second over the window ending at
// the watermark.
func (m *Metrics) RPS(now time.Time, window time.Duration) float64 {
	return m.requests.average(m.Watermark(now), window)
}

// Watermark is the time up to which every fresh reporter has reported, at
// most now. Windows end there, so that a second some reporter has not
// covered yet is not read as quiet: reporters have their own intervals and
// phases, and averaging a half-reported second would under-read a rising
// load. Reporters that went quiet for longer than their stale age no longer
// hold it back.
func (m *Metrics) Watermark(now time.Time) time.Time {
	w := now
	for name, r := range m.reporters {
		if now.Sub(r.at) > r.staleAge {
			delete(m.reporters, name)
			continue
		}
		if r.at.Before(w) {
			w = r.at
		}
	}
	return w
}

// Buffered is the number of requests waiting in activators, summed over the
// reporters whose latest report is still fresh at now.
func (m *Metrics) Buffered(now time.Time) int {
	n := 0
	for name, r := range m.reporters {
		if now.Sub(r.at) > r.staleAge {
			delete(m.reporters, name)
			continue
		}
		n += r.buffered
	}
	return n
}

// LastDemand is the end of the newest reported interval that showed demand,
// or the zero time if none has.
func (m *Metrics) LastDemand() time.Time { return m.lastDemand }

// Observe builds the decider's observation at now for a revision with the
// given spec and ready replicas: the spec's metric over its stable and panic
// windows, the buffered requests and the last demand.
func (m *Metrics) Observe(now time.Time, spec api.FunctionSpec, ready int) Observation {
	stableW, panicW := Windows(spec.Scale)
	obs := Observation{
		Ready:      ready,
		Buffered:   m.Buffered(now),
		LastDemand: m.lastDemand,
	}
	if spec.Concurrency.Metric == api.MetricRPS {
		obs.Stable, obs.Panic = m.RPS(now, stableW), m.RPS(now, panicW)
	} else {
		obs.Stable, obs.Panic = m.Concurrency(now, stableW), m.Concurrency(now, panicW)
	}
	return obs
}
