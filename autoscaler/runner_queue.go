package autoscaler

import (
	"context"
	"maps"
	"slices"
)

// QueueDepths is what the runner needs of the asynchronous invocations'
// queue: how many of a function's invocations (by qualified name) are
// queued or being delivered. queue.Queue has this method.
type QueueDepths interface {
	Depth(ctx context.Context, function string) (int, error)
}

// readDepths reads every function's queue depth once, at the start of a
// tick, under one WriteTimeout for them all, so that a slow queue delays
// a tick by that at most. A function whose depth cannot be read counts
// as having none: its invocations cannot be claimed from a queue that
// does not answer either, and a depth kept from before could hold
// replicas up for as long as the queue is down. Activation pokes between
// ticks decide on the depths the last tick read.
func (r *Runner) readDepths(ctx context.Context) {
	if r.deps.Queue == nil {
		return
	}
	r.mu.Lock()
	if !r.allSyncedLocked() {
		r.mu.Unlock()
		return
	}
	fns := slices.Sorted(maps.Keys(r.functions))
	r.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	depths := make(map[string]int, len(fns))
	var errs []error
	for _, fn := range fns {
		n, err := r.deps.Queue.Depth(rctx, fn)
		if err != nil {
			r.m.queueErrors.Inc()
			errs = append(errs, err)
			continue
		}
		if n > 0 {
			depths[fn] = n
		}
	}
	if len(errs) > 0 && ctx.Err() == nil {
		r.log.Warn("reading the async queue's depths failed; those functions count as having none queued",
			"failed", len(errs), "functions", len(fns), "err", errs[0])
	}
	r.mu.Lock()
	r.depths = depths
	r.mu.Unlock()
}

// queuedLocked is the revision's share of its function's queue depth:
// the depth times the revision's percent of the traffic, rounded up, so
// that any queued work wakes every revision it may be delivered to.
func (r *Runner) queuedLocked(rs *revState) int {
	depth := r.depths[rs.function]
	if depth == 0 {
		return 0
	}
	percent := r.shares[rs.function][rs.name]
	return (depth*percent + 99) / 100
}
