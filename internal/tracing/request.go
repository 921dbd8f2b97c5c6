package tracing

import (
	"strconv"
	"time"
)

// StartPhases are when a replica's start passed each phase, in Unix
// nanoseconds as the node agent's clock read them; zero means unknown. The
// node agent writes them on the replica's endpoint record, so whoever
// waited for the replica can show where the time went.
type StartPhases struct {
	// Decided is when the agent chose to start the replica, Created when
	// its container (and task) existed, Started when its program was
	// started and Ready when its readiness probe passed. Created is zero
	// for a replica taken from the pre-created pool.
	Decided, Created, Started, Ready int64
}

// Handoff is the trace context of one request that the router observes,
// and what the activator did with it if the router handed it over. The
// router puts one in the request (as a fasthttp user value) and reads it
// back when the request is answered.
type Handoff struct {
	// Traceparent is what the replica gets in place of the client's
	// traceparent, when set; the router sets it, internal/exchange sends
	// it.
	Traceparent []byte
	// Used says the activator took the request.
	Used bool
	// Replica served the request, if one did.
	Replica string
	// Cold says the revision had no replica when the request arrived.
	Cold bool
	// QueuedAt and AcquiredAt bound the wait for a replica; QueuedAt is
	// zero when a replica was free at once, AcquiredAt when none was had.
	QueuedAt, AcquiredAt time.Time
	// Phases are the start phases of the replica that served a cold
	// request.
	Phases StartPhases
}

// HandoffKey is the fasthttp user-value key under which the router puts a
// *Handoff for the activator to fill.
const HandoffKey = "ebb.handoff"

// Wait is how long the request waited for a replica.
func (h *Handoff) Wait() time.Duration {
	if h.QueuedAt.IsZero() || h.AcquiredAt.IsZero() {
		return 0
	}
	return h.AcquiredAt.Sub(h.QueuedAt)
}

// phase is one named interval of a cold start.
type phase struct {
	name       string
	start, end int64
}

// phases lists the intervals of p, in order; create is empty (and so
// skipped) for a replica taken from the pre-created pool.
func (p StartPhases) phases() [3]phase {
	create := phase{"create", p.Decided, p.Created}
	startFrom := p.Created
	if p.Created == 0 {
		create.start, startFrom = 0, p.Decided
	}
	return [3]phase{
		create,
		{"start", startFrom, p.Started},
		{"ready", p.Started, p.Ready},
	}
}

// Spans calls f for each cold-start phase with both ends known, in order.
func (p StartPhases) Spans(f func(name string, start, end time.Time)) {
	for _, ph := range p.phases() {
		if ph.start != 0 && ph.end != 0 && ph.end >= ph.start {
			f(ph.name, time.Unix(0, ph.start), time.Unix(0, ph.end))
		}
	}
}

// AppendServerTiming appends a Server-Timing header value for a cold
// request: its wait in the queue and the phases of the start it waited
// for, in milliseconds, as "queue;dur=812.3, create;dur=40.1, …".
func (h *Handoff) AppendServerTiming(dst []byte) []byte {
	dst = appendTiming(dst, "queue", h.Wait())
	h.Phases.Spans(func(name string, start, end time.Time) {
		dst = append(dst, ", "...)
		dst = appendTiming(dst, name, end.Sub(start))
	})
	return dst
}

func appendTiming(dst []byte, name string, d time.Duration) []byte {
	dst = append(dst, name...)
	dst = append(dst, ";dur="...)
	return strconv.AppendFloat(dst, float64(d.Microseconds())/1000, 'f', -1, 64)
}

// Request is one request's trace as plain values, filled on the router's
// path and exported at its end.
type Request struct {
	TraceID TraceID
	// Parent is the caller's span when the request continued a trace.
	Parent SpanID
	// Sampled is the caller's decision, or true for a new trace.
	Sampled bool
	// Server is the id of the router's span for the whole request, Proxy
	// that of the call to the replica, whose traceparent names it.
	Server, Proxy SpanID

	Function, Revision, Replica string
	Protocol                    string
	Status                      int
	// Start is when the request arrived, Routed when its revision was
	// chosen, ProxyStart when it was sent to a replica and End when the
	// response head was ready.
	Start, Routed, ProxyStart, End time.Time
	// Handoff is the activator's part, nil when a replica was free.
	Handoff *Handoff
}
