package exchange

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/internal/revstats"
	"github.com/ebbrun/ebb/internal/tracing"
)

// DefaultMaxRetries is Policy.MaxRetries when a configuration leaves it 0.
const DefaultMaxRetries = 2

// maxMaxRetries bounds MaxRetries: each retry takes another replica at
// once, so more than a handful only spins through a revision whose
// replicas are all unreachable.
const maxMaxRetries = 16

// ValidateMaxRetries reports a retry count a Policy cannot take. Zero is
// valid: configurations read it as DefaultMaxRetries.
func ValidateMaxRetries(n int) error {
	if n < 0 || n > maxMaxRetries {
		return fmt.Errorf("MaxRetries %d: must be between 0 and %d", n, maxMaxRetries)
	}
	return nil
}

// Policy is when a request is tried again on another replica.
type Policy struct {
	// MaxRetries is how many other replicas one request tries after the
	// one it was sent to took no byte of it. Not defaulted here: callers
	// put DefaultMaxRetries in place of a zero in their own Config.
	MaxRetries int
	// Retried, when set, counts those retries.
	Retried prometheus.Counter
}

// Observer takes one latency sample in seconds.
type Observer interface {
	Observe(seconds float64)
}

// Revision is what an exchange accounts to: one revision's replicas, its
// in-flight counter and its status codes. The router and the activator keep
// one per revision they serve and pass its address, so that a request
// allocates nothing.
type Revision struct {
	// Set holds the revision's replicas; the replica an exchange used is
	// released to it.
	Set *replicaset.Set
	// Stats is ended once per answered exchange; the caller started it.
	// When it counts outcomes (the router's), the exchange is counted as
	// answered, with its status and latency.
	Stats *revstats.Counter
	// Codes counts answered exchanges by the replica's status.
	Codes *revstats.Codes
	// Latency, when set, observes each answered exchange's time from the
	// start given to Forward to its end.
	Latency Observer
}

// done accounts for one exchange when proxy.Forward is over with it; it is
// pooled.
type done struct {
	rev   *Revision
	rep   *replicaset.Replica
	start time.Time
}

var dones = sync.Pool{New: func() any { return new(done) }}

// ExchangeDone implements proxy.Done.
func (d *done) ExchangeDone(status int, _ error) {
	rev := d.rev
	rev.Set.Release(d.rep)
	rev.Stats.End()
	rev.Codes.Inc(status)
	// The activator keeps neither, and so reads no clock here.
	if out := rev.Stats.Outcomes(); out != nil || rev.Latency != nil {
		took := time.Since(d.start)
		out.Answered(status, took)
		if rev.Latency != nil {
			rev.Latency.Observe(took.Seconds())
		}
	}
	d.free()
}

func (d *done) free() {
	*d = done{}
	dones.Put(d)
}

// Forward sends the request in ctx to rep, a replica of rev that the
// caller acquired, with the exchange bounded by deadline.
//
// When rep took no byte of the request (proxy.ErrUnavailable), rep is
// marked down for a second and released, and the request goes to another
// free replica of rev, at most p.MaxRetries times. A replica marked down is
// taken again only when no other has room: a pooled connection found dead
// is the usual cause, and a new connection to the same replica then works.
// Forward never waits for capacity: with no replica free it gives up.
//
// On nil the answer is in ctx.Response, and once the exchange is over the
// replica is released, rev.Stats ended, the status counted (and, in a
// counter that counts outcomes, the request counted as answered) and the
// time since start observed. On an error nothing was written to the client,
// the last replica tried is released, and the caller still owns the
// request's accounting: rev.Stats is not ended and neither status nor
// outcome is counted.
// proxy.ErrOutOfDescriptors comes back at once: this process, not the
// replica, is short of file descriptors, so the replica is neither marked
// down nor passed over, and the caller decides when to try again.
func Forward(ctx *fasthttp.RequestCtx, rev *Revision, rep *replicaset.Replica, deadline time.Time, p *Policy, start time.Time) error {
	d := dones.Get().(*done)
	d.rev, d.rep, d.start = rev, rep, start
	opts := proxy.Options{Deadline: deadline}
	if h, ok := ctx.UserValue(tracing.HandoffKey).(*tracing.Handoff); ok {
		// The router observes the request: the replica gets its trace.
		opts.Traceparent = h.Traceparent
	}
	for attempt := 0; ; attempt++ {
		err := proxy.Forward(ctx, d.rep.Upstream, &opts, d)
		if err == nil {
			return nil
		}
		unavailable := errors.Is(err, proxy.ErrUnavailable)
		if unavailable {
			d.rep.MarkDown(time.Second)
		}
		rev.Set.Release(d.rep)
		if unavailable && attempt < p.MaxRetries {
			if next := rev.Set.TryAcquire(); next != nil {
				if p.Retried != nil {
					p.Retried.Inc()
				}
				d.rep = next
				continue
			}
		}
		d.free()
		return err
	}
}

// WriteError answers the client with status and a plain-text msg, the
// form of every answer the data plane gives itself.
func WriteError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(msg)
}
