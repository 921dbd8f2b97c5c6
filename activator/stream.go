package activator

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/internal/replicaset"
)

// Refusal is why Acquire handed out no replica, with the HTTP status the
// data plane answers it with and the body Serve would write.
type Refusal struct {
	Status int
	// Reason is the activator_rejected_total label: queue_full, deadline,
	// client_gone, failed, unstartable or shutdown.
	Reason string
	Msg    string
	// RetryAfter, when positive, is the Retry-After to send, in seconds.
	RetryAfter int
}

func (r *Refusal) Error() string { return r.Msg }

// HTTPStatus is the status to answer the request with.
func (r *Refusal) HTTPStatus() int { return r.Status }

// RetryAfterSeconds is the Retry-After to answer with; 0 means none.
func (r *Refusal) RetryAfterSeconds() int { return r.RetryAfter }

// Acquire is the activator for a caller that proxies the request itself,
// as the router does with an HTTP/2 stream: it waits, as Serve does, for
// a replica of revision with room (asking for one when it has none),
// until deadline, ctx's end (the client left) or shutdown, and hands it
// over. The caller proxies the request to rep and then calls done with
// the replica's status (or the status it answered itself), which
// releases rep and ends the activator's count of the request. On an error
// (a *Refusal) nothing is held and the caller answers the client.
func (a *Activator) Acquire(ctx context.Context, function, revision string, deadline time.Time) (rep *replicaset.Replica, done func(status int), err error) {
	rs := a.state(function, revision)
	arrived := time.Now()
	rs.lastUsed.Store(arrived.UnixNano())
	rs.stats.Start()
	cold := rs.set.Len() == 0
	refuse := func(r *Refusal) (*replicaset.Replica, func(int), error) {
		rs.stats.End()
		rs.codes.Inc(r.Status)
		a.metrics.rejected.WithLabelValues(r.Reason).Inc()
		rs.active.Add(-1)
		return nil, nil, r
	}
	if fs := rs.fstate.Load(); fs.fail != nil && rs.set.Len() == 0 {
		return refuse(a.refusal(rs, failedError{fs.fail}, 0))
	}
	rep = rs.set.TryAcquire()
	if rep == nil {
		if int(rs.queued.Add(1)) > a.cfg.MaxQueue {
			rs.queued.Add(-1)
			return refuse(&Refusal{Status: fasthttp.StatusServiceUnavailable, Reason: "queue_full", RetryAfter: a.retryAfter(),
				Msg: "ebb: too many requests are waiting for " + rs.function + "; retry later\n"})
		}
		queuedAt := time.Now()
		rs.stats.Buffer(1)
		rep, err = a.waitGone(rs, deadline, ctx.Done())
		rs.stats.Buffer(-1)
		rs.queued.Add(-1)
		waited := time.Since(queuedAt).Seconds()
		a.metrics.queueWait.WithLabelValues(namespaceOf(rs.function), rs.function).Observe(waited)
		if errors.Is(err, errClientGone) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The stream's own deadline, which may be the client's
			// (grpc-timeout), not a hang-up.
			err = errDeadline
		}
		if err != nil {
			return refuse(a.refusal(rs, err, time.Since(arrived)))
		}
		if cold {
			a.metrics.coldStart.WithLabelValues(namespaceOf(rs.function), rs.function).Observe(waited)
		}
	}
	return rep, func(status int) {
		rs.set.Release(rep)
		rs.stats.End()
		rs.codes.Inc(status)
		rs.active.Add(-1)
	}, nil
}
