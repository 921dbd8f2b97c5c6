package activator

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/internal/tracing"
)

// noteAcquired tells a router that observes the request (it put a
// tracing.Handoff in it) which replica the request got and how long it
// queued for it, with the replica's start phases, from which the router
// writes the access log line, the cold-start spans and Server-Timing.
// queuedAt is zero when a replica was free at once.
func noteAcquired(ctx *fasthttp.RequestCtx, rep *replicaset.Replica, queuedAt time.Time) {
	h, ok := ctx.UserValue(tracing.HandoffKey).(*tracing.Handoff)
	if !ok {
		return
	}
	h.Replica, h.QueuedAt, h.AcquiredAt = rep.ID, queuedAt, time.Now()
	h.Phases = rep.Start
}
