package revstats

import (
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Outcomes counts how one revision's requests end, with atomics only: the
// request path takes no lock and allocates nothing. A nil *Outcomes counts
// nothing, so a component that must not count outcomes (the activator,
// whose requests a router already counted) shares the same calls.
//
// Each request is counted before its details (status, latency) and take
// reads the details before the count, so summed over intervals errors never
// run ahead of requests; one interval may still see a request's details
// without its count when the two straddle its end.
type Outcomes struct {
	requests   atomic.Int64
	errors5xx  atomic.Int64
	connErrors atomic.Int64
	latency    [api.LatencyBuckets]atomic.Int64
}

// Answered counts a request a ready replica answered with status, took
// after it arrived.
func (o *Outcomes) Answered(status int, took time.Duration) {
	if o == nil {
		return
	}
	o.requests.Add(1)
	if status >= 500 {
		o.errors5xx.Add(1)
	}
	o.latency[api.LatencyBucket(took)].Add(1)
}

// Ended counts a request answered with status whose time says nothing
// about the revision's replicas, such as one that waited in the activator
// for a replica to start: its latency is left out.
func (o *Outcomes) Ended(status int) {
	if o == nil {
		return
	}
	o.requests.Add(1)
	if status >= 500 {
		o.errors5xx.Add(1)
	}
}

// Failed counts a request that no replica took, answered with an error by
// the component itself.
func (o *Outcomes) Failed() {
	if o == nil {
		return
	}
	o.requests.Add(1)
	o.connErrors.Add(1)
}

// take swaps the counts to zero and returns them, trailing empty latency
// buckets trimmed; nil when there was nothing to count.
func (o *Outcomes) take() *api.Outcomes {
	if o == nil {
		return nil
	}
	var lat [api.LatencyBuckets]int64
	n := 0
	for i := range o.latency {
		// A load first keeps an idle revision's buckets from being
		// written (and their cache lines dirtied) every interval.
		if o.latency[i].Load() != 0 {
			if lat[i] = o.latency[i].Swap(0); lat[i] != 0 {
				n = i + 1
			}
		}
	}
	connErrors := o.connErrors.Swap(0)
	errors5xx := o.errors5xx.Swap(0)
	requests := o.requests.Swap(0)
	if requests == 0 && errors5xx == 0 && connErrors == 0 && n == 0 {
		return nil
	}
	out := &api.Outcomes{Requests: requests, Errors5xx: errors5xx, ConnErrors: connErrors}
	if n > 0 {
		out.Latency = append([]int64(nil), lat[:n]...)
	}
	return out
}
