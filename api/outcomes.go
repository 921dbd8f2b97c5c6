package api

import (
	"math/bits"
	"time"
)

// Outcomes are how one revision's requests ended, as a router counts them
// over a stats interval (RevisionStat.Outcomes), or summed over many. They
// are what a rollout's analysis judges a canary on.
type Outcomes struct {
	// Requests counts requests that ended: answered by a replica (any
	// status), answered by the activator, or failed before a replica
	// answered.
	Requests int64 `json:"requests"`
	// Errors5xx counts answers with a 5xx status from a replica, or from
	// the activator on its behalf.
	Errors5xx int64 `json:"errors5xx"`
	// ConnErrors counts requests the router answered itself with an
	// error because no replica took them (refused, reset, timed out
	// before an answer, or none ready).
	ConnErrors int64 `json:"connErrors"`
	// Latency counts the requests proxied straight to a ready replica by
	// their duration: Latency[i] is the number in LatencyBucket i. Requests
	// that woke their revision are left out, so a canary starting from
	// zero is not judged on its cold starts. Trailing empty buckets are
	// omitted.
	Latency []int64 `json:"latency,omitempty"`
}

// The latency buckets are quarter octaves: bucket i > 0 holds durations
// in [LatencyBucketLow(i), LatencyBucketLow(i+1)), each about 19% wider
// than the one before, so a quantile read from them is off by at most
// that. Bucket 0 holds everything below latencyFloor, and the last one
// everything from about 8 minutes up.
const (
	latencyFloorBits = 13 // 8.192µs
	latencyFineBits  = 2  // 4 buckets per octave
	// LatencyBuckets is how many buckets Outcomes.Latency has at most.
	LatencyBuckets = (39-latencyFloorBits)<<latencyFineBits + 1
)

// LatencyBucket is the bucket index of duration d.
func LatencyBucket(d time.Duration) int {
	ns := uint64(max(d, 0))
	e := bits.Len64(ns) - 1 // ns is in [2^e, 2^(e+1))
	if e < latencyFloorBits {
		return 0
	}
	fine := int(ns>>(e-latencyFineBits)) & (1<<latencyFineBits - 1)
	return min(1+(e-latencyFloorBits)<<latencyFineBits+fine, LatencyBuckets-1)
}

// LatencyBucketLow is the shortest duration bucket i holds.
func LatencyBucketLow(i int) time.Duration {
	if i <= 0 {
		return 0
	}
	i = min(i, LatencyBuckets-1) - 1
	e := latencyFloorBits + i>>latencyFineBits
	fine := i & (1<<latencyFineBits - 1)
	return time.Duration((1<<latencyFineBits + fine) << (e - latencyFineBits))
}

// Add adds o2's counts to o's.
func (o *Outcomes) Add(o2 Outcomes) {
	o.Requests += o2.Requests
	o.Errors5xx += o2.Errors5xx
	o.ConnErrors += o2.ConnErrors
	if len(o2.Latency) > len(o.Latency) {
		o.Latency = append(o.Latency, make([]int64, len(o2.Latency)-len(o.Latency))...)
	}
	for i, n := range o2.Latency {
		o.Latency[i] += n
	}
}

// AddLatency counts n requests that took d in o.Latency, growing it as
// needed; Requests is left alone. It is for building Outcomes by hand, in
// tests and fakes: a router counts into fixed atomic buckets instead.
func (o *Outcomes) AddLatency(d time.Duration, n int64) {
	i := LatencyBucket(d)
	if i >= len(o.Latency) {
		o.Latency = append(o.Latency, make([]int64, i+1-len(o.Latency))...)
	}
	o.Latency[i] += n
}

// Since is what o counted after earlier, an earlier reading of the same
// running sum: o minus earlier, each count at least 0.
func (o Outcomes) Since(earlier Outcomes) Outcomes {
	d := Outcomes{
		Requests:   max(o.Requests-earlier.Requests, 0),
		Errors5xx:  max(o.Errors5xx-earlier.Errors5xx, 0),
		ConnErrors: max(o.ConnErrors-earlier.ConnErrors, 0),
		Latency:    make([]int64, len(o.Latency)),
	}
	for i, n := range o.Latency {
		if i < len(earlier.Latency) {
			n -= earlier.Latency[i]
		}
		d.Latency[i] = max(n, 0)
	}
	return d
}

// Quantile is the q-quantile (0 < q <= 1) of the latency counts,
// interpolated inside its bucket; 0 with no counts.
func (o Outcomes) Quantile(q float64) time.Duration {
	var total int64
	for _, n := range o.Latency {
		total += max(n, 0)
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, n := range o.Latency {
		n = max(n, 0)
		if n == 0 || float64(seen+n) < rank {
			seen += n
			continue
		}
		lo, hi := LatencyBucketLow(i), LatencyBucketLow(i+1)
		if i == LatencyBuckets-1 {
			return lo
		}
		within := (rank - float64(seen)) / float64(n)
		return lo + time.Duration(within*float64(hi-lo))
	}
	return LatencyBucketLow(len(o.Latency) - 1)
}

// Figures are o as a rollout's analysis reads them: counts, p50 and p99.
func (o Outcomes) Figures() RolloutFigures {
	return RolloutFigures{
		Requests:   o.Requests,
		Errors5xx:  o.Errors5xx,
		ConnErrors: o.ConnErrors,
		P50:        o.Quantile(0.50),
		P99:        o.Quantile(0.99),
	}
}
